# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The documented commands, end to end: Odoo with the jobrunner, jobs from ``odoo shell``.

``dev/test`` runs this after the Odoo suite, on a database where queue_job
and test_queue_job are installed (``QUEUE_JOB_E2E_DB``, addons path in
``QUEUE_JOB_E2E_ADDONS``). It starts ``odoo --load=base,web,queue_job`` as a
user would, delays jobs from ``odoo shell``, and watches the database.
"""

import os
import signal
import time

import psycopg2
import pytest
from odoo_process import OdooServer, odoo_shell
from psycopg2 import sql

DB = os.environ.get("QUEUE_JOB_E2E_DB")
ADDONS = os.environ.get("QUEUE_JOB_E2E_ADDONS")

pytestmark = pytest.mark.skipif(not DB, reason="needs QUEUE_JOB_E2E_DB (run by dev/test)")


def shell(code):
    """Run ``code`` in ``odoo shell`` (which commits at the end); return its stdout."""
    return odoo_shell(code, DB, ADDONS)


def delay(expression):
    """Delay ``expression`` (code returning a Job) from odoo shell; return (job id, commit time)."""
    out = shell(
        "import time\n"
        f"job = {expression}\n"
        "env.cr.commit()\n"
        "print('JOB', job.id, repr(time.time()))\n"
    )
    line = next(line for line in out.splitlines() if line.startswith("JOB "))
    _, job_id, committed = line.split()
    return int(job_id), float(committed)


def job_row(job_id):
    with psycopg2.connect(dbname=DB) as conn, conn.cursor() as cr:
        cr.execute(
            "SELECT state, retry, exc_name, exc_info, "
            "EXTRACT(EPOCH FROM date_done AT TIME ZONE 'UTC')::float8 FROM queue_job WHERE id = %s",
            (job_id,),
        )
        return dict(zip(("state", "retry", "exc_name", "exc_info", "done_at"), cr.fetchone()))


def wait_for(job_id, states, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = job_row(job_id)
        if row["state"] in states:
            return row
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job_row(job_id)['state']} after {timeout}s")


class Server(OdooServer):
    """The server with its runner, on the database of ``dev/test``."""

    def __init__(self, log_path, environ=()):
        super().__init__(log_path, DB, ADDONS, environ)


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path / "odoo.log")
    server.start()
    yield server
    if server.process.poll() is None:
        server.kill()


RECORD = "env['test.queue.job'].create({'name': 'e2e'})"


def test_job_runs_within_a_second_of_its_commit(server):
    job_id, committed = delay(f"{RECORD}.with_delay().increment(2)")
    row = wait_for(job_id, {"done", "failed"}, timeout=10)
    assert row["state"] == "done"
    assert row["done_at"] - committed < 1.0, "done within a second of the commit"


def test_failing_job_keeps_its_traceback(server):
    job_id, _ = delay(f"{RECORD}.with_delay().fail('e2e boom')")
    row = wait_for(job_id, {"done", "failed"}, timeout=10)
    assert row["state"] == "failed"
    assert row["exc_name"] == "builtins.ValueError"
    assert "Traceback" in row["exc_info"] and "e2e boom" in row["exc_info"]


def test_retryable_job_retries_on_its_pattern_then_fails(server):
    # retry_later's pattern (test_queue_job data): 1 s between the first tries
    job_id, committed = delay(f"{RECORD}.with_delay(max_retries=3).retry_later('again')")
    row = wait_for(job_id, {"done", "failed"}, timeout=20)
    assert row["state"] == "failed"
    assert row["retry"] == 3
    assert row["done_at"] - committed >= 2.0, "two retries, one second apart at least"


def test_killed_runner_job_is_rescued_and_done(server):
    job_id, _ = delay(f"{RECORD}.with_delay(max_retries=5).sleep(3)")
    wait_for(job_id, {"started"}, timeout=10)
    server.kill(signal.SIGKILL)
    assert job_row(job_id)["state"] == "started", "nobody finished it"
    server.start()
    # Rescue within its interval (5 s), then the second try runs (3 s).
    row = wait_for(job_id, {"done", "failed"}, timeout=20)
    assert row["state"] == "done"
    assert row["retry"] == 2, "the killed try counts"


def test_runner_reconnects_when_its_connections_are_cut(server):
    """As when PostgreSQL restarts: every session of the server ends."""
    first, _ = delay(f"{RECORD}.with_delay().increment(1)")
    wait_for(first, {"done"}, timeout=10)
    with psycopg2.connect(dbname=DB) as conn, conn.cursor() as cr:
        cr.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = %s",
            (DB, f"odoo-{server.process.pid}"),
        )
        assert cr.fetchone()[0] >= 2, "the LISTEN connection and an executor's, at least"
    time.sleep(1.5)  # the runner's first reconnection attempt comes after 1 s
    second, committed = delay(f"{RECORD}.with_delay().increment(1)")
    row = wait_for(second, {"done", "failed"}, timeout=10)
    assert row["state"] == "done"
    log = server.log_path.read_text()
    assert "connected again" in log
    # A dead kept connection is replaced quietly, not logged as a failed query.
    assert "bad query" not in log


def counter_of(record_id):
    with psycopg2.connect(dbname=DB) as conn, conn.cursor() as cr:
        cr.execute("SELECT COALESCE(counter, 0) FROM test_queue_job WHERE id = %s", (record_id,))
        return cr.fetchone()[0]


def started_at(job_id):
    with psycopg2.connect(dbname=DB) as conn, conn.cursor() as cr:
        cr.execute(
            "SELECT EXTRACT(EPOCH FROM date_started AT TIME ZONE 'UTC')::float8"
            " FROM queue_job WHERE id = %s",
            (job_id,),
        )
        return cr.fetchone()[0]


def test_job_past_its_time_limit_fails_with_job_timeout_and_the_next_job_runs(server):
    out = shell(
        f"record = {RECORD}\n"
        "stopped = record.with_delay(timeout=2).increment_then_sleep(60)\n"
        "following = record.with_delay().increment(1)\n"
        "print('JOBS', record.id, stopped.id, following.id)\n"
    )
    line = next(line for line in out.splitlines() if line.startswith("JOBS "))
    record_id, stopped, following = map(int, line.split()[1:])
    row = wait_for(stopped, {"done", "failed"}, timeout=15)
    assert row["state"] == "failed"
    assert row["done_at"] - started_at(stopped) < 5, "stopped within 5 s of its start"
    assert row["exc_name"] == "odoo.addons.queue_job.exception.JobTimeout"
    assert "time.sleep(seconds)" in row["exc_info"], "the job's stack when it was stopped"
    assert wait_for(following, {"done", "failed"}, timeout=5)["state"] == "done"
    assert counter_of(record_id) == 1, "the stopped job's increment was rolled back"
    log = server.log_path.read_text()
    assert f"stopping job {stopped} " in log
    assert "Traceback" not in log


def test_cancel_of_a_running_job_from_another_process_stops_it(server):
    out = shell(
        "from odoo.addons.queue_job.delay import chain\n"
        f"record = {RECORD}\n"
        "running = record.delayable().increment_then_sleep(60)\n"
        "after = record.delayable().increment(1)\n"
        "chain(running, after).delay()\n"
        "print('JOBS', record.id, running._generated_job.id, after._generated_job.id)\n"
    )
    line = next(line for line in out.splitlines() if line.startswith("JOBS "))
    record_id, running, after = map(int, line.split()[1:])
    wait_for(running, {"started"}, timeout=10)
    time.sleep(0.5)  # in its sleep, its increment flushed
    shell(f"env['queue.job'].browse({running}).button_cancelled()\n")
    cancelled_at = time.monotonic()
    while "its thread is abandoned" not in server.log_path.read_text():
        assert time.monotonic() - cancelled_at < 5, "not stopped within 5 s"
        time.sleep(0.05)
    assert job_row(running)["state"] == "cancelled"
    assert job_row(after)["state"] == "cancelled"
    assert counter_of(record_id) == 0, "the cancelled job's increment was rolled back"
    with psycopg2.connect(dbname=DB) as conn, conn.cursor() as cr:
        cr.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
            " AND objid = %s::oid"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (running,),
        )
        assert cr.fetchone()[0] == 0, "its connection, which held its liveness lock, is gone"
    job_id, _ = delay(f"{RECORD}.with_delay().increment(2)")
    assert wait_for(job_id, {"done", "failed"}, timeout=5)["state"] == "done"


RUNNER_ROLE, RUNNER_PASSWORD = "queue_job_e2e_runner", "e2e-secret"


@pytest.fixture
def runner_role():
    """A role that logs in over TCP with a password, with the rights of the current user."""
    with psycopg2.connect(dbname=DB) as conn, conn.cursor() as cr:
        cr.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cr.fetchone()[0]:
            pytest.skip("needs a superuser to create a role")
        cr.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s IN ROLE {}").format(
                sql.Identifier(RUNNER_ROLE), sql.Identifier(conn.info.user)
            ),
            (RUNNER_PASSWORD,),
        )
    yield
    with psycopg2.connect(dbname=DB) as conn, conn.cursor() as cr:
        cr.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(RUNNER_ROLE)))


def test_runner_connects_with_its_own_db_settings(runner_role, tmp_path):
    """OCA's ODOO_QUEUE_JOB_JOBRUNNER_DB_*: Odoo stays on its socket, the runner uses TCP."""
    server = Server(
        tmp_path / "odoo.log",
        {
            "ODOO_QUEUE_JOB_JOBRUNNER_DB_HOST": "127.0.0.1",
            "ODOO_QUEUE_JOB_JOBRUNNER_DB_USER": RUNNER_ROLE,
            "ODOO_QUEUE_JOB_JOBRUNNER_DB_PASSWORD": RUNNER_PASSWORD,
        },
    )
    server.start()
    try:
        job_id, _ = delay(f"{RECORD}.with_delay().session_user()")
        assert wait_for(job_id, {"done", "failed"}, timeout=10)["state"] == "done"
        with psycopg2.connect(dbname=DB) as conn, conn.cursor() as cr:
            cr.execute("SELECT result FROM queue_job WHERE id = %s", (job_id,))
            assert cr.fetchone()[0] == str((RUNNER_ROLE, "127.0.0.1/32"))
            # The LISTEN connection and the executor that ran the job, at least.
            cr.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE usename = %s AND datname = %s AND client_addr = '127.0.0.1'",
                (RUNNER_ROLE, DB),
            )
            assert cr.fetchone()[0] >= 2
    finally:
        server.kill()
