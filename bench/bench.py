# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Measure two queue_job addons one after the other, on fresh databases, and print both.

Run through ``bench/run``, with Odoo's python:

    python bench/bench.py --ours ADDONS_DIR --theirs ADDONS_DIR [--quick] [--only NAMES]
                          [--keep-databases]

Each ADDONS_DIR holds an addon named ``queue_job``. Measurements alternate
between the two implementations (enqueue ours, enqueue theirs, drain ours,
...) so that both see about the same load from the rest of the machine.
"""

import argparse
import functools
import math
import os
import signal
import statistics
import sys
import time

import harness
import report

# Figures the issue asks for; --quick divides the sizes by 10 for a smoke run.
SIZES = {
    "enqueue_jobs": 10_000,
    "drain_jobs": 2_000,
    "pickup_jobs": 50,
    "fanin_members": (1_000, 10_000),
}
DRAIN_ROUNDS = 3  # this machine is shared: one drain varies by 15%, the median of 3 less
PICKUP_PAUSE = 0.2  # seconds between two pickup jobs: the runner is idle when each comes
DRAIN_TIMEOUT = 300  # seconds, per drain
FANIN_TIMEOUT = 150  # seconds, per fan-in drain: a slow barrier is reported, not waited for

# The callback of a fan-in becomes pending in the transaction of some member's
# release: this trigger logs when, on the benchmark's own database only.
PENDING_LOG_SQL = """
CREATE TABLE bench_became_pending (job_id integer, at timestamp);
CREATE FUNCTION bench_log_pending() RETURNS trigger AS $$
BEGIN
    INSERT INTO bench_became_pending VALUES (NEW.id, clock_timestamp() AT TIME ZONE 'UTC');
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER bench_log_pending AFTER UPDATE OF state ON queue_job
    FOR EACH ROW WHEN (OLD.state = 'wait_dependencies' AND NEW.state = 'pending')
    EXECUTE FUNCTION bench_log_pending();
