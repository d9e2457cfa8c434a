# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Graph state transitions on a real database, one connection at a time.

Every test asserts end states, counters, released edges and returned ids; the
invariant "counter == number of unreleased incoming edges" is checked after
each step through :func:`check_counters`.
"""

import select
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
from jobs import (
    counter_mismatches,
    insert_graph,
    insert_job,
    is_released,
    job_row,
    set_state,
    states,
    wait_until_blocked,
)

from queue_job.core import transitions
from queue_job.core.schema import ETA_PAYLOAD, NOTIFY_CHANNEL, STOP_PAYLOAD

#: What the runner passes after a job ran.
RAN = ("started",)
#: What the Set Done / Set Failed / Cancel buttons accept (anything not ended).
BUTTON = ("wait_dependencies", "pending", "enqueued", "started", "failed")
#: What Requeue accepts.
ENDED = ("done", "failed", "cancelled")

WAIT, PENDING, DONE = "wait_dependencies", "pending", "done"
FAILED, CANCELLED = "failed", "cancelled"


def check_counters(cr):
    assert counter_mismatches(cr) == [], (
        "pending_dependency_count differs from the unreleased incoming edges "
        "(id, name, state, counter, unreleased)"
    )


def make_group(cr, size, callback="cb", member_state="started"):
    """``size`` members m0.. (in ``member_state``) and ``callback`` waiting on all."""
    members = [f"m{i}" for i in range(size)]
    ids = insert_graph(cr, [(callback, member) for member in members])
    set_state(cr, [ids[m] for m in members], member_state)
    return ids, members


def uuid_of(cr, job_id):
    return job_row(cr, job_id)["uuid"]


# --------------------------------------------------------------------------
# Release: the barrier counts down once per member
# --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 3, 8])
def test_group_counts_down_and_releases_callback_after_last(conn, size):
    with conn.cursor() as cr:
        ids, members = make_group(cr, size)
        assert states(cr, {"cb": ids["cb"]}) == {"cb": (WAIT, size)}
        for done_so_far, member in enumerate(members, start=1):
            assert transitions.mark_done(cr, [ids[member]], RAN) == [ids[member]]
            remaining = size - done_so_far
            expected = (PENDING, 0) if remaining == 0 else (WAIT, remaining)
            assert states(cr, ids)["cb"] == expected
            assert states(cr, ids)[member] == (DONE, 0)
            assert is_released(cr, ids["cb"], ids[member])
            check_counters(cr)
        assert all(states(cr, ids)[m][0] == DONE for m in members)


def test_group_members_done_in_one_call(conn):
    with conn.cursor() as cr:
        ids, members = make_group(cr, 4)
        moved = transitions.mark_done(cr, [ids[m] for m in members[:3]], RAN)
        assert sorted(moved) == sorted(ids[m] for m in members[:3])
        assert states(cr, ids)["cb"] == (WAIT, 1)
        # ids not in from_states (m3 enqueued, m0 done already) move nothing
        set_state(cr, [ids["m3"]], "enqueued")
        assert transitions.mark_done(cr, [ids["m3"], ids["m0"]], RAN) == []
        assert states(cr, ids)["cb"] == (WAIT, 1)
        assert transitions.mark_done(cr, [ids["m3"]], ("enqueued",)) == [ids["m3"]]
        assert states(cr, ids)["cb"] == (PENDING, 0)
        check_counters(cr)


def test_mark_done_empty_ids_is_a_noop(conn):
    with conn.cursor() as cr:
        assert transitions.mark_done(cr, [], RAN) == []
        assert transitions.mark_failed(cr, [], RAN) == []
        assert transitions.mark_cancelled(cr, [], RAN) == []
        assert transitions.requeue(cr, [], ENDED) == []
        assert transitions.retry_later(cr, [], 10) == []


def test_mark_done_keeps_result_and_clears_exception(conn):
    with conn.cursor() as cr:
        job = insert_job(cr, state="failed", exc_name="ValueError", exc_message="x", exc_info="tb")
        assert transitions.mark_done(cr, [job], BUTTON, result="42") == [job]
        row = job_row(cr, job)
        assert (row["state"], row["result"]) == (DONE, "42")
        assert (row["exc_name"], row["exc_message"], row["exc_info"]) == (None, None, None)
        assert row["date_done"] is not None


# --------------------------------------------------------------------------
# Idempotency: a completion counts once
# --------------------------------------------------------------------------


def test_set_done_twice_counts_once(conn):
    with conn.cursor() as cr:
        ids, _members = make_group(cr, 3)
        assert transitions.mark_done(cr, [ids["m0"]], BUTTON) == [ids["m0"]]
        date_done = job_row(cr, ids["m0"])["date_done"]
        conn.commit()
        assert transitions.mark_done(cr, [ids["m0"]], BUTTON) == []
        assert states(cr, ids)["cb"] == (WAIT, 2)
        assert job_row(cr, ids["m0"])["date_done"] == date_done
        check_counters(cr)


def test_done_requeue_done_counts_once(conn):
    with conn.cursor() as cr:
        ids, _members = make_group(cr, 3)
        assert transitions.mark_done(cr, [ids["m0"]], RAN) == [ids["m0"]]
        assert states(cr, ids)["cb"] == (WAIT, 2)
        # Requeue of a done member: it runs again, its edge stays released
        assert transitions.requeue(cr, [ids["m0"]], ENDED) == [ids["m0"]]
        assert states(cr, ids)["m0"] == (PENDING, 0)
        assert states(cr, ids)["cb"] == (WAIT, 2)
        set_state(cr, [ids["m0"]], "started")
        assert transitions.mark_done(cr, [ids["m0"]], RAN) == [ids["m0"]]
        assert states(cr, ids)["cb"] == (WAIT, 2)
        check_counters(cr)
        # the callback still needs exactly the two other members
        transitions.mark_done(cr, [ids["m1"]], RAN)
        assert states(cr, ids)["cb"] == (WAIT, 1)
        transitions.mark_done(cr, [ids["m2"]], RAN)
        assert states(cr, ids)["cb"] == (PENDING, 0)
        check_counters(cr)


def test_replayed_completion_from_second_connection(conn, connect):
    with conn.cursor() as cr:
        ids, _members = make_group(cr, 2)
    conn.commit()
    with conn.cursor() as cr:
        assert transitions.mark_done(cr, [ids["m0"]], RAN) == [ids["m0"]]
    conn.commit()
    other = connect()
    with other.cursor() as cr:
        assert transitions.mark_done(cr, [ids["m0"]], RAN) == []
    other.commit()
    with conn.cursor() as cr:
        assert states(cr, ids)["cb"] == (WAIT, 1)
        check_counters(cr)


def test_replay_racing_an_uncommitted_completion_counts_once(conn, connect):
    """The replay waits for the first completion's locks, then finds nothing to do."""
    with conn.cursor() as cr:
        ids, _members = make_group(cr, 2)
    conn.commit()
    first, second, observer = connect(), connect(), connect()
    observer.autocommit = True
    with first.cursor() as cr:
        assert transitions.mark_done(cr, [ids["m0"]], RAN) == [ids["m0"]]
    outcome = {}

    def replay():
        try:
            with second.cursor() as cr:
                outcome["moved"] = transitions.mark_done(cr, [ids["m0"]], RAN)
            second.commit()
        except Exception as error:  # pragma: no cover - reported below
            outcome["error"] = error

    thread = threading.Thread(target=replay)
    thread.start()
    wait_until_blocked(observer, second.get_backend_pid())
    first.commit()
    thread.join(10)
    assert not thread.is_alive()
    assert outcome == {"moved": []}
    with conn.cursor() as cr:
        assert states(cr, ids)["cb"] == (WAIT, 1)
        check_counters(cr)


