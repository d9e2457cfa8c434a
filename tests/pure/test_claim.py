# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Claims, releases and orphan rescue on a real database, over real concurrent connections."""

import logging
import select
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
from jobs import insert_graph, insert_job, job_row, set_state, states
from psycopg2.extensions import ISOLATION_LEVEL_READ_COMMITTED, ISOLATION_LEVEL_REPEATABLE_READ

from queue_job.core import transitions
from queue_job.core.channels import Channels
from queue_job.core.claim import (
    LOCK_NAMESPACE,
    WORKER_DIED,
    claim_job,
    drop_liveness_lock,
    release_orphaned_edges,
    rescue_orphans,
    seconds_until_next_eta,
)

ROOT_4 = Channels.parse("root:4")


# Each helper runs in a transaction of its own: ``with conn`` commits, or rolls
# back on an error, so that a failing claim cannot keep the claim lock and
# hang the other connections of a test.


def claim(conn, channels=ROOT_4):
    """Claim a job on ``conn`` and commit, as an executor does; return its id, or None."""
    with conn, conn.cursor() as cr:
        job = claim_job(cr, channels)
    return job and job["id"]


def rescue(conn):
    with conn, conn.cursor() as cr:
        return rescue_orphans(cr)


def run_sql(conn, query, params=None):
    with conn, conn.cursor() as cr:
        cr.execute(query, params)
        return cr.fetchall() if cr.description else None


def insert(conn, count=1, **values):
    with conn, conn.cursor() as cr:
        return [insert_job(cr, **values) for _ in range(count)]


def shift(conn, column, job_ids, interval):
    """Set ``column`` (date_created, eta) of ``job_ids`` to now (UTC) + ``interval``."""
    run_sql(
        conn,
        f"UPDATE queue_job SET {column} = (now() AT TIME ZONE 'UTC') + %s::interval"
        " WHERE id = ANY(%s)",
        (interval, job_ids),
    )


def row(conn, job_id):
    with conn, conn.cursor() as cr:
        return job_row(cr, job_id)


def liveness_lock_holders(conn, job_id):
    return [
        pid
        for (pid,) in run_sql(
            conn,
            """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND classid = %s::oid AND objid = %s::oid AND objsubid = 2
                 AND database = (SELECT oid FROM pg_database
                                  WHERE datname = current_database())""",
            (LOCK_NAMESPACE, job_id),
        )
    ]


def kill(conn, worker, death="close"):
    """End the session of ``worker``, and wait until the server has ended it."""
    pid = worker.get_backend_pid()
    if death == "close":
        worker.close()
    else:
        run_sql(conn, "SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 5
    while run_sql(conn, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)):
        assert time.monotonic() < deadline, "the session did not end"
        time.sleep(0.01)


# -- claim -------------------------------------------------------------------


def test_claim_starts_the_job_counts_the_try_and_takes_its_liveness_lock(connect, conn):
    [job_id] = insert(conn, name="the job")
    worker, observer = connect(), connect()
    with worker.cursor() as cr:
        claimed = claim_job(cr, ROOT_4)
        # The lock is held before the claim commits: no moment where the job
        # is started and looks orphaned.
        assert liveness_lock_holders(observer, job_id) == [worker.get_backend_pid()]
    worker.commit()
    job = row(observer, job_id)
    assert job["state"] == "started"
    assert job["retry"] == 1
    assert job["date_started"] is not None and job["date_enqueued"] is not None
    # The claim returns the row as it committed it: the runner reads no more.
    assert claimed == job
    assert claimed["name"] == "the job"
    with worker.cursor() as cr:
        assert drop_liveness_lock(cr, job_id) is True
        assert drop_liveness_lock(cr, job_id) is False
    worker.commit()
    assert liveness_lock_holders(observer, job_id) == []


def test_claim_returns_none_when_nothing_is_pending(conn):
    insert(conn, state="wait_dependencies")
    insert(conn, state="done")
    assert claim(conn) is None


def test_claims_and_rescues_wake_no_runner(connect, conn):
    """A claim takes a job a runner was woken for, and frees no slot: it wakes nobody."""
    [job_id] = insert(conn)
    listener = connect()
    listener.autocommit = True
    run_sql(listener, "LISTEN queue_job")
    worker = connect()
    assert claim(worker) == job_id
    insert(conn, state="wait_dependencies")
    assert claim(connect()) is None
    assert rescue(connect()) == ([], [])
    time.sleep(0.2)
    listener.poll()
    assert listener.notifies == []
    with worker, worker.cursor() as cr:  # the end of a running job frees a slot
        transitions.mark_done(cr, [job_id], ("started",))
    select.select([listener], [], [], 2)
    listener.poll()
    assert len(listener.notifies) == 1


