# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""A jobrunner process for test_runner.py: the real runner on plain psycopg2, with a fake job.

    python runner_process.py SERVER_DSN CHANNELS DBNAME...

``SERVER_DSN`` reaches the server (its dbname is replaced by each
database's). The fake job sleeps for the number of seconds in its ``name``,
records its execution in ``job_execution`` (pid, start and end by the
database clock; ``wrote`` in the job's transaction before it sleeps) and ends
done through ``transitions.mark_done``, as ``execution.run_claimed`` does in
Odoo. A job past its time limit is failed with :data:`JOB_TIMEOUT`. Every connection has the application
name :data:`APPLICATION_NAME`, for the tests to find them.
"""

import logging
import os
import sys
import time

import conftest  # noqa: F401 (imports the addon as package queue_job)
import psycopg2
from psycopg2.extensions import make_dsn

from queue_job.core import transitions
from queue_job.core.channels import Channels
from queue_job.core.claim import LOCK_NAMESPACE
from queue_job.jobrunner.databases import served_databases
from queue_job.jobrunner.runner import Runner, run_until_signalled

APPLICATION_NAME = "queue_job_test_runner"
#: ``exc_name`` of a job that ran past its time limit.
JOB_TIMEOUT = "JobTimeout"


class Cursor:
    """A cursor on a connection of its own, closed with it.

    Closing it while it holds a job's liveness lock is an error: Odoo's pool
    would keep the connection, and the lock with it, until it lends the
    connection again.
    """

    def __init__(self, connection):
        self.connection = connection
        self._cursor = connection.cursor()

    def execute(self, query, params=None):
        self._cursor.execute(query, params)

    def fetchone(self):
        return self._cursor.fetchone()

    def fetchall(self):
        return self._cursor.fetchall()

    def commit(self):
        self.connection.commit()

    def rollback(self):
        self.connection.rollback()

    def close(self):
        if self.connection.closed:
            return
        self.connection.rollback()
        self._cursor.execute(
            "SELECT objid FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'"
            " AND classid = %s::oid AND objid != 0",
            (LOCK_NAMESPACE,),
        )
        held = self._cursor.fetchall()
        self.connection.close()
        assert not held, f"connection given back with the liveness lock of job {held}"


class PsycopgBinding:
    """The runner binding of the tests (see ``runner.Binding``)."""

    def __init__(self, server_dsn, db_names):
        self._server_dsn = server_dsn
        self._db_names = db_names

    def database_names(self):
        return served_databases(self._connect, self._db_names)

    def connection_params(self, db_name):
        return {"dsn": self._dsn(db_name)}

    def cursor(self, db_name):
        return Cursor(self._connect(db_name))

    def run_job(self, db_name, cr, job):
        seconds = float(job["name"])
        cr.execute(
            "INSERT INTO job_execution (job_id, pid, started) "
            "VALUES (%s, %s, clock_timestamp()) RETURNING id",
            (job["id"], os.getpid()),
        )
        execution_id = cr.fetchone()[0]
        cr.commit()  # the tests see which process runs the job while it runs
        cr.execute(
            "UPDATE job_execution SET wrote = clock_timestamp() WHERE id = %s", (execution_id,)
        )
        time.sleep(seconds)
        cr.execute(
            "UPDATE job_execution SET ended = clock_timestamp() WHERE id = %s", (execution_id,)
        )
        transitions.mark_done(cr, [job["id"]], ("started",))
        cr.commit()

    def record_timeout(self, db_name, cr, job, seconds, stack):
        assert "time.sleep(seconds)" in stack, stack  # the job's own stack
        transitions.mark_failed(
            cr,
            [job["id"]],
            ("started",),
            exc_name=JOB_TIMEOUT,
            exc_message=f"ran past its time limit of {seconds:g} s",
            exc_info=stack,
        )

    def _dsn(self, db_name):
        return make_dsn(self._server_dsn, dbname=db_name, application_name=APPLICATION_NAME)

    def _connect(self, db_name):
        return psycopg2.connect(self._dsn(db_name))


def main(server_dsn, channels, *db_names):
    logging.basicConfig(
        level=logging.INFO, format="%(process)d %(levelname)s %(name)s: %(message)s"
    )
    binding = PsycopgBinding(server_dsn, list(db_names))
    return run_until_signalled(lambda: Runner(binding, Channels.parse(channels)))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