def test_mark_done_only_moves_jobs_in_from_states(conn):
    with conn.cursor() as cr:
        ids, _members = make_group(cr, 2)
        set_state(cr, [ids["m0"]], "failed", exc_name="ValueError")
        assert transitions.mark_done(cr, [ids["m0"]], RAN) == []
        assert job_row(cr, ids["m0"])["state"] == FAILED
        assert job_row(cr, ids["m0"])["exc_name"] == "ValueError"
        assert not is_released(cr, ids["cb"], ids["m0"])
        # a waiting callback is not done by the runner's from_states either
        assert transitions.mark_done(cr, [ids["cb"]], RAN) == []
        assert states(cr, ids) == {"m0": (FAILED, 0), "m1": ("started", 0), "cb": (WAIT, 2)}
        check_counters(cr)


def test_set_done_on_waiting_job_then_its_dependencies_finish(conn):
    with conn.cursor() as cr:
        ids, _members = make_group(cr, 2)
        set_state(cr, [ids["m0"], ids["m1"]], "started")
        assert transitions.mark_done(cr, [ids["cb"]], BUTTON) == [ids["cb"]]
        transitions.mark_done(cr, [ids["m0"], ids["m1"]], RAN)
        assert states(cr, ids)["cb"] == (DONE, 0)
        check_counters(cr)


