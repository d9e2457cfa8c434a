# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The barrier under real concurrency: several connections, released together.

Each round inserts a fresh graph, then one thread per connection finishes its
job at the same instant (a :class:`threading.Barrier` lines them up). Two
independent observations check that a counter moves exactly once per release:

* each transaction reads, after its transition and before its commit, the
  counter it wrote: it still holds the row's lock, so the value is its own;
* a row-level trigger installed for this module logs every write of a
  ``queue_job`` row with the transaction id (the log also shows any
  intermediate negative counter, with no CHECK constraint on the table).

The completions run either as the form buttons do (``mark_done`` releasing in
its own transaction) or as the jobrunner does (the job's move to done in
REPEATABLE READ, as in Odoo, then ``release_dependents`` in READ COMMITTED).
The last tests race Requeue and Set Done on graphs that share dependents:
no deadlock, whatever the interleaving.
"""

import threading
from collections import Counter, namedtuple

import psycopg2
import psycopg2.errors
import pytest
from jobs import insert_graph, job_row, set_state, states, wait_until_blocked

from queue_job.core import isolation, transitions

RAN = ("started",)
SET_DONE = ("wait_dependencies", "pending", "enqueued", "failed", "cancelled")
ENDED = ("done", "failed", "cancelled")
WAIT, PENDING, DONE, FAILED = "wait_dependencies", "pending", "done", "failed"

Outcome = namedtuple("Outcome", "txid moved seen")


# --------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------

TRANSITION_LOG = """
CREATE TABLE test_transition_log (
    seq bigserial,
    txid bigint NOT NULL,
    job_id integer NOT NULL,
    old_state varchar,
    new_state varchar,
    old_count integer,
    new_count integer
);
CREATE FUNCTION test_log_transition() RETURNS trigger AS $$
BEGIN
    INSERT INTO test_transition_log
        (txid, job_id, old_state, new_state, old_count, new_count)
    VALUES (
        txid_current(), NEW.id, OLD.state, NEW.state,
        OLD.pending_dependency_count, NEW.pending_dependency_count);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER test_log_transition AFTER UPDATE ON queue_job
    FOR EACH ROW EXECUTE FUNCTION test_log_transition();