def test_claim_refuses_to_run_outside_read_committed(connect, conn):
    """On an autocommit connection, the session's default level is the claim's."""
    [job_id] = insert(conn)
    worker = connect()
    worker.autocommit = True
    with worker.cursor() as cr:
        cr.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with pytest.raises(psycopg2.errors.RaiseException, match="READ COMMITTED"):
            claim_job(cr, ROOT_4)
        cr.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")
        assert claim_job(cr, ROOT_4)["id"] == job_id


def test_claim_order_is_priority_then_age_then_id(conn):
    late, urgent, first, *same_time, lazy = insert(conn, count=6)
    shift(conn, "date_created", [late], "1 minute")
    shift(conn, "date_created", [first], "-1 minute")
    run_sql(
        conn, "UPDATE queue_job SET date_created = '2020-01-01' WHERE id = ANY(%s)", (same_time,)
    )
    run_sql(conn, "UPDATE queue_job SET priority = 1 WHERE id = %s", (urgent,))
    run_sql(conn, "UPDATE queue_job SET priority = 20 WHERE id = %s", (lazy,))
    expected = [urgent, *same_time, first, late, lazy]
    assert [claim(conn, Channels.parse("root:10")) for _ in expected] == expected


@pytest.mark.parametrize("spread", [False, True], ids=["one_channel", "three_channels"])
def test_claim_order_is_priority_then_age_then_id_across_channels(conn, spread):
    """The first job of each channel competes: the order is global."""
    channels = ["root", "root.a", "root.b.x"] if spread else ["root"]
    jobs = []
    for index, (priority, age) in enumerate([(5, 1), (1, 3), (5, 2), (9, 5), (1, 4), (5, 2)]):
        [job_id] = insert(conn, channel=channels[index % len(channels)], priority=priority)
        shift(conn, "date_created", [job_id], f"-{age} minutes")
        jobs.append((priority, -age, job_id))
    expected = [job_id for *_key, job_id in sorted(jobs)]
    setting = Channels.parse("root:10,root.a:5,root.b:5")
    assert [claim(conn, setting) for _ in expected] == expected


def test_claim_respects_eta(conn):
    [future] = insert(conn, priority=1)
    [past] = insert(conn, priority=5)
    [no_eta] = insert(conn, priority=9)
    shift(conn, "eta", [future], "1 hour")
    shift(conn, "eta", [past], "-1 second")
    assert claim(conn) == past
    assert claim(conn) == no_eta
    assert claim(conn) is None
    shift(conn, "eta", [future], "0")
    assert claim(conn) == future


def test_a_job_becomes_claimable_when_its_eta_passes(conn):
    """Without a write: the claim itself sees that the eta has passed."""
    [job_id] = insert(conn)
    [later] = insert(conn)
    shift(conn, "eta", [job_id], "0.5 seconds")
    shift(conn, "eta", [later], "1 hour")
    assert claim(conn) is None
    time.sleep(0.6)
    assert claim(conn) == job_id
    assert claim(conn) is None
    # A later write of the eta counts again (a requeue clears it).
    finish(conn, [job_id], "requeued")
    shift(conn, "eta", [job_id], "1 hour")
    assert claim(conn) is None
    shift(conn, "eta", [later], "-1 second")
    assert claim(conn) == later