# --------------------------------------------------------------------------
# A member and its dependent done in the same call
# --------------------------------------------------------------------------


def make_member_and_dependent(cr):
    """m0, m1 -> cb -> tail."""
    ids = insert_graph(cr, [("cb", "m0"), ("cb", "m1"), ("tail", "cb")])
    set_state(cr, [ids["m0"], ids["m1"]], "started")
    return ids


def test_member_and_dependent_done_in_one_call_states(conn):
    with conn.cursor() as cr:
        ids = make_member_and_dependent(cr)
        moved = transitions.mark_done(cr, [ids["m0"], ids["cb"]], BUTTON)
        assert sorted(moved) == sorted([ids["m0"], ids["cb"]])
        got = states(cr, ids)
        assert [got[name][0] for name in ("m0", "m1", "cb", "tail")] == [
            DONE, "started", DONE, PENDING
        ]
        assert got["tail"] == (PENDING, 0)
        assert is_released(cr, ids["cb"], ids["m0"])
        assert is_released(cr, ids["tail"], ids["cb"])
        assert not is_released(cr, ids["cb"], ids["m1"])
        # the other member finishing later does not move the done callback
        assert transitions.mark_done(cr, [ids["m1"]], RAN) == [ids["m1"]]
        assert [states(cr, ids)[n][0] for n in ("cb", "tail")] == [DONE, PENDING]


def test_member_and_dependent_done_in_one_call_keeps_counters(conn):
    """A job moved to done in the same statement as its dependency keeps a
    counter that its released edge no longer accounts for.

    ``mark_done`` releases the edge m0 -> cb but skips the decrement of cb
    because cb is in ``done`` (``j.id NOT IN (SELECT id FROM done)``): cb is
    left with counter 2 for 1 unreleased edge, and with 1 for 0 once m1 is done.
    """
    with conn.cursor() as cr:
        ids = make_member_and_dependent(cr)
        transitions.mark_done(cr, [ids["m0"], ids["cb"]], BUTTON)
        assert states(cr, ids)["cb"] == (DONE, 1)
        check_counters(cr)
        transitions.mark_done(cr, [ids["m1"]], RAN)
        assert states(cr, ids)["cb"] == (DONE, 0)
        check_counters(cr)


def test_chain_done_in_one_call(conn):
    """a -> b -> c -> d, all four done at once: every edge released, counters 0."""
    with conn.cursor() as cr:
        ids = insert_graph(cr, [("b", "a"), ("c", "b"), ("d", "c")])
        moved = transitions.mark_done(cr, list(ids.values()), BUTTON)
        assert sorted(moved) == sorted(ids.values())
        assert states(cr, ids) == {name: (DONE, 0) for name in ids}
        check_counters(cr)


# --------------------------------------------------------------------------
# The runner's path: done in the job's transaction, released after its commit
# --------------------------------------------------------------------------


def test_release_after_commit_counts_once(conn):
    with conn.cursor() as cr:
        ids, _members = make_group(cr, 2)
        assert transitions.mark_done(cr, [ids["m0"]], RAN, release=False) == [ids["m0"]]
        # done, but nothing released yet: the counter still counts the edge
        assert states(cr, ids) == {"m0": (DONE, 0), "m1": ("started", 0), "cb": (WAIT, 2)}
        assert not is_released(cr, ids["cb"], ids["m0"])
        check_counters(cr)
    conn.commit()
    with conn.cursor() as cr:
        transitions.release_dependents(cr, [ids["m0"]])
        assert states(cr, ids)["cb"] == (WAIT, 1)
        assert is_released(cr, ids["cb"], ids["m0"])
        # again, and for a job that is not done: nothing moves
        transitions.release_dependents(cr, [ids["m0"], ids["m1"]])
        assert states(cr, ids)["cb"] == (WAIT, 1)
        assert not is_released(cr, ids["cb"], ids["m1"])
        check_counters(cr)


def test_release_sweep_releases_what_a_crash_left(conn):
    """Every done job's unreleased edges are released by release_dependents()."""
    with conn.cursor() as cr:
        ids, members = make_group(cr, 3)
        transitions.mark_done(cr, [ids[m] for m in members[:2]], RAN, release=False)
        transitions.release_dependents(cr)
        assert states(cr, ids)["cb"] == (WAIT, 1)
        transitions.mark_done(cr, [ids["m2"]], RAN, release=False)
        transitions.release_dependents(cr)
        transitions.release_dependents(cr)
        assert states(cr, ids)["cb"] == (PENDING, 0)
        check_counters(cr)