"""


@pytest.fixture(scope="module")
def transition_log(database):
    """Log every update of a queue_job row, for this module only."""
    admin = psycopg2.connect(database)
    with admin, admin.cursor() as cr:
        cr.execute(TRANSITION_LOG)
    yield
    with admin, admin.cursor() as cr:
        cr.execute("DROP TRIGGER test_log_transition ON queue_job")
        cr.execute("DROP FUNCTION test_log_transition()")
        cr.execute("DROP TABLE test_transition_log")
    admin.close()


@pytest.fixture
def main(conn, transition_log):
    with conn, conn.cursor() as cr:
        cr.execute("TRUNCATE test_transition_log")
    return conn


@pytest.fixture
def pool(connect):
    """``pool(n)``: n connections, one per worker thread; ``isolation`` as
    Odoo's cursors (REPEATABLE READ) for the runner's path."""

    def _pool(size, isolation=None):
        conns = [connect() for _ in range(size)]
        for worker in conns:
            with worker, worker.cursor() as cr:
                # a lost wake-up must fail the test, not hang it
                cr.execute("SET statement_timeout = '20s'")
            if isolation:
                worker.set_session(isolation_level=isolation)
        return conns

    return _pool


class Started:
    """``task(conn)`` running in a thread of its own, started at once."""

    def __init__(self, conn, task):
        self.conn, self.value, self.error = conn, None, None
        self.thread = threading.Thread(target=self._run, args=(task,))
        self.thread.start()

    def _run(self, task):
        try:
            self.value = task(self.conn)
        except BaseException as error:  # noqa: BLE001 - re-raised by join_all()
            self.conn.rollback()
            self.error = error

    def join(self, timeout=30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "a worker hangs"
        return self


def join_all(started):
    """Wait for all ``started`` tasks; return their values, or raise the first
    error (a deadlock with a message that says so)."""
    done = [item.join() for item in started]
    errors = [item.error for item in done if item.error is not None]
    deadlocks = [e for e in errors if isinstance(e, psycopg2.errors.DeadlockDetected)]
    assert not deadlocks, f"deadlock: {deadlocks[0]}"
    if errors:
        raise errors[0]
    return [item.value for item in done]


def run_aligned(conns, tasks, timeout=30):
    """Run ``tasks[i](conns[i])`` in a thread each, all released at once by a
    barrier; return their results in order."""
    start = threading.Barrier(len(tasks))

    def aligned(task):
        def run(conn):
            start.wait(timeout)
            return task(conn)

        return run

    return join_all([Started(conn, aligned(task)) for conn, task in zip(conns, tasks)])


def finish(job_id, watch_id, fail=False, runner=False, redelivered=False):
    """A task: one worker's transaction ending ``job_id`` (done, or failed).

    ``runner``: the jobrunner's path instead of one transaction: the job's
    own move to done (``release=False``, in the connection's isolation) is
    committed, then its dependents are released in a READ COMMITTED
    transaction, which is always run (a redelivery replays it too).
    ``redelivered``: the same job may be finished by another worker at the
    same time; in REPEATABLE READ the one that comes second fails to
    serialize on the job's row, and the runner then records a retry, which
    does nothing to a job that is no longer started: it moved nothing.

    Before committing it reads ``watch_id``'s (state, counter): it holds that
    row's lock when it released it, so what it reads is what it wrote. The
    outcome's txid is the one of the transaction that released.
    """

    def task(conn):
        with conn.cursor() as cr:
            if fail:
                moved = transitions.mark_failed(
                    cr, [job_id], RAN, exc_name="ValueError", exc_message="boom"
                )
            elif runner:
                try:
                    moved = transitions.mark_done(cr, [job_id], RAN, release=False)
                    conn.commit()
                except psycopg2.errors.SerializationFailure:
                    if not redelivered:
                        raise
                    conn.rollback()
                    moved = []
                isolation.read_committed(cr)
                transitions.release_dependents(cr, [job_id])
            else:
                moved = transitions.mark_done(cr, [job_id], RAN)
            cr.execute("SELECT txid_current()")
            txid = cr.fetchone()[0]
            cr.execute(
                "SELECT state, pending_dependency_count FROM queue_job WHERE id = %s",
                (watch_id,),
            )
            seen = cr.fetchone()
        conn.commit()
        return Outcome(txid, moved, seen)

    return task


def new_graph(main, edges, started, order=()):
    """Insert ``edges``, set the jobs named in ``started`` running; commit.

    Jobs are inserted in ``order`` first (ids follow the graph, dependencies
    first, as ``delay.py`` stores them).
    """
    with main.cursor() as cr:
        ids = insert_graph(cr, edges, names=order)
        set_state(cr, [ids[name] for name in started], "started")
    main.commit()
    return ids


def log_of(main, job_id):
    """[(txid, old_state, new_state, old_count, new_count)] of ``job_id``, in
    the order of the writes (they queue up on the row's lock)."""
    with main.cursor() as cr:
        cr.execute(
            """SELECT txid, old_state, new_state, old_count, new_count
                 FROM test_transition_log WHERE job_id = %s ORDER BY seq""",
            (job_id,),
        )
        rows = cr.fetchall()
    main.commit()
    return rows


def assert_released_once(main, job_id, size, outcomes):
    """``job_id`` waited on ``size`` members finished by ``outcomes``: it counted
    down once per member, each time in one of these transactions, and exactly
    one of them released it."""
    assert sum(1 for o in outcomes if o.moved) == size, "each member moves once"
    # the trigger's view: size single-step decrements, never below 0
    log = log_of(main, job_id)
    assert len(log) == size, log
    assert all(new == old - 1 and new >= 0 for _t, _o, _n, old, new in log), log
    counted = [txid for txid, *_ in log]
    assert len(set(counted)) == size, "one decrement per transaction"
    by_txid = {o.txid: o for o in outcomes}
    assert set(counted) <= set(by_txid), "a decrement outside the releasing transactions"
    # what those transactions read back: every value from size - 1 down to 0
    seen = [by_txid[txid].seen for txid in counted]
    assert sorted(count for _state, count in seen) == list(range(size))
    released_by = [txid for txid in counted if by_txid[txid].seen == (PENDING, 0)]
    assert len(released_by) == 1
    assert all(by_txid[t].seen[0] == WAIT for t in counted if t not in released_by)
    releases = [txid for txid, old, new, _c, _n in log if (old, new) == (WAIT, PENDING)]
    assert releases == released_by


def assert_counters_quiet(main, ids, expected):
    """End states and counters, plus the global "no counter below 0" check."""
    with main.cursor() as cr:
        assert states(cr, ids) == expected
        cr.execute("SELECT count(*) FROM test_transition_log WHERE new_count < 0")
        assert cr.fetchone()[0] == 0, "a counter went below 0"
    main.commit()


def assert_failed_by(main, ids, names, cause):
    """``names`` were failed by the cascade from ``cause``, and never released."""
    with main.cursor() as cr:
        cr.execute("SELECT uuid FROM queue_job WHERE id = %s", (ids[cause],))
        cause_uuid = cr.fetchone()[0]
        cr.execute(
            "SELECT name, state, exc_name, exc_message FROM queue_job WHERE id = ANY(%s)",
            ([ids[name] for name in names],),
        )
        for name, state, exc_name, exc_message in cr.fetchall():
            assert (name, state, exc_name) == (name, FAILED, "DependencyFailed")
            assert cause_uuid in exc_message, (name, exc_message)
        cr.execute(
            "SELECT count(*) FROM test_transition_log "
            "WHERE job_id = ANY(%s) AND new_state = 'pending'",
            ([ids[name] for name in names],),
        )
        assert cr.fetchone()[0] == 0, "a dependent of the failed member was released"
        cr.execute("TRUNCATE test_transition_log")
    main.commit()


def group_edges(size, callback="cb"):
    """Edges of a group of ``size`` members and its callback, and the members."""
    members = [f"m{i}" for i in range(size)]
    return [(callback, member) for member in members], members


# --------------------------------------------------------------------------
# One group, its members finished at the same instant
# --------------------------------------------------------------------------

ROUNDS = 200

#: mark_done releasing in its own transaction (the form buttons, Run Now), or
#: the jobrunner's path: done in REPEATABLE READ, then release_dependents
PATHS = pytest.mark.parametrize("runner", [False, True], ids=["inline", "runner"])


def workers_for(pool, size, runner):
    return pool(size, isolation="REPEATABLE READ" if runner else None)


@PATHS
def test_concurrent_members_release_callback_exactly_once(main, pool, runner):
    size = 8
    workers = workers_for(pool, size, runner)
    edges, members = group_edges(size)
    for _round in range(ROUNDS if not runner else ROUNDS // 2):
        ids = new_graph(main, edges, members, order=[*members, "cb"])
        tasks = [finish(ids[m], ids["cb"], runner=runner) for m in members]
        outcomes = run_aligned(workers, tasks)
        assert [o.moved for o in outcomes] == [[ids[m]] for m in members]
        assert_released_once(main, ids["cb"], size, outcomes)
        assert_counters_quiet(
            main, ids, {**{m: (DONE, 0) for m in members}, "cb": (PENDING, 0)}
        )


@PATHS
def test_duplicate_deliveries_count_once(main, pool, runner):
    """Every member is finished twice, by two connections, at the same instant."""
    size = 8
    workers = workers_for(pool, 2 * size, runner)
    edges, members = group_edges(size)
    for _round in range(ROUNDS // 2 if not runner else ROUNDS // 4):
        ids = new_graph(main, edges, members, order=[*members, "cb"])
        tasks = [finish(ids[m], ids["cb"], runner=runner, redelivered=True) for m in members * 2]
        outcomes = run_aligned(workers, tasks)
        for index, member in enumerate(members):
            pair = [outcomes[index].moved, outcomes[index + size].moved]
            assert sorted(pair) == [[], [ids[member]]], member
        assert_released_once(main, ids["cb"], size, outcomes)
        assert_counters_quiet(
            main, ids, {**{m: (DONE, 0) for m in members}, "cb": (PENDING, 0)}
        )


# --------------------------------------------------------------------------
# chain(group(a, b, c, d), group(e, f, g, h)): K4,4 between the levels
# --------------------------------------------------------------------------

FIRST = ["a", "b", "c", "d"]
SECOND = ["e", "f", "g", "h"]


def k44_edges(with_callback=False):
    edges = [(second, first) for second in SECOND for first in FIRST]
    if with_callback:
        edges += [("cb", second) for second in SECOND]
    return edges


@PATHS
def test_k44_concurrent_first_level_never_deadlocks(main, pool, runner):
    workers = workers_for(pool, len(FIRST), runner)
    edges = k44_edges()
    for _round in range(150 if not runner else 100):
        ids = new_graph(main, edges, FIRST, order=[*FIRST, *SECOND])
        tasks = [finish(ids[f], ids["e"], runner=runner) for f in FIRST]
        outcomes = run_aligned(workers, tasks)
        assert [o.moved for o in outcomes] == [[ids[f]] for f in FIRST]
        for second in SECOND:
            log = log_of(main, ids[second])
            assert len(log) == len(FIRST)
            assert sum((old, new) == (WAIT, PENDING) for _t, old, new, _o, _n in log) == 1
        assert_released_once(main, ids["e"], len(FIRST), outcomes)
        assert_counters_quiet(
            main, ids, {**{f: (DONE, 0) for f in FIRST}, **{s: (PENDING, 0) for s in SECOND}}
        )


def test_k44_one_member_fails_while_the_others_finish(main, pool):
    """One first-level member fails while the three others finish: the second
    level and the callback fail (by that member), whatever the order the four
    transactions take; nothing is ever released."""
    workers = pool(len(FIRST))
    edges = k44_edges(with_callback=True)
    for round_ in range(100):
        # vary which position fails, so that the lock order is exercised both ways
        failing = FIRST[round_ % len(FIRST)]
        ids = new_graph(main, edges, FIRST, order=[*FIRST, *SECOND])
        tasks = [finish(ids[f], ids["e"], fail=(f == failing)) for f in FIRST]
        outcomes = run_aligned(workers, tasks)
        assert [o.moved for o in outcomes] == [[ids[f]] for f in FIRST]
        expected = {f: (DONE, 0) for f in FIRST}
        expected[failing] = (FAILED, 0)
        # the failed member's edges stay unreleased: counters say 1
        expected.update({s: (FAILED, 1) for s in SECOND})
        expected["cb"] = (FAILED, len(SECOND))
        assert_counters_quiet(main, ids, expected)
        assert_failed_by(main, ids, [*SECOND, "cb"], cause=failing)


def test_group_failure_racing_completions_never_releases_callback(main, pool):
    """group of 8 with one member failing at the same instant as the 7 others
    finish: the callback ends failed by that member, never pending."""
    size = 8
    workers = pool(size)
    edges, members = group_edges(size)
    tally = Counter()
    for round_ in range(60):
        failing = members[round_ % size]
        ids = new_graph(main, edges, members, order=[*members, "cb"])
        tasks = [finish(ids[m], ids["cb"], fail=(m == failing)) for m in members]
        outcomes = run_aligned(workers, tasks)
        assert all(o.moved for o in outcomes)
        # the callback ends failed; its counter is the one unreleased edge
        expected = {m: (DONE, 0) for m in members}
        expected[failing] = (FAILED, 0)
        expected["cb"] = (FAILED, 1)
        assert_counters_quiet(main, ids, expected)
        # where the cascade landed among the decrements (both orders must happen)
        log = log_of(main, ids["cb"])
        kinds = ["fail" if (old, new) == (WAIT, FAILED) else "count" for _t, old, new, *_ in log]
        assert kinds.count("fail") == 1 and kinds.count("count") == size - 1, log
        tally["before"] += kinds.index("fail")
        tally["after"] += size - 1 - kinds.index("fail")
        assert_failed_by(main, ids, ["cb"], cause=failing)
    # the race was real: completions landed on both sides of the failure
    assert tally["after"] > 0 and tally["before"] > 0, tally


# --------------------------------------------------------------------------
# Requeue racing another transition on the same graph
# --------------------------------------------------------------------------


def transition_task(transition, from_states):
    """A task factory: ``factory(job_id)(conn)`` applies ``transition`` to the
    job in a transaction of its own, as a button does, and returns what moved."""

    def factory(job_id):
        def task(conn):
            with conn.cursor() as cr:
                moved = transition(cr, [job_id], from_states)
            conn.commit()
            return moved

        return task

    return factory


requeue_task = transition_task(transitions.requeue, ENDED)
set_done_task = transition_task(transitions.mark_done, SET_DONE)


def fail_jobs(main, ids, names):
    """Run then fail ``names``, one after the other (each cascades); commit."""
    with main.cursor() as cr:
        for name in names:
            set_state(cr, [ids[name]], "started")
            assert transitions.mark_failed(cr, [ids[name]], RAN, exc_name="E") == [ids[name]]
    main.commit()


def test_concurrent_requeues_of_failed_members_do_not_deadlock(main, pool):
    """Both members of a group failed (the callback was failed by m0); two
    Requeue clicks, one per member, land at the same instant.

    Whatever the order, the end is the same: both members pending, the
    callback waiting on both.
    """
    workers = pool(2)
    edges, members = group_edges(2)
    for _round in range(20):
        ids = new_graph(main, edges, [], order=[*members, "cb"])
        fail_jobs(main, ids, members)
        outcomes = run_aligned(workers, [requeue_task(ids[m]) for m in members])
        assert outcomes == [[ids["m0"]], [ids["m1"]]]
        assert_counters_quiet(main, ids, {"m0": (PENDING, 0), "m1": (PENDING, 0), "cb": (WAIT, 2)})
        with main.cursor() as cr:
            assert job_row(cr, ids["cb"])["exc_name"] is None
        main.commit()


def test_requeue_racing_set_done_of_the_other_failed_dependency(main, pool, connect):
    """cb waits on c1 (failed by b's cascade) and on y (failed too, lower id).

    Set Done on y and Requeue of b run at the same time. The interleaving is
    forced: a third connection holds y's row until both transactions wait on
    it, Set Done first. Set Done then needs cb, which Requeue must not be
    holding while it waits for y.
    """
    workers = pool(2)
    blocker, observer = connect(), connect()
    observer.autocommit = True
    ids = new_graph(main, [("c1", "b"), ("cb", "c1"), ("cb", "y")], [], order="y b c1 cb".split())
    assert ids["y"] < ids["cb"]
    fail_jobs(main, ids, ["b", "y"])
    with blocker.cursor() as cr:
        cr.execute("SELECT id FROM queue_job WHERE id = %s FOR UPDATE", (ids["y"],))
    try:
        set_done = Started(workers[0], set_done_task(ids["y"]))
        wait_until_blocked(observer, workers[0].get_backend_pid())
        requeue = Started(workers[1], requeue_task(ids["b"]))
        # (a Requeue that does not need y may as well finish first)
        wait_until_blocked(
            observer, workers[1].get_backend_pid(), unless=lambda: not requeue.thread.is_alive()
        )
    finally:
        blocker.rollback()
    assert join_all([set_done, requeue]) == [[ids["y"]], [ids["b"]]]
    # Set Done of y came first: cb waits on c1 only, which waits on b
    assert_counters_quiet(
        main,
        ids,
        {"y": (DONE, 0), "b": (PENDING, 0), "c1": (WAIT, 1), "cb": (WAIT, 1)},
    )


@pytest.mark.parametrize("first", ["requeue", "set_done"])
def test_requeue_racing_on_a_dependent_shared_with_another_failed_job(main, pool, first):
    """m0 and y failed; cb waits on both, z on y only (ids: y < m0 < z < cb).

    Requeue of y races Requeue (or Set Done) of m0. The transition on m0
    re-fails cb by y, which needs cb's and z's locks (everything downstream
    of y): it must not take them after it holds cb while the Requeue of y,
    which holds z, waits for cb. Whatever the order, both members end
    runnable and z and cb wait again.
    """
    workers = pool(2)
    edges = [("z", "y"), ("cb", "m0"), ("cb", "y")]
    other = requeue_task if first == "requeue" else set_done_task
    for _round in range(30):
        ids = new_graph(main, edges, [], order=["y", "m0", "z", "cb"])
        fail_jobs(main, ids, ["m0", "y"])
        outcomes = run_aligned(workers, [other(ids["m0"]), requeue_task(ids["y"])])
        assert outcomes == [[ids["m0"]], [ids["y"]]]
        m0_state = (PENDING, 0) if first == "requeue" else (DONE, 0)
        cb_count = 2 if first == "requeue" else 1
        assert_counters_quiet(
            main,
            ids,
            {"y": (PENDING, 0), "m0": m0_state, "z": (WAIT, 1), "cb": (WAIT, cb_count)},
        )