def test_a_liveness_lock_held_on_a_pending_job_delays_no_claim(connect, conn):
    """A job requeued while its worker still runs it keeps its liveness lock:
    claims pass over it, without waiting for it under the claim lock."""
    [held, free_1, free_2] = insert(conn, count=3)
    holder = connect()
    run_sql(holder, "SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, held))
    workers = [connect() for _ in range(2)]
    for worker in workers:
        run_sql(worker, "SET statement_timeout = '5s'")
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        claimed = sorted(pool.map(claim, workers))
    assert time.monotonic() - started < 1
    assert claimed == [free_1, free_2]
    assert row(conn, held)["state"] == "pending"
    assert claim(workers[0]) is None
    run_sql(holder, "SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, held))
    assert claim(workers[0]) == held


# Rows of queue_job the session read, this transaction's included.
TUPLES_READ = """SELECT COALESCE(idx_tup_fetch, 0) + seq_tup_read
                   FROM pg_stat_xact_user_tables WHERE relname = 'queue_job'"""


@pytest.mark.parametrize(
    "backlog",
    [
        "full_channel",
        "future_eta",
        "low_priority_flood",
        "waiting_graph",
        "sequential_head",
        "done_jobs",
    ],
)
def test_a_claim_reads_the_same_few_rows_whatever_the_backlog(conn, backlog):
    """The runnable job is in root.b; 3,000 others are ahead of it or around it."""
    channels = Channels.parse("root:4,root.a:1,root.b:3,root.s:1:sequential")
    full_channel = ("root.a", "pending", 1, None)
    shapes = {
        # (channel, state, priority, eta) of each 3,000 jobs
        "full_channel": [full_channel],
        "future_eta": [("root.b", "pending", 1, "1 day")],
        "low_priority_flood": [("root.b", "pending", 50, None)],
        "waiting_graph": [("root.b", "wait_dependencies", 1, None)],
        "sequential_head": [("root.s", "pending", 1, None)],
        # Done jobs of a channel that sorts first, as the ORM's index of
        # channels has them, then a full channel's.
        "done_jobs": [("root", "done", 1, None), full_channel],
    }
    with conn, conn.cursor() as cr:
        insert_job(cr, channel="root.a", state="started")
        for channel, state, priority, eta in shapes[backlog]:
            cr.execute(
                """INSERT INTO queue_job (uuid, state, channel, priority, retry, max_retries,
                                          date_created, eta, pending_dependency_count)
                   SELECT md5(random()::text || g), %s, %s, %s, 0, 5, now() AT TIME ZONE 'UTC',
                          (now() AT TIME ZONE 'UTC') + %s::interval, 0
                     FROM generate_series(1, 3000) AS g""",
                (state, channel, priority, eta),
            )
        cr.execute("ANALYZE queue_job")
    runnable = insert(conn, count=8, channel="root.b", priority=10)
    reads = []
    for _ in range(8):  # PL/pgSQL plans are custom, then generic from the 6th call
        with conn, conn.cursor() as cr:
            cr.execute(TUPLES_READ)
            [before] = cr.fetchone()
            job = claim_job(cr, channels)
            cr.execute(TUPLES_READ)
            reads.append(cr.fetchone()[0] - before)
            assert job["channel"] == ("root.s" if backlog == "sequential_head" else "root.b")
            transitions.mark_done(cr, [job["id"]], ("started",))
        drop_liveness_lock(conn.cursor(), job["id"])
    assert max(reads) < 60, reads
    if backlog != "sequential_head":
        assert all(row(conn, job_id)["state"] == "done" for job_id in runnable)


def test_claim_skips_a_job_that_another_transaction_holds(connect, conn):
    [held, free] = insert(conn, count=2)
    form = connect()
    with form.cursor() as cr:
        cr.execute("SELECT id FROM queue_job WHERE id = %s FOR UPDATE", (held,))
    worker = connect()
    run_sql(worker, "SET statement_timeout = '5s'")
    started = time.monotonic()
    assert claim(worker) == free
    assert time.monotonic() - started < 1
    form.rollback()
    assert claim(worker) == held


def test_capacity_counts_running_jobs_of_the_channel_and_its_ancestors(conn):
    channels = Channels.parse("root:3,root.mail:2,root.mail.bulk:1")
    [bulk_1, bulk_2] = insert(conn, count=2, channel="root.mail.bulk", priority=1)
    [mail_1, mail_2] = insert(conn, count=2, channel="root.mail", priority=2)
    [other] = insert(conn, channel="root.other", priority=3)
    assert claim(conn, channels) == bulk_1
    # bulk is full: bulk_2 waits; mail has one slot left.
    assert claim(conn, channels) == mail_1
    # mail is full (bulk_1 counts for it too); root has one slot left.
    assert claim(conn, channels) == other
    assert claim(conn, channels) is None
    with conn, conn.cursor() as cr:
        transitions.mark_done(cr, [bulk_1], ("started",))
    assert claim(conn, channels) == bulk_2
    assert claim(conn, channels) is None  # root is full: mail_2 waits


LINEAGE_CHANNELS = Channels.parse("root:4,root.mail:2,root.mail.bulk:1,root.sale:1")


@pytest.mark.parametrize(
    "running, full",
    [
        ({}, set()),
        ({"root.mail.bulk": 1}, {"root.mail.bulk"}),
        ({"root.mail.bulk.x": 1, "root.mail": 1}, {"root.mail.bulk", "root.mail"}),
        ({"root.mail.other": 2}, {"root.mail"}),
        ({"root.sale": 1, "root.x": 2}, {"root.sale"}),
        ({"root.sale": 1, "root.x": 3}, {"root.sale", "root"}),
        ({"other": 4}, {"root"}),
        ({None: 3, "root.mail": 1}, {"root"}),
    ],
)
def test_a_job_starts_only_when_no_configured_channel_of_its_lineage_is_full(
    conn, running, full
):
    """``running``: running jobs per job channel; ``full``: the configured channels they fill."""
    for channel, count in running.items():
        insert(conn, count=count, channel=channel, state="started")
    candidates = ["root.mail.bulk.x", "root.mail.other", "root.sale", "root.x", None]
    for channel in candidates:
        [job_id] = insert(conn, channel=channel)
        claimable = not set(LINEAGE_CHANNELS.lineage(channel)) & full
        with conn, conn.cursor() as cr:
            claimed = claim_job(cr, LINEAGE_CHANNELS)
            cr.execute("DELETE FROM queue_job WHERE id = %s", (job_id,))
        assert (claimed and claimed["id"]) == (job_id if claimable else None), channel


def test_child_capacity_larger_than_parent_is_capped_by_the_parent(conn):
    channels = Channels.parse("root:1,root.a:5")
    insert(conn, channel="root.a", state="started")
    insert(conn, channel="root.a")
    assert claim(conn, channels) is None


def test_full_channel_backlog_does_not_starve_other_channels(conn):
    channels = Channels.parse("root:2,root.sub:1")
    insert(conn, channel="root.sub", state="started")
    insert(conn, count=200, channel="root.sub", priority=1)
    insert(conn, count=20, channel="root.sub.deeper", priority=1)
    [mine] = insert(conn, channel="root.other", priority=50)
    assert claim(conn, channels) == mine


def test_full_channel_excludes_by_dotted_prefix_only(conn):
    channels = Channels.parse("root:5,root.a_b:1")
    insert(conn, channel="root.a_b", state="started")
    insert(conn, count=3, channel="root.a_b.sub", priority=1)
    # Not under root.a_b, although LIKE 'root.a_b%' would match them.
    [look_alike] = insert(conn, channel="root.aXb", priority=2)
    [longer] = insert(conn, channel="root.a_bc", priority=3)
    assert claim(conn, channels) == look_alike
    assert claim(conn, channels) == longer
    assert claim(conn, channels) is None


# Scans of the session not yet reported, this transaction's included.
SEQ_SCANS = "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'queue_job'"


@pytest.mark.parametrize(
    "setting", ["root:4,root.a:2", "root:4,root.a:1:sequential,root.b:1:throttle=1"]
)
def test_claim_reads_the_first_pending_jobs_in_index_order(conn, setting):
    """Not every pending job: a plan that sorts them costs a claim O(backlog)."""
    with conn, conn.cursor() as cr:
        cr.execute(
            """INSERT INTO queue_job (uuid, state, channel, priority, retry, max_retries,
                                      date_created)
               SELECT md5(g::text), 'pending', CASE WHEN g % 2 = 0 THEN 'root.a' ELSE 'root' END,
                      10, 0, 5, now() AT TIME ZONE 'UTC'
                 FROM generate_series(1, 3000) AS g"""
        )
        cr.execute("ANALYZE queue_job")
    channels = Channels.parse(setting)
    for _ in range(8):  # PL/pgSQL plans are custom, then generic from the 6th call
        with conn, conn.cursor() as cr:
            cr.execute(SEQ_SCANS)
            [before] = cr.fetchone()
            job_id = claim_job(cr, channels)["id"]
            cr.execute(SEQ_SCANS)
            assert cr.fetchone() == (before,)
            transitions.mark_done(cr, [job_id], ("started",))
        drop_liveness_lock(conn.cursor(), job_id)


def test_enqueued_jobs_take_slots(conn):
    insert(conn, state="enqueued")
    insert(conn)
    assert claim(conn, Channels.parse("root:1")) is None


CAPACITIES = "root:2,root.sub:1"

# The workers' transactions as the runner's (READ COMMITTED) and as Odoo's.
ISOLATIONS = pytest.mark.parametrize(
    "isolation",
    [ISOLATION_LEVEL_READ_COMMITTED, ISOLATION_LEVEL_REPEATABLE_READ],
    ids=["read_committed", "repeatable_read_like_odoo"],
)


@ISOLATIONS
def test_simultaneous_claims_never_exceed_capacity(connect, conn, isolation):
    channels = Channels.parse(CAPACITIES)
    insert(conn, count=5, channel="root.sub", priority=1)
    insert(conn, count=5, channel="root")
    workers = [connect() for _ in range(8)]
    for worker in workers:
        worker.set_session(isolation_level=isolation)
    barrier = threading.Barrier(len(workers))

    def claim_at_once(worker):
        barrier.wait()
        return claim(worker, channels)

    with ThreadPoolExecutor(len(workers)) as pool:
        claimed = [job_id for job_id in pool.map(claim_at_once, workers) if job_id]
    channels_of = dict(run_sql(conn, "SELECT id, channel FROM queue_job"))
    assert len(claimed) == 2
    assert sorted(channels_of[job_id] for job_id in claimed) == ["root", "root.sub"]


@ISOLATIONS
def test_concurrent_workers_never_exceed_capacity_and_run_each_job_once(connect, conn, isolation):
    channels = Channels.parse(CAPACITIES)
    insert(conn, count=20, channel="root.sub")
    insert(conn, count=20, channel="root.other")
    running_seen = []

    def work(worker):
        worker.set_session(isolation_level=isolation)
        while True:
            job_id = claim(worker, channels)
            if job_id is None:
                if not run_sql(worker, "SELECT 1 FROM queue_job WHERE state != 'done' LIMIT 1"):
                    return
                time.sleep(0.002)
                continue
            [running] = run_sql(
                worker,
                "SELECT count(*), count(*) FILTER (WHERE channel = 'root.sub') "
                "FROM queue_job WHERE state = 'started'",
            )
            running_seen.append(running)
            time.sleep(0.005)
            with worker, worker.cursor() as cr:
                assert transitions.mark_done(cr, [job_id], ("started",)) == [job_id]
            with worker, worker.cursor() as cr:
                assert drop_liveness_lock(cr, job_id)

    with ThreadPoolExecutor(8) as pool:
        for result in [pool.submit(work, connect()) for _ in range(8)]:
            result.result()
    assert len(running_seen) == 40
    assert max(total for total, _ in running_seen) <= 2
    assert max(sub for _, sub in running_seen) <= 1
    assert run_sql(conn, "SELECT state, retry, count(*) FROM queue_job GROUP BY 1, 2") == [
        ("done", 1, 40)
    ]


# -- orphan rescue -----------------------------------------------------------


@pytest.mark.parametrize("death", ["close", "terminate"])
def test_rescue_requeues_the_job_of_a_dead_worker_with_its_try_counted(connect, conn, death):
    [job_id] = insert(conn)
    worker = connect()
    assert claim(worker) == job_id
    kill(conn, worker, death)
    assert rescue(conn) == ([job_id], [])
    job = row(conn, job_id)
    assert (job["state"], job["retry"], job["exc_name"]) == ("pending", 1, WORKER_DIED)
    assert job["eta"] is None and job["date_started"] is None
    assert claim(conn) == job_id
    assert row(conn, job_id)["retry"] == 2


def test_rescue_leaves_jobs_of_live_workers_alone(connect, conn):
    [job_id] = insert(conn)
    worker = connect()
    assert claim(worker) == job_id
    for _ in range(3):
        assert rescue(connect()) == ([], [])
    assert row(conn, job_id)["state"] == "started"


def test_rescue_fails_a_job_out_of_tries_and_its_waiting_dependents(connect, conn):
    with conn.cursor() as cr:
        ids = insert_graph(cr, [("child", "parent"), ("grandchild", "child")])
        cr.execute(
            "UPDATE queue_job SET max_retries = 2, retry = 1 WHERE id = %s", (ids["parent"],)
        )
    conn.commit()
    worker = connect()
    assert claim(worker) == ids["parent"]
    kill(conn, worker)
    assert rescue(conn) == ([], [ids["parent"]])
    with conn.cursor() as cr:
        assert states(cr, ids) == {
            "parent": ("failed", 0),
            "child": ("failed", 1),
            "grandchild": ("failed", 1),
        }
        assert job_row(cr, ids["parent"])["exc_name"] == WORKER_DIED
        assert job_row(cr, ids["child"])["exc_name"] == transitions.DEPENDENCY_FAILED


def test_rescue_requeues_forever_when_max_retries_is_zero(connect, conn):
    [job_id] = insert(conn, max_retries=0, retry=99)
    worker = connect()
    assert claim(worker) == job_id
    kill(conn, worker)
    assert rescue(conn) == ([job_id], [])


def test_rescue_handles_enqueued_and_started_orphans_at_once(conn):
    [enqueued] = insert(conn, state="enqueued")
    [started] = insert(conn, state="started", retry=5, max_retries=5)
    [alive] = insert(conn)
    insert(conn, state="done")
    assert claim(conn) == alive  # and conn keeps running it
    assert rescue(conn) == ([enqueued], [started])


def test_rescue_releases_dependents_of_a_job_done_by_a_worker_that_died(connect, conn):
    with conn, conn.cursor() as cr:
        ids = insert_graph(cr, [("callback", "a"), ("callback", "b")])
    worker = connect()
    for job_id in (claim(worker), claim(worker)):
        with worker, worker.cursor() as cr:  # done, then the worker dies before releasing
            transitions.mark_done(cr, [job_id], ("started",), release=False)
    kill(conn, worker)
    assert rescue(conn) == ([], [])
    with conn, conn.cursor() as cr:
        assert release_orphaned_edges(cr) == 0  # the end: the next call starts over
        assert states(cr, ids)["callback"] == ("pending", 0)


def test_rescue_leaves_a_job_that_ends_meanwhile_as_it_ended(connect, conn):
    [job_id] = insert(conn)
    worker = connect()
    assert claim(worker) == job_id
    # The worker ends the job; its transaction is not committed yet when the
    # rescue finds the job started and no longer locked.
    with worker.cursor() as cr:
        transitions.mark_done(cr, [job_id], ("started",), result="ok")
        drop_liveness_lock(cr, job_id)
    rescuer = connect()
    run_sql(rescuer, "SET statement_timeout = '5s'")
    assert rescue(rescuer) == ([], [])  # the job's row is held: skipped, not waited for
    worker.commit()
    assert rescue(rescuer) == ([], [])
    job = row(conn, job_id)
    assert (job["state"], job["result"], job["exc_name"]) == ("done", "ok", None)


def test_rescue_holds_the_claim_of_the_job_it_decides_on_and_of_no_other(connect, conn):
    """It takes no claim lock: only the orphan's liveness lock, until it commits."""
    [orphan, other] = insert(conn, count=2, state="started")
    [pending] = insert(conn)
    rescuer = connect()
    with rescuer.cursor() as cr:
        assert rescue_orphans(cr) == ([orphan, other], [])  # not committed yet
    worker = connect()
    run_sql(worker, "SET statement_timeout = '5s'")
    # The orphans are pending in the rescuer's transaction only; the claim
    # does not wait for it, and could not start them yet.
    assert claim(worker) == pending
    assert liveness_lock_holders(conn, orphan) == [rescuer.get_backend_pid()]
    rescuer.commit()
    assert liveness_lock_holders(conn, orphan) == []
    assert claim(worker) == orphan


def test_rescue_skips_an_orphan_whose_row_a_transaction_holds(connect, conn):
    [held, free] = insert(conn, count=2, state="started")
    form = connect()
    with form.cursor() as cr:
        cr.execute("SELECT id FROM queue_job WHERE id = %s FOR UPDATE", (held,))
    rescuer = connect()
    run_sql(rescuer, "SET statement_timeout = '5s'")
    assert rescue(rescuer) == ([free], [])
    form.rollback()
    assert rescue(rescuer) == ([held], [])


def test_rescue_fails_an_orphan_out_of_tries_later_when_a_dependent_is_held(connect, conn):
    with conn, conn.cursor() as cr:
        ids = insert_graph(cr, [("child", "parent")])
        set_state(cr, [ids["parent"]], "started", retry=5, max_retries=5)
    [other] = insert(conn, state="started")
    form = connect()
    with form.cursor() as cr:
        cr.execute("SELECT id FROM queue_job WHERE id = %s FOR UPDATE", (ids["child"],))
    rescuer = connect()
    run_sql(rescuer, "SET statement_timeout = '5s'")
    assert rescue(rescuer) == ([other], [])  # the other orphan is not held up
    assert row(conn, ids["parent"])["state"] == "started"
    form.rollback()
    assert rescue(rescuer) == ([], [ids["parent"]])
    with conn.cursor() as cr:
        assert states(cr, ids) == {"parent": ("failed", 0), "child": ("failed", 1)}


def test_release_of_orphaned_edges_goes_in_batches_and_skips_held_dependents(
    connect, conn, monkeypatch
):
    monkeypatch.setattr("queue_job.core.claim.RELEASE_BATCH", 2)
    with conn, conn.cursor() as cr:
        ids = insert_graph(
            cr, [("cb", "a"), ("cb", "b"), ("cb", "c"), ("other", "d"), ("other", "e")]
        )
        set_state(cr, [ids[name] for name in "abcde"], "done")
    form = connect()
    with form.cursor() as cr:
        cr.execute("SELECT id FROM queue_job WHERE id = %s FOR UPDATE", (ids["other"],))
    rescuer = connect()
    run_sql(rescuer, "SET statement_timeout = '5s'")
    with rescuer, rescuer.cursor() as cr:
        assert release_orphaned_edges(cr) == ids["b"]  # a and b
        assert states(cr, ids)["cb"] == ("wait_dependencies", 1)
        assert release_orphaned_edges(cr, ids["b"]) == ids["d"]  # c, then d is held
        assert states(cr, ids)["cb"] == ("pending", 0)
        assert release_orphaned_edges(cr, ids["d"]) == 0  # e is held
        assert states(cr, ids)["other"] == ("wait_dependencies", 2)
    form.rollback()
    with rescuer, rescuer.cursor() as cr:
        assert release_orphaned_edges(cr) == ids["e"]
        assert release_orphaned_edges(cr, ids["e"]) == 0
        assert states(cr, ids)["other"] == ("pending", 0)


# -- eta ---------------------------------------------------------------------


def test_seconds_until_next_eta(conn):
    with conn.cursor() as cr:
        assert seconds_until_next_eta(cr, ROOT_4) is None
    insert(conn)
    past, soon, later, not_pending = insert(conn, count=4)
    shift(conn, "eta", [past], "-1 minute")
    shift(conn, "eta", [soon], "30 seconds")
    shift(conn, "eta", [later], "1 hour")
    shift(conn, "eta", [not_pending], "1 second")
    with conn.cursor() as cr:
        set_state(cr, [not_pending], "wait_dependencies")
        assert 29 < seconds_until_next_eta(cr, ROOT_4) <= 30


def test_seconds_until_next_eta_includes_the_end_of_a_throttle_delay(conn):
    channels = Channels.parse("root:4,root.t:1:throttle=20,root.u:1:throttle=40")
    insert(conn, channel="root.t")
    insert(conn, channel="root.u")
    assert claim(conn, channels) is not None
    with conn.cursor() as cr:
        assert 19 < seconds_until_next_eta(cr, channels) <= 20
        # A delay ended, and the throttle of a channel this runner does not
        # throttle, do not count.
        cr.execute("UPDATE queue_job_throttle SET last_start = last_start - interval '21 s'")
        assert seconds_until_next_eta(cr, channels) is None
        cr.execute("UPDATE queue_job_throttle SET last_start = last_start + interval '21 s'")
        assert seconds_until_next_eta(cr, ROOT_4) is None
    conn.rollback()
    [soon] = insert(conn)
    shift(conn, "eta", [soon], "10 seconds")
    with conn.cursor() as cr:
        assert 9 < seconds_until_next_eta(cr, channels) <= 10


# -- channel options -----------------------------------------------------------

SEQUENTIAL = Channels.parse("root:4,root.seq:1:sequential")


def finish(conn, job_ids, how="done", from_states=("started",)):
    """End ``job_ids`` as the runner or a button would: done, failed, cancelled, requeued."""
    with conn, conn.cursor() as cr:
        if how == "done":
            transitions.mark_done(cr, job_ids, from_states)
        elif how == "failed":
            transitions.mark_failed(cr, job_ids, from_states, exc_name="Boom")
        elif how == "cancelled":
            transitions.mark_cancelled(cr, job_ids, from_states)
        else:
            transitions.requeue(cr, job_ids, from_states)


def test_sequential_channel_runs_one_job_at_a_time_in_order(conn):
    first, second, third = insert(conn, count=3, channel="root.seq", priority=5)
    [urgent] = insert(conn, channel="root.seq", priority=1)
    [other] = insert(conn, channel="root.other", priority=9)
    assert claim(conn, SEQUENTIAL) == urgent
    assert claim(conn, SEQUENTIAL) == other
    assert claim(conn, SEQUENTIAL) is None
    for job_id in (first, second, third):
        finish(conn, [urgent if job_id == first else job_id - 1])
        assert claim(conn, SEQUENTIAL) == job_id
        assert claim(conn, SEQUENTIAL) is None


@pytest.mark.parametrize("resolution", ["done", "requeued", "cancelled"])
def test_sequential_channel_waits_while_a_job_of_its_own_is_failed(conn, resolution):
    [failing, waiting] = insert(conn, count=2, channel="root.seq")
    [other_1, other_2] = insert(conn, count=2, channel="root.other", priority=20)
    assert claim(conn, SEQUENTIAL) == failing
    finish(conn, [failing], "failed")
    assert claim(conn, SEQUENTIAL) == other_1  # root.seq has a free slot, but waits
    assert claim(conn, SEQUENTIAL) == other_2
    assert claim(conn, SEQUENTIAL) is None
    finish(conn, [failing], resolution, from_states=("failed",))
    assert claim(conn, SEQUENTIAL) == (failing if resolution == "requeued" else waiting)


def test_sequential_channel_waits_for_the_eta_of_its_first_job(conn):
    """OCA's ChannelQueue doctest: a later job does not overtake one waiting for its eta."""
    first, with_eta, last = insert(conn, count=3, channel="root.seq")
    shift(conn, "eta", [with_eta], "1 hour")
    assert claim(conn, SEQUENTIAL) == first
    finish(conn, [first])
    assert claim(conn, SEQUENTIAL) is None
    assert claim(conn, Channels.parse("root:4,root.seq:1")) == last  # not sequential
    finish(conn, [last], "requeued")
    shift(conn, "eta", [with_eta], "-1 second")
    assert claim(conn, SEQUENTIAL) == with_eta
    finish(conn, [with_eta])
    assert claim(conn, SEQUENTIAL) == last


def test_sequential_channel_waits_for_a_first_job_that_a_transaction_holds(connect, conn):
    [held, after] = insert(conn, count=2, channel="root.seq")
    [other] = insert(conn, channel="root.other", priority=20)
    form = connect()
    with form.cursor() as cr:
        cr.execute("SELECT id FROM queue_job WHERE id = %s FOR UPDATE", (held,))
    assert claim(conn, SEQUENTIAL) == other
    assert claim(conn, SEQUENTIAL) is None
    form.rollback()
    assert claim(conn, SEQUENTIAL) == held
    finish(conn, [held])
    assert claim(conn, SEQUENTIAL) == after


def test_unconfigured_channel_under_a_sequential_one_falls_back_on_it_as_in_oca(conn):
    """OCA runs such a job in a channel of its own under the sequential one: it
    shares its capacity of 1 and its order, but neither its failed jobs nor its
    etas hold up the sequential channel's own jobs."""
    [sub_first] = insert(conn, channel="root.seq.sub", priority=1)
    [own_1, own_2, own_3] = insert(conn, count=3, channel="root.seq", priority=5)
    [sub_failed, sub_eta] = insert(conn, count=2, channel="root.seq.sub", priority=1)
    shift(conn, "eta", [sub_eta], "1 hour")
    with conn, conn.cursor() as cr:
        set_state(cr, [sub_failed], "failed")
    assert claim(conn, SEQUENTIAL) == sub_first
    assert claim(conn, SEQUENTIAL) is None  # capacity 1, shared
    finish(conn, [sub_first])
    assert claim(conn, SEQUENTIAL) == own_1
    finish(conn, [own_1], "failed")
    assert claim(conn, SEQUENTIAL) is None  # its own failed job holds it up
    finish(conn, [own_1], "cancelled", from_states=("failed",))
    assert claim(conn, SEQUENTIAL) == own_2
    [sub_later] = insert(conn, channel="root.seq.sub", priority=9)
    finish(conn, [own_2])
    assert claim(conn, SEQUENTIAL) == own_3
    finish(conn, [own_3])
    assert claim(conn, SEQUENTIAL) == sub_later


def test_throttled_channel_starts_a_job_every_throttle_seconds(connect, conn):
    """The last start is shared: another connection (another runner) waits too."""
    channels = Channels.parse("root:4,root.t:3:throttle=30")
    [t_1, t_2] = insert(conn, count=2, channel="root.t", priority=1)
    [t_sub] = insert(conn, channel="root.t.sub", priority=1)
    [other] = insert(conn, channel="root.other", priority=9)
    assert claim(conn, channels) == t_1
    assert claim(connect(), channels) == other  # root.t has free slots, but waits
    assert claim(connect(), channels) is None  # and so do the channels under it
    [(last_start,)] = run_sql(conn, "SELECT last_start FROM queue_job_throttle")
    assert last_start == row(conn, t_1)["date_started"]
    run_sql(conn, "UPDATE queue_job_throttle SET last_start = last_start - interval '29 s'")
    assert claim(connect(), channels) is None
    run_sql(conn, "UPDATE queue_job_throttle SET last_start = last_start - interval '1 s'")
    assert claim(connect(), channels) == t_2
    run_sql(conn, "UPDATE queue_job_throttle SET last_start = last_start - interval '30 s'")
    assert claim(connect(), channels) == t_sub
    assert run_sql(conn, "SELECT channel FROM queue_job_throttle") == [("root.t",)]


def test_throttled_start_has_the_runners_read_the_next_eta(connect, conn):
    channels = Channels.parse("root:4,root.t:1:throttle=5")
    insert(conn, channel="root.other")
    insert(conn, channel="root.t")
    listener = connect()
    listener.autocommit = True
    run_sql(listener, "LISTEN queue_job")
    assert claim(conn, channels) is not None  # root.other: not throttled
    time.sleep(0.2)
    listener.poll()
    assert listener.notifies == []
    assert claim(conn, channels) is not None
    select.select([listener], [], [], 2)
    listener.poll()
    assert [notify.payload for notify in listener.notifies] == ["eta"]


def test_paused_channel_starts_nothing_under_it(conn):
    insert(conn, channel="root.p", priority=1)
    insert(conn, channel="root.p.sub", priority=1)
    [other] = insert(conn, channel="root.other", priority=9)
    assert claim(conn, Channels.parse("root:4,root.p:2:paused")) == other
    assert claim(conn, Channels.parse("root:4,root.p:2:paused")) is None
    insert(conn)
    assert claim(conn, Channels.parse("root:4:paused")) is None


def test_channel_without_a_limit_of_its_own_counts_against_its_ancestors(conn):
    channels = Channels.parse("root:2,root.a:1,root.a.b:0")
    [first, second] = insert(conn, count=2, channel="root.a.b")
    assert claim(conn, channels) == first
    assert claim(conn, channels) is None
    finish(conn, [first])
    assert claim(conn, channels) == second


def test_setting_a_failed_job_done_wakes_the_runners(connect, conn):
    """It may let a sequential channel go on."""
    [job_id] = insert(conn, state="failed")
    listener = connect()
    listener.autocommit = True
    run_sql(listener, "LISTEN queue_job")
    finish(conn, [job_id], "done", from_states=("failed",))
    select.select([listener], [], [], 2)
    listener.poll()
    assert len(listener.notifies) == 1


def test_claim_of_a_job_in_an_unconfigured_channel_says_what_it_falls_back_on(conn, caplog):
    """At debug level, as OCA's runner does."""
    channels = Channels.parse("root:4,root.mail:2")
    insert(conn, channel="root.mail.bulk")
    insert(conn, channel="root.mail")
    insert(conn, channel="root.other")  # falls back on root: OCA says nothing
    with caplog.at_level(logging.DEBUG, logger="queue_job.core.claim"):
        assert claim(conn, channels) and claim(conn, channels) and claim(conn, channels)
    assert [record.getMessage() for record in caplog.records] == [
        "root.mail.bulk has no specific configuration: using root.mail"
    ]