def test_set_done_on_failed_member_lets_the_callback_run(conn):
    with conn.cursor() as cr:
        ids, _members = make_group(cr, 2)
        transitions.mark_failed(cr, [ids["m0"]], RAN, exc_name="E")
        assert job_row(cr, ids["cb"])["state"] == FAILED
        assert transitions.mark_done(cr, [ids["m0"]], (FAILED,)) == [ids["m0"]]
        assert states(cr, ids)["cb"] == (WAIT, 1)
        assert job_row(cr, ids["cb"])["exc_name"] is None
        assert transitions.mark_done(cr, [ids["m1"]], RAN) == [ids["m1"]]
        assert states(cr, ids)["cb"] == (PENDING, 0)
        check_counters(cr)


def test_set_done_on_failed_member_while_another_member_failed(conn):
    with conn.cursor() as cr:
        ids, _members = make_group(cr, 2)
        transitions.mark_failed(cr, [ids["m0"]], RAN, exc_name="E")
        transitions.mark_failed(cr, [ids["m1"]], RAN, exc_name="E")
        assert transitions.mark_done(cr, [ids["m0"]], (FAILED,)) == [ids["m0"]]
        # cb still waits on the failed m1: failed again, by m1
        row = job_row(cr, ids["cb"])
        assert (row["state"], row["exc_name"]) == (FAILED, "DependencyFailed")
        assert uuid_of(cr, ids["m1"]) in row["exc_message"]
        assert states(cr, ids)["cb"] == (FAILED, 1)
        check_counters(cr)


# --------------------------------------------------------------------------
# Failure and cancellation cascade
# --------------------------------------------------------------------------

CASCADE_EDGES = [
    ("b", "a"),  # a -> b: b is the middle member that will fail
    ("s", "a"),  # s: another branch below a
    ("c1", "b"),  # group(c1, c2, c3) below b
    ("c2", "b"),
    ("c3", "b"),
    ("cb", "c1"),  # the group's callback
    ("cb", "c2"),
    ("cb", "c3"),
    ("cb", "x"),  # ... which also waits on an unrelated job x
    ("tail", "cb"),  # and one more level
    ("q", "p"),  # an unrelated graph
]
DOWNSTREAM = ("c1", "c2", "c3", "cb", "tail")


def make_cascade_graph(cr):
    """Graph above, with a done (so b and s pending) and b running."""
    ids = insert_graph(cr, CASCADE_EDGES)
    set_state(cr, [ids["a"]], "started")
    assert transitions.mark_done(cr, [ids["a"]], RAN) == [ids["a"]]
    set_state(cr, [ids["b"]], "started")
    return ids


def assert_untouched_outside(cr, ids):
    got = states(cr, ids)
    assert got["a"] == (DONE, 0)
    assert got["s"] == (PENDING, 0)
    assert got["x"] == (PENDING, 0)
    assert got["p"] == (PENDING, 0)
    assert got["q"] == (WAIT, 1)
    for name in ("a", "s", "x", "p", "q"):
        assert job_row(cr, ids[name])["exc_name"] is None


def assert_cascaded(cr, ids, names, state, marker, cause):
    cause_row = job_row(cr, ids[cause])
    for name in names:
        row = job_row(cr, ids[name])
        assert (name, row["state"], row["exc_name"]) == (name, state, marker)
        assert cause_row["uuid"] in row["exc_message"], (name, row["exc_message"])
        assert cause in row["exc_message"]
        assert row["date_done"] is not None


def test_failure_cascades_to_waiting_dependents_transitively(conn):
    with conn.cursor() as cr:
        ids = make_cascade_graph(cr)
        moved = transitions.mark_failed(
            cr, [ids["b"]], RAN, exc_name="ValueError", exc_message="boom", exc_info="tb"
        )
        assert moved == [ids["b"]]
        b = job_row(cr, ids["b"])
        assert (b["state"], b["exc_name"], b["exc_message"], b["exc_info"]) == (
            FAILED, "ValueError", "boom", "tb"
        )
        assert_cascaded(cr, ids, DOWNSTREAM, FAILED, "DependencyFailed", cause="b")
        assert "failed" in job_row(cr, ids["cb"])["exc_message"]
        assert_untouched_outside(cr, ids)
        # counters are left alone: still the unreleased edges
        check_counters(cr)