"""


def measure_enqueue(impl, jobs):
    db = impl.fresh_database("enqueue")
    return impl.in_odoo(db, "enqueue", jobs)


def _wait_for_drain(db, server, count):
    """Wait until ``count`` jobs are done; return (finished, CPU seconds per job
    in Odoo's processes, in PostgreSQL's).

    The CPU is that of the server's processes and PostgreSQL backends
    between the first job done and the last one: the server's start-up is
    left out. Unlike a rate, it hardly depends on what else the machine runs.
    """
    deadline = time.monotonic() + DRAIN_TIMEOUT
    first = None
    with harness.connection(db) as connection, connection.cursor() as cr:
        while time.monotonic() < deadline:
            cr.execute(
                "SELECT count(*) FILTER (WHERE state = 'done'),"
                "       count(*) FILTER (WHERE state = 'failed') FROM queue_job"
            )
            done, failed = cr.fetchone()
            if failed:
                return False, (None, None)
            if done and first is None:
                first = (done, harness.cpu_seconds(cr, server.pid))
            if done >= count:
                cpu = harness.cpu_seconds(cr, server.pid)
                jobs = done - first[0]
                if not jobs:
                    return True, (None, None)
                return True, tuple(
                    (now - then) / jobs for now, then in zip(cpu, first[1], strict=True)
                )
            time.sleep(0.05)
    return False, (None, None)


def measure_drain_and_pickup(impl, count, pickup_jobs):
    """Drain jobs committed before the server starts; then, the runner idle, pickup latency."""
    db = impl.fresh_database("drain")
    impl.in_odoo(db, "enqueue", count)
    launched = time.time()
    with impl.server(db) as server:
        finished, (odoo_cpu, postgresql_cpu) = _wait_for_drain(db, server, count)
        [(first_start, last_done, done)] = harness.query(
            db,
            "SELECT min(date_started), max(date_done), count(*) FILTER (WHERE state = 'done')"
            "  FROM queue_job",
        )
        pickup = impl.in_odoo(db, "pickup", pickup_jobs, PICKUP_PAUSE) if finished else None
    drain = {"jobs": count, "done": done, "finished": finished}
    if odoo_cpu is not None:
        drain.update(
            odoo_cpu=odoo_cpu, postgresql_cpu=postgresql_cpu, cpu_per_job=odoo_cpu + postgresql_cpu
        )
    if done:
        from_launch = harness.epoch(last_done) - launched
        busy = harness.epoch(last_done) - harness.epoch(first_start)
        drain.update(
            from_launch=from_launch,
            rate_from_launch=done / from_launch,
            busy=busy,
            rate_busy=done / busy,
            first_start_after=harness.epoch(first_start) - launched,
        )
    return drain, pickup


def measure_fanin(impl, members):
    """A group of ``members`` with one on_done callback: build it, then drain it with the server."""
    db = impl.fresh_database(f"fanin{members}")
    harness.execute(db, PENDING_LOG_SQL)
    created = impl.in_odoo(db, "group", members)
    [(callback_id,)] = harness.query(
        db, "SELECT id FROM queue_job WHERE state = 'wait_dependencies'"
    )
    launched = time.time()
    with impl.server(db):
        finished = harness.wait_until(
            db,
            "SELECT state = 'done', state = 'failed' FROM queue_job WHERE id = %s",
            (callback_id,),
            FANIN_TIMEOUT,
        )
    [(members_done, first_start, last_done, callback_started, became_pending)] = harness.query(
        db,
        """
        SELECT count(*) FILTER (WHERE j.state = 'done' AND j.id <> %(cb)s),
               min(j.date_started) FILTER (WHERE j.id <> %(cb)s),
               max(j.date_done) FILTER (WHERE j.id <> %(cb)s),
               max(j.date_started) FILTER (WHERE j.id = %(cb)s),
               (SELECT min(at) FROM bench_became_pending WHERE job_id = %(cb)s)
          FROM queue_job j
        """,
        {"cb": callback_id},
    )
    result = {
        "members": members,
        "create_rate": created["rate"],
        "create_seconds": created["seconds"],
        "finished": finished,
        "members_done": members_done,
        "timeout": FANIN_TIMEOUT,
    }
    if members_done:
        result["busy"] = harness.epoch(last_done) - harness.epoch(first_start)
        result["rate_busy"] = members_done / result["busy"]
    if finished:
        result["from_launch"] = harness.epoch(last_done) - launched
        result["started_after_last"] = harness.epoch(callback_started) - harness.epoch(last_done)
    if finished and became_pending:  # None if the callback never waited (not a barrier)
        result["pending_after_last"] = harness.epoch(became_pending) - harness.epoch(last_done)
    return result


def measure_release_cost(impl, members):
    """The release transaction of each member, timed directly (see in_odoo.release_cost)."""
    db = impl.fresh_database(f"release{members}")
    return impl.in_odoo(db, "release-cost", members)


def _median_of_rounds(rounds):
    """One drain figure per key: the median over the rounds that drained something."""
    measured = [drain for drain in rounds if drain.get("done")]
    summary = {"rounds": len(rounds), "finished": all(d["finished"] for d in rounds)}
    for key in (
        "jobs",
        "done",
        "from_launch",
        "rate_from_launch",
        "busy",
        "rate_busy",
        "first_start_after",
        "cpu_per_job",
        "odoo_cpu",
        "postgresql_cpu",
    ):
        values = [drain[key] for drain in measured if key in drain]
        if values:
            summary[key] = statistics.median(values)
    return summary


def _latency_summary(latencies, jobs):
    ordered = sorted(latencies)
    summary = {"jobs": jobs, "started": len(ordered)}
    if ordered:
        summary.update(
            median=statistics.median(ordered),
            p95=ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)],
            max=ordered[-1],
        )
    return summary


def steps(sizes, only):
    """(name, measure(impl) -> dict) in the order they run; each runs for every implementation."""
    planned = [("enqueue", functools.partial(measure_enqueue, jobs=sizes["enqueue_jobs"]))]
    planned += [
        (
            "drain",
            functools.partial(
                measure_drain_and_pickup,
                count=sizes["drain_jobs"],
                pickup_jobs=sizes["pickup_jobs"],
            ),
        )
    ] * DRAIN_ROUNDS
    planned += [
        (f"fanin{members}", functools.partial(measure_fanin, members=members))
        for members in sizes["fanin_members"]
    ]
    # Our transitions only: other addons have no such module (in_odoo.py says so).
    planned += [
        (f"release{members}", functools.partial(measure_release_cost, members=members))
        for members in sizes["fanin_members"]
    ]
    return [
        (name, measure)
        for name, measure in planned
        if not only or any(name.startswith(prefix) for prefix in only)
    ]


def run(implementations, sizes, only, results):
    """Fill ``results[label]`` as figures come, printing each one."""
    for impl in implementations:
        report.say(f"[{impl.label}] installing queue_job in a template database")
        impl.make_template()
    for name, measure in steps(sizes, only):
        for impl in implementations:
            mine = results[impl.label]
            mine.setdefault("load", []).append(round(os.getloadavg()[0], 2))
            outcome = measure(impl)
            if name == "drain":
                drain, pickup = outcome
                mine.setdefault("drain_rounds", []).append(drain)
                mine["drain"] = _median_of_rounds(mine["drain_rounds"])
                latencies = mine.setdefault("pickup_latencies", [])
                latencies += pickup["latencies"] if pickup else []
                mine["pickup"] = _latency_summary(
                    latencies, sizes["pickup_jobs"] * len(mine["drain_rounds"])
                )
                report.print_figure(impl.label, "drain", drain)
                if pickup:
                    report.print_figure(
                        impl.label, "pickup", _latency_summary(pickup["latencies"], pickup["jobs"])
                    )
            else:
                mine[name] = outcome
                report.print_figure(impl.label, name, outcome)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", required=True, help="addons dir holding our queue_job")
    parser.add_argument("--theirs", required=True, help="addons dir holding OCA's queue_job")
    parser.add_argument("--quick", action="store_true", help="sizes / 10: a smoke run")
    parser.add_argument(
        "--keep-databases", action="store_true", help="do not drop bench_* databases"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated measurements to run (enqueue, drain, fanin, release); default: all",
    )
    args = parser.parse_args()
    sizes = dict(SIZES)
    if args.quick:
        sizes = {
            key: tuple(v // 10 for v in value) if isinstance(value, tuple) else value // 10
            for key, value in SIZES.items()
        }
    # SIGTERM (from bench/run's trap) unwinds like an exception: servers are
    # stopped and databases dropped by the finally clauses below.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    implementations = [
        harness.Implementation("ours", args.ours),
        harness.Implementation("oca", args.theirs),
    ]
    results = {impl.label: {} for impl in implementations}
    started = time.monotonic()
    try:
        run(implementations, sizes, [name for name in args.only.split(",") if name], results)
    finally:
        harness.stop_all_servers()
        if not args.keep_databases:
            for impl in implementations:
                impl.drop_databases()
        report.print_table(results, sizes, time.monotonic() - started)


if __name__ == "__main__":
    main()
