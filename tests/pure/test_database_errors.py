# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""database_errors tells a lost connection from the job's own database errors, on real ones."""

import psycopg2
import pytest

from queue_job.core.database_errors import CONCURRENCY_ERRORS, connection_lost


def raised(conn, *statements):
    """The error that running ``statements`` on ``conn`` raises."""
    with pytest.raises(psycopg2.Error) as caught, conn.cursor() as cr:
        for statement in statements:
            cr.execute(statement)
    return caught.value


def test_a_terminated_backend_is_a_lost_connection(connect):
    conn, admin = connect(), connect()
    with conn.cursor() as cr:
        cr.execute("SELECT pg_backend_pid()")
        pid = cr.fetchone()[0]
    conn.commit()
    with admin, admin.cursor() as cr:
        cr.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert connection_lost(raised(conn, "SELECT 1"))
    assert connection_lost(raised(conn, "SELECT 1")), "and then the closed connection"


@pytest.mark.parametrize(
    ("statements", "name"),
    [
        (["SET statement_timeout = 10", "SELECT pg_sleep(1)"], "QueryCanceled"),
        (["SELECT 1 / 0"], "DivisionByZero"),
        (["DO $$ BEGIN RAISE EXCEPTION 'full' USING ERRCODE = 'disk_full'; END $$"], "DiskFull"),
        (
            ["DO $$ BEGIN RAISE EXCEPTION 'oom' USING ERRCODE = 'out_of_memory'; END $$"],
            "OutOfMemory",
        ),
    ],
)
def test_errors_of_the_statement_are_not_a_lost_connection(connect, statements, name):
    err = raised(connect(), *statements)
    assert type(err).__name__ == name
    assert not connection_lost(err)
    assert not isinstance(err, CONCURRENCY_ERRORS)


def test_a_lock_timeout_is_an_error_of_the_job(connect, conn):
    holder, waiter = connect(), connect()
    with holder.cursor() as cr:
        cr.execute("LOCK TABLE queue_job")
    err = raised(waiter, "SET lock_timeout = 10", "SELECT count(*) FROM queue_job")
    holder.rollback()
    assert isinstance(err, psycopg2.errors.LockNotAvailable)
    assert not isinstance(err, CONCURRENCY_ERRORS)
    assert not connection_lost(err)


def test_a_serialization_failure_is_a_concurrency_error(connect, conn):
    with conn, conn.cursor() as cr:
        cr.execute("INSERT INTO queue_job (uuid, state) VALUES ('x', 'pending') RETURNING id")
        job_id = cr.fetchone()[0]
    reader, writer = connect(), connect()
    reader.set_session(isolation_level="REPEATABLE READ")
    with reader.cursor() as cr:
        cr.execute("SELECT 1")  # the snapshot
    with writer, writer.cursor() as cr:
        cr.execute("UPDATE queue_job SET priority = 1 WHERE id = %s", (job_id,))
    err = raised(reader, f"UPDATE queue_job SET priority = 2 WHERE id = {job_id}")
    assert isinstance(err, psycopg2.errors.SerializationFailure)
    assert isinstance(err, CONCURRENCY_ERRORS)
    assert not connection_lost(err)


def test_the_bare_database_error_of_a_crashed_server_is_a_lost_connection():
    # What psycopg2 raises on a connection whose server crashed (or was
    # stopped with -m immediate): no SQLSTATE, the connection not yet closed.
    assert connection_lost(psycopg2.DatabaseError("server closed the connection unexpectedly"))


def test_psycopg2s_own_refusals_are_errors_of_the_job(conn):
    with pytest.raises(psycopg2.ProgrammingError) as caught, conn.cursor() as cr:
        cr.execute("SET statement_timeout = 0")
        cr.fetchone()  # no results to fetch
    assert caught.value.pgcode is None
    assert not connection_lost(caught.value)