def test_cancel_cascades_as_cancelled(conn):
    with conn.cursor() as cr:
        ids = make_cascade_graph(cr)
        moved = transitions.mark_cancelled(cr, [ids["b"]], BUTTON, message="not needed")
        assert moved == [ids["b"]]
        b = job_row(cr, ids["b"])
        assert (b["state"], b["exc_message"]) == (CANCELLED, "not needed")
        assert_cascaded(cr, ids, DOWNSTREAM, CANCELLED, "DependencyCancelled", cause="b")
        assert "cancelled" in job_row(cr, ids["tail"])["exc_message"]
        assert_untouched_outside(cr, ids)
        check_counters(cr)


def test_failure_of_root_names_the_root_at_every_level(conn):
    with conn.cursor() as cr:
        ids = insert_graph(cr, CASCADE_EDGES)
        set_state(cr, [ids["a"]], "started")
        assert transitions.mark_failed(cr, [ids["a"]], RAN, exc_name="E") == [ids["a"]]
        assert_cascaded(cr, ids, ("b", "s", *DOWNSTREAM), FAILED, "DependencyFailed", "a")
        # x, p, q are other branches
        assert states(cr, ids)["x"] == (PENDING, 0)
        assert states(cr, ids)["q"] == (WAIT, 1)


def test_failure_not_in_from_states_cascades_nothing(conn):
    with conn.cursor() as cr:
        ids = make_cascade_graph(cr)
        set_state(cr, [ids["b"]], "pending")
        before = states(cr, ids)
        assert transitions.mark_failed(cr, [ids["b"]], RAN, exc_name="E") == []
        assert transitions.mark_cancelled(cr, [ids["b"]], ("started",)) == []
        assert states(cr, ids) == before
        for name in DOWNSTREAM:
            assert job_row(cr, ids[name])["exc_name"] is None


def test_cascade_leaves_dependents_that_are_not_waiting(conn):
    """A dependent that runs already (Run Now) has its own fate."""
    with conn.cursor() as cr:
        ids = make_cascade_graph(cr)
        set_state(cr, [ids["c2"]], "started")
        transitions.mark_failed(cr, [ids["b"]], RAN, exc_name="E")
        assert job_row(cr, ids["c2"])["state"] == "started"
        assert job_row(cr, ids["c2"])["exc_name"] is None
        assert_cascaded(cr, ids, ("c1", "c3", "cb", "tail"), FAILED, "DependencyFailed", "b")


def test_released_edge_is_not_touched_by_a_later_failure(conn):
    """m0 finished (its edge to cb released), was requeued and now fails for
    good: cb does not depend on that run any more and keeps waiting on m1."""
    with conn.cursor() as cr:
        ids, _members = make_group(cr, 2)
        transitions.mark_done(cr, [ids["m0"]], RAN)
        transitions.requeue(cr, [ids["m0"]], ENDED)
        set_state(cr, [ids["m0"]], "started")
        assert transitions.mark_failed(cr, [ids["m0"]], RAN, exc_name="E") == [ids["m0"]]
        assert states(cr, ids)["cb"] == (WAIT, 1)
        assert job_row(cr, ids["cb"])["exc_name"] is None
        assert transitions.mark_done(cr, [ids["m1"]], RAN) == [ids["m1"]]
        assert states(cr, ids)["cb"] == (PENDING, 0)
        check_counters(cr)


def test_failure_of_one_member_after_the_others_finished(conn):
    with conn.cursor() as cr:
        ids, members = make_group(cr, 4)
        transitions.mark_done(cr, [ids[m] for m in members[1:]], RAN)
        assert states(cr, ids)["cb"] == (WAIT, 1)
        transitions.mark_failed(cr, [ids["m0"]], RAN, exc_name="E")
        assert_cascaded(cr, ids, ("cb",), FAILED, "DependencyFailed", "m0")
        assert states(cr, ids)["cb"] == (FAILED, 1)
        check_counters(cr)


# --------------------------------------------------------------------------
# Requeue
# --------------------------------------------------------------------------


def finish_in_order(cr, ids, order):
    """Run then finish the jobs of ``order``; each must be pending when reached."""
    for name in order:
        assert states(cr, ids)[name] == (PENDING, 0), name
        set_state(cr, [ids[name]], "started")
        assert transitions.mark_done(cr, [ids[name]], RAN) == [ids[name]]
        check_counters(cr)


