# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The database objects of schema.py: created by ensure(), removed by drop()."""

from queue_job.core import schema


def test_drop_removes_the_functions_and_table_that_ensure_creates(conn):
    functions = (
        "SELECT proname FROM pg_proc WHERE proname LIKE 'queue\\_job\\_%' ORDER BY proname"
    )
    with conn.cursor() as cr:  # DDL is transactional: rolled back below
        cr.execute(functions)
        assert cr.fetchall() == [
            ("queue_job_channel_notify",),
            ("queue_job_channels",),
            ("queue_job_claim",),
            ("queue_job_eta_written",),
            ("queue_job_notify",),
        ]
        schema.drop(cr)
        cr.execute(functions)
        assert cr.fetchall() == []
        cr.execute("SELECT to_regclass('queue_job_throttle'), to_regclass('queue_job_rate_start')")
        assert cr.fetchone() == (None, None)
        cr.execute(
            "SELECT tgname FROM pg_trigger"
            " WHERE tgrelid IN ('queue_job'::regclass, 'queue_job_channel'::regclass)"
            " AND NOT tgisinternal"
        )
        assert cr.fetchall() == []
    conn.rollback()


def test_is_current_only_with_the_objects_of_this_version(conn):
    with conn.cursor() as cr:
        assert schema.is_current(cr)
        cr.execute(
            f"COMMENT ON FUNCTION {schema.CLAIM_FUNCTION} IS 'queue_job schema 1'"
        )
        assert not schema.is_current(cr)
        schema.drop(cr)
        assert not schema.is_current(cr)
        schema.ensure(cr)
        assert schema.is_current(cr)
    conn.rollback()