def test_requeue_of_failed_middle_member_restores_cascaded_dependents(conn):
    with conn.cursor() as cr:
        ids = make_cascade_graph(cr)
        transitions.mark_failed(cr, [ids["b"]], RAN, exc_name="E", exc_message="boom")
        set_state(cr, [ids["b"]], FAILED, retry=3)
        assert transitions.requeue(cr, [ids["b"]], ENDED) == [ids["b"]]
        got = states(cr, ids)
        assert got["b"] == (PENDING, 0)
        assert {name: got[name] for name in DOWNSTREAM} == {
            "c1": (WAIT, 1), "c2": (WAIT, 1), "c3": (WAIT, 1),
            "cb": (WAIT, 4), "tail": (WAIT, 1),
        }
        b = job_row(cr, ids["b"])
        assert (b["retry"], b["exc_name"], b["exc_message"], b["date_done"]) == (
            0, None, None, None
        )
        for name in DOWNSTREAM:
            row = job_row(cr, ids[name])
            assert (name, row["exc_name"], row["exc_message"], row["date_done"]) == (
                name, None, None, None
            )
        assert_untouched_outside(cr, ids)
        check_counters(cr)
        finish_in_order(cr, ids, ["b", "c1", "c2", "s", "x", "c3", "cb", "tail", "p", "q"])
        assert {state for state, _count in states(cr, ids).values()} == {DONE}


def test_requeue_of_cancelled_member_restores_cancelled_dependents(conn):
    with conn.cursor() as cr:
        ids = make_cascade_graph(cr)
        transitions.mark_cancelled(cr, [ids["b"]], BUTTON)
        assert transitions.requeue(cr, [ids["b"]], ENDED) == [ids["b"]]
        assert [states(cr, ids)[n][0] for n in ("b", *DOWNSTREAM)] == [PENDING] + [WAIT] * 5
        check_counters(cr)


def test_requeue_refails_dependents_still_waiting_on_another_failed_job(conn):
    with conn.cursor() as cr:
        ids = make_cascade_graph(cr)
        transitions.mark_failed(cr, [ids["b"]], RAN, exc_name="E")
        set_state(cr, [ids["x"]], "started")
        # x fails after cb was already failed by b: cb is not waiting, untouched
        assert transitions.mark_failed(cr, [ids["x"]], RAN, exc_name="E") == [ids["x"]]
        assert_cascaded(cr, ids, ("cb", "tail"), FAILED, "DependencyFailed", cause="b")
        assert transitions.requeue(cr, [ids["b"]], ENDED) == [ids["b"]]
        got = states(cr, ids)
        assert got["b"] == (PENDING, 0)
        assert [got[n] for n in ("c1", "c2", "c3")] == [(WAIT, 1)] * 3
        # cb still waits on the failed x: failed again, by x; tail with it
        assert_cascaded(cr, ids, ("cb", "tail"), FAILED, "DependencyFailed", cause="x")
        assert job_row(cr, ids["b"])["uuid"] not in job_row(cr, ids["cb"])["exc_message"]
        check_counters(cr)
        # requeue x too: the graph can finish
        assert transitions.requeue(cr, [ids["x"]], ENDED) == [ids["x"]]
        assert states(cr, ids)["cb"] == (WAIT, 4)
        finish_in_order(cr, ids, ["x", "b", "c1", "c2", "c3", "cb", "tail"])


def test_requeue_refails_with_cancelled_cause(conn):
    with conn.cursor() as cr:
        ids = make_cascade_graph(cr)
        transitions.mark_failed(cr, [ids["b"]], RAN, exc_name="E")
        transitions.mark_cancelled(cr, [ids["x"]], BUTTON)
        transitions.requeue(cr, [ids["b"]], ENDED)
        assert_cascaded(cr, ids, ("cb", "tail"), CANCELLED, "DependencyCancelled", cause="x")
        assert [states(cr, ids)[n] for n in ("c1", "c2", "c3")] == [(WAIT, 1)] * 3


def test_requeue_waits_when_a_dependency_is_not_done(conn):
    with conn.cursor() as cr:
        ids = insert_graph(cr, [("b", "a")])
        # Set Failed on a waiting job, then Requeue: a is not done, b waits
        assert transitions.mark_failed(cr, [ids["b"]], BUTTON, exc_name="E") == [ids["b"]]
        assert transitions.requeue(cr, [ids["b"]], ENDED) == [ids["b"]]
        assert states(cr, ids) == {"a": (PENDING, 0), "b": (WAIT, 1)}
        finish_in_order(cr, ids, ["a", "b"])


def test_requeue_is_pending_when_dependencies_are_done(conn):
    with conn.cursor() as cr:
        ids = insert_graph(cr, [("b", "a")])
        finish_in_order(cr, ids, ["a"])
        set_state(cr, [ids["b"]], "started")
        transitions.mark_failed(cr, [ids["b"]], RAN, exc_name="E")
        assert transitions.requeue(cr, [ids["b"]], ENDED) == [ids["b"]]
        assert states(cr, ids) == {"a": (DONE, 0), "b": (PENDING, 0)}


def test_requeue_only_moves_jobs_in_from_states(conn):
    with conn.cursor() as cr:
        ids = insert_graph(cr, [("b", "a")])
        set_state(cr, [ids["a"]], "started", retry=2)
        assert transitions.requeue(cr, [ids["a"], ids["b"]], ENDED) == []
        assert states(cr, ids) == {"a": ("started", 0), "b": (WAIT, 1)}
        assert job_row(cr, ids["a"])["retry"] == 2


# --------------------------------------------------------------------------
# start (Run Now)
# --------------------------------------------------------------------------

RUN_NOW = ("pending", "enqueued", "failed", "wait_dependencies")


def test_start_only_runs_jobs_that_wait_for_nothing(conn):
    with conn.cursor() as cr:
        ids = make_cascade_graph(cr)  # a done, b started, s and x pending
        transitions.mark_failed(cr, [ids["b"]], RAN, exc_name="E")
        set_state(cr, [ids["x"]], "failed", retry=2)
        candidates = [ids[n] for n in ("b", "c1", "cb", "s", "x", "q")]
        moved = transitions.start(cr, candidates, RUN_NOW)
        # c1 and cb (failed by the cascade) and q still wait on something
        assert sorted(moved) == sorted([ids["b"], ids["s"], ids["x"]])
        got = states(cr, ids)
        assert [got[n][0] for n in ("b", "s", "x")] == ["started"] * 3
        assert [got[n] for n in ("c1", "cb", "q")] == [(FAILED, 1), (FAILED, 4), (WAIT, 1)]
        assert job_row(cr, ids["x"])["retry"] == 3
        assert job_row(cr, ids["s"])["date_started"] is not None
        # already started: not started again (the try is not counted twice)
        assert transitions.start(cr, [ids["s"]], RUN_NOW) == []
        assert job_row(cr, ids["s"])["retry"] == 1


# --------------------------------------------------------------------------
# retry_later
# --------------------------------------------------------------------------


@pytest.fixture
def far_time_zone(conn):
    """A session time zone far from UTC, so that a naive now() would show."""
    with conn.cursor() as cr:
        cr.execute("SET TIME ZONE 'Pacific/Kiritimati'")  # UTC+14
    return conn


def eta_offset(cr, job_id):
    """Seconds from now (UTC) to the job's eta."""
    cr.execute(
        "SELECT EXTRACT(EPOCH FROM eta - (now() AT TIME ZONE 'UTC')) FROM queue_job WHERE id = %s",
        (job_id,),
    )
    value = cr.fetchone()[0]
    return None if value is None else float(value)


@pytest.mark.parametrize("running_state", ["started", "enqueued"])
def test_retry_later_puts_a_running_job_back_with_eta(far_time_zone, running_state):
    conn = far_time_zone
    with conn.cursor() as cr:
        job = insert_job(
            cr, state=running_state, date_started="2020-01-01", date_enqueued="2020-01-01"
        )
        moved = transitions.retry_later(
            cr, [job], 30, exc_name="RetryableJobError", exc_message="later"
        )
        assert moved == [job]
    conn.commit()
    with conn.cursor() as cr:
        row = job_row(cr, job)
        assert (row["state"], row["date_started"], row["date_enqueued"]) == (PENDING, None, None)
        assert (row["exc_name"], row["exc_message"]) == ("RetryableJobError", "later")
        assert 25 <= eta_offset(cr, job) <= 30.5


def test_retry_later_without_delay_has_no_eta(conn):
    with conn.cursor() as cr:
        job = insert_job(cr, state="started", eta="2000-01-01")
        assert transitions.retry_later(cr, [job], 0) == [job]
        assert job_row(cr, job)["eta"] is None
        assert job_row(cr, job)["state"] == PENDING


def test_retry_later_keeps_the_retry_count_given(conn):
    with conn.cursor() as cr:
        kept = insert_job(cr, state="started", retry=2)
        given = insert_job(cr, state="started", retry=2)
        transitions.retry_later(cr, [kept], 10)
        transitions.retry_later(cr, [given], 10, retry=1)  # a try given back
        assert (job_row(cr, kept)["retry"], job_row(cr, given)["retry"]) == (2, 1)


@pytest.mark.parametrize("state", ["pending", "wait_dependencies", "done", "failed", "cancelled"])
def test_retry_later_ignores_jobs_that_are_not_running(conn, state):
    with conn.cursor() as cr:
        job = insert_job(cr, state=state)
        assert transitions.retry_later(cr, [job], 30, exc_name="E") == []
        row = job_row(cr, job)
        assert (row["state"], row["eta"], row["exc_name"]) == (state, None, None)


# --------------------------------------------------------------------------
# NOTIFY
# --------------------------------------------------------------------------


def notifications(listener, timeout):
    """Notifications received by ``listener`` within ``timeout`` seconds."""
    received = []
    deadline = time.monotonic() + timeout
    while True:
        listener.poll()
        received.extend(listener.notifies)
        listener.notifies.clear()
        left = deadline - time.monotonic()
        if received or left <= 0:
            return received
        select.select([listener], [], [], left)


def listen(connect):
    """A new connection listening to the runners' channel."""
    listener = connect()
    listener.autocommit = True
    with listener.cursor() as cr:
        cr.execute(f"LISTEN {NOTIFY_CHANNEL}")
    return listener


def test_release_notifies_runners_on_commit(conn, connect):
    with conn.cursor() as cr:
        ids, _members = make_group(cr, 2)
        transitions.mark_done(cr, [ids["m0"]], RAN)
    conn.commit()
    listener = listen(connect)
    with conn.cursor() as cr:
        assert transitions.mark_done(cr, [ids["m1"]], RAN) == [ids["m1"]]
        assert states(cr, ids)["cb"] == (PENDING, 0)
        assert notifications(listener, 0.2) == [], "notified before commit"
    conn.commit()
    received = notifications(listener, 5)
    assert [n.channel for n in received] == [NOTIFY_CHANNEL]
    assert received[0].pid == conn.get_backend_pid()


def test_release_that_leaves_dependents_waiting_wakes_no_runner(conn, connect):
    with conn.cursor() as cr:
        ids, _members = make_group(cr, 2, member_state=DONE)
    conn.commit()
    listener = listen(connect)
    with conn.cursor() as cr:
        transitions.release_dependents(cr, [ids["m0"]])
        assert states(cr, ids)["cb"] == (WAIT, 1)
    conn.commit()
    assert notifications(listener, 0.3) == []


@pytest.mark.parametrize("eta, payload", [(None, ""), (timedelta(hours=1), ETA_PAYLOAD)])
def test_new_pending_job_notifies_and_says_if_it_waits_for_an_eta(conn, connect, eta, payload):
    listener = listen(connect)
    with conn.cursor() as cr:
        insert_job(cr, state="wait_dependencies")
        insert_job(cr, eta=eta and datetime.now(timezone.utc).replace(tzinfo=None) + eta)
    conn.commit()
    received = notifications(listener, 5)
    time.sleep(0.1)
    received += notifications(listener, 0)
    assert [n.payload for n in received] == [payload]



@pytest.mark.parametrize(
    "from_states, payloads",
    [(BUTTON, ["", STOP_PAYLOAD]), (("pending", "failed"), [])],
)
def test_cancel_that_may_end_a_running_job_tells_the_runners_to_stop(
    conn, connect, from_states, payloads
):
    with conn.cursor() as cr:
        job_id = insert_job(cr, state="started")
    conn.commit()
    listener = listen(connect)
    with conn.cursor() as cr:
        transitions.mark_cancelled(cr, [job_id], from_states)
    conn.commit()
    received = notifications(listener, 1 if payloads else 0.3)
    time.sleep(0.1)
    received += notifications(listener, 0)
    assert sorted(n.payload for n in received) == payloads


@pytest.mark.parametrize("snapshot_before_cancel", [True, False])
def test_a_running_job_that_ends_after_its_cancel_does_not_turn_done(
    conn, connect, snapshot_before_cancel
):
    """The job's transaction is REPEATABLE READ (Odoo's); its done moves a started job only."""
    with conn.cursor() as cr:
        job_id = insert_job(cr, state="started")
    conn.commit()
    job_conn = connect()
    job_conn.set_session(isolation_level="REPEATABLE READ")
    job_cr = job_conn.cursor()
    if snapshot_before_cancel:
        job_cr.execute("SELECT 1")
    with conn.cursor() as cr:
        assert transitions.mark_cancelled(cr, [job_id], BUTTON) == [job_id]
    conn.commit()
    if snapshot_before_cancel:
        with pytest.raises(psycopg2.errors.SerializationFailure):
            transitions.mark_done(job_cr, [job_id], RAN, release=False)
    else:
        assert transitions.mark_done(job_cr, [job_id], RAN, release=False) == []
    job_conn.rollback()
    with conn.cursor() as cr:
        assert job_row(cr, job_id)["state"] == CANCELLED
