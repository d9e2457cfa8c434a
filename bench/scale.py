# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Our queue_job with large backlogs: claim cost, drain rate, runner memory, list, autovacuum.

Run through ``bench/run --scale``, with Odoo's python:

    python bench/scale.py --ours ADDONS_DIR [--sizes 0,10000,100000,1000000]
                          [--shapes NAMES] [--ports 8380-8399] [--db-prefix bench]

For every shape and size of backlog, on a fresh copy of a template database:

1. 2,000 trivial jobs are enqueued through Odoo (``in_odoo.py enqueue``) and
   set aside; the backlog is built from one of them in one ``INSERT ...
   SELECT generate_series``; one job of ``root.a`` is started, its liveness
   lock held by this script, so that ``root.a:1`` is full.
2. **Claim**: ``claim_job`` (the runner's call) with
   ``root:4,root.a:1,root.b:3`` of a runnable job added to ``root.b`` for
   it, committed, the job then set done: the median of :data:`CLAIMS`
   claims, with its round trip, taken in turns with claims on a database
   whose table is empty (but for the running job), for the ratio.
3. **Drain**: the 2,000 jobs go to ``root.b``, pending, and a server drains
   them (``root:4,root.a:1,root.b:3``); the rate from the first start to the
   2,000th done; the RSS of the runner's process (the server's process with
   the most threads) after the first job done and after the last.
4. **List** (the first shape of each size): ``in_odoo.py list-search``, the
   slowest of the Jobs list's first page with its default and each filter,
   and of its group-by counts.

First, once: the **commit limit** (4 connections, each committing a
single-row UPDATE in a loop, as ``pgbench`` would), the **plain drain** of
2,000 jobs at ``root:4`` on an empty table as a fraction of it, and the
**autovacuum** (the largest size of old done jobs; the server drains 2,000
jobs meanwhile): jobs deleted per second and the longest batch.
"""

import argparse
import os
import signal
import statistics
import sys
import threading
import time
import types

import harness
import report

SHAPES = {
    # name: (channel, state, priority, eta): the backlog's jobs
    "runnable": ("root.b", "pending", 10, None),
    "full_channel": ("root.a", "pending", 1, None),
    "future_eta": ("root.b", "pending", 1, "1 day"),
    "low_priority": ("root", "pending", 50, None),
    "waiting_graph": ("root.b", "wait_dependencies", 1, None),
}
SIZES = (0, 10_000, 100_000, 1_000_000)
CHANNELS = "root:4,root.a:1,root.b:3"
DRAIN_JOBS = 2_000
CLAIMS = 200
COMMIT_SECONDS = 5
AUTOVACUUM_SECONDS = 30
DRAIN_TIMEOUT = 300


def load_core(addons_dir):
    """Our core package, imported without Odoo (as tests/pure does)."""
    if "queue_job" not in sys.modules:
        package = types.ModuleType("queue_job")
        package.__path__ = [os.path.join(addons_dir, "queue_job")]
        sys.modules["queue_job"] = package
    from queue_job.core import channels, claim  # noqa: PLC0415

    return claim, channels


def commit_limit(db):
    """Single-row UPDATE commits per second of 4 connections at once."""
    harness.execute(db, "CREATE TABLE bench_commit (id integer PRIMARY KEY, n integer)")
    harness.execute(db, "INSERT INTO bench_commit SELECT g, 0 FROM generate_series(1, 4) g")
    counts = [0] * 4
    deadline = time.monotonic() + COMMIT_SECONDS

    def commit(index):
        with harness.connection(db) as connection, connection.cursor() as cr:
            while time.monotonic() < deadline:
                cr.execute("UPDATE bench_commit SET n = n + 1 WHERE id = %s", (index + 1,))
                counts[index] += 1

    threads = [threading.Thread(target=commit, args=(index,)) for index in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"commits": sum(counts), "rate": sum(counts) / (time.monotonic() - started)}


def _copy_model_job(model_id, count, channel, state, priority, eta):
    """SQL: insert ``count`` copies of job ``model_id`` with these values (a done
    one done 60 days ago, a waiting one in the graph of the model job's uuid)."""
    return f"""
        INSERT INTO queue_job (uuid, graph_uuid, name, model_name, method_name, record_ids,
                               args, kwargs, func_string, user_id, company_id, job_function_id,
                               state, priority, eta, retry, max_retries, channel,
                               date_created, date_done, pending_dependency_count)
        SELECT md5(random()::text || g), {'m.uuid' if state == 'wait_dependencies' else 'NULL'},
               m.name, m.model_name, m.method_name, m.record_ids, m.args, m.kwargs,
               m.func_string, m.user_id, m.company_id, m.job_function_id,
               '{state}', {priority},
               {f"(now() AT TIME ZONE 'UTC') + interval '{eta}'" if eta else 'NULL'},
               0, m.max_retries, '{channel}',
               (now() AT TIME ZONE 'UTC') + interval '1 second',
               {"(now() AT TIME ZONE 'UTC') - interval '60 days'" if state == 'done' else 'NULL'},
               {1 if state == 'wait_dependencies' else 0}
          FROM queue_job m, generate_series(1, {count}) g
         WHERE m.id = {model_id}
    """


def build(db, shape, size):
    """The drain's jobs set aside, the backlog, the running job of root.a; its id."""
    channel, state, priority, eta = SHAPES[shape]
    [(model_id,)] = harness.query(db, "SELECT min(id) FROM queue_job")
    harness.execute(db, "UPDATE queue_job SET state = 'cancelled'")
    harness.execute(db, _copy_model_job(model_id, 1, "root.a", "started", 10, None))
    [(running_id,)] = harness.query(db, "SELECT max(id) FROM queue_job")
    if size:
        harness.execute(db, _copy_model_job(model_id, size, channel, state, priority, eta))
    if size and state == "wait_dependencies":
        # A chain, each job waiting on the one before; the first on the running job.
        harness.execute(
            db,
            """INSERT INTO queue_job_dependency (job_id, dependency_id)
               SELECT id, CASE WHEN id = %s + 1 THEN %s ELSE id - 1 END
                 FROM queue_job WHERE id > %s""",
            (running_id, running_id, running_id),
        )
    harness.execute(db, "VACUUM ANALYZE queue_job")
    return model_id, running_id


def _timed_claim(connection, claim, setting, model_id):
    """Seconds of one claim on ``connection``, of a job of root.b added for it.

    Each claim commits and takes a job of its own, which is then set done, as
    in a drain: claiming one job again and again, rolled back, would measure
    the dead versions of its row.
    """
    with connection.cursor() as cr:
        cr.execute(_copy_model_job(model_id, 1, "root.b", "pending", 10, None))
        connection.commit()
        started = time.perf_counter()
        job = claim.claim_job(cr, setting)
        seconds = time.perf_counter() - started
        connection.commit()  # its WAL flush is the machine's, not the claim's
        # The job added, or in a backlog of runnable jobs one of them.
        assert job and job["channel"] != "root.a", job
        cr.execute("UPDATE queue_job SET state = 'done' WHERE id = %s", (job["id"],))
        connection.commit()
        claim.drop_liveness_lock(cr, job["id"])
        connection.commit()
    return seconds


def measure_claims(claim, channels, target, reference):
    """Median seconds of the runner's claim on ``target``, and on the empty
    ``reference``, taken in turns: each a (database, id of its model job)."""
    setting = channels.Channels.parse(CHANNELS)
    seconds, empty = [], []
    with harness.connection(target[0]) as connection, harness.connection(reference[0]) as other:
        connection.autocommit = other.autocommit = False
        for _ in range(CLAIMS):
            seconds.append(_timed_claim(connection, claim, setting, target[1]))
            empty.append(_timed_claim(other, claim, setting, reference[1]))
    for db, _model_id in (target, reference):
        harness.execute(db, "DELETE FROM queue_job WHERE state = 'done' AND channel = 'root.b'")
    return statistics.median(seconds), statistics.median(empty)


def _threads_and_rss(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return int(fields["Threads"][0]), int(fields.get("VmRSS", ["0"])[0]) / 1024


def runner_rss(server):
    """MB of resident memory of the server's process with the most threads: the runner's."""
    measured = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getsid(int(name)) == server.pid:
                    measured.append(_threads_and_rss(name))
            except (OSError, KeyError):
                continue
    return max(measured)[1] if measured else None


def drain(impl, db, channels, last_id):
    """Drain the jobs up to ``last_id``: jobs/s from the first start to the last done, RSS."""
    pending = "SELECT count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'failed') FROM queue_job WHERE id <= %s"
    rss_before = None
    deadline = time.monotonic() + DRAIN_TIMEOUT
    with impl.server(db, channels) as server:
        with harness.connection(db) as connection, connection.cursor() as cr:
            while time.monotonic() < deadline:
                cr.execute(pending, (last_id,))
                done, failed = cr.fetchone()
                if failed:
                    raise RuntimeError(f"{db}: {failed} drain jobs failed")
                if done and rss_before is None:
                    rss_before = runner_rss(server)
                if done == last_id:
                    break
                time.sleep(0.05)
        rss_after = runner_rss(server)
    [(first_start, last_done)] = harness.query(
        db, "SELECT min(date_started), max(date_done) FROM queue_job WHERE id <= %s", (last_id,)
    )
    busy = harness.epoch(last_done) - harness.epoch(first_start)
    return {"rate": last_id / busy, "rss_before": rss_before, "rss_after": rss_after}


def measure_shape(impl, claim, channels, shape, size, with_list, reference):
    db = impl.fresh_database(f"{shape}{size}")
    try:
        impl.in_odoo(db, "enqueue", DRAIN_JOBS)
        model_id, running_id = build(db, shape, size)
        with harness.connection(db) as holder, holder.cursor() as cr:
            # The running job of root.a is alive: this connection holds its lock.
            cr.execute("SELECT pg_advisory_lock(%s, %s)", (claim.LOCK_NAMESPACE, running_id))
            claimed, empty = measure_claims(claim, channels, (db, model_id), reference)
            result = {"claim": claimed, "claim_empty": empty}
            harness.execute(
                db,
                "UPDATE queue_job SET state = 'pending', channel = 'root.b' WHERE id <= %s",
                (DRAIN_JOBS,),
            )
            result.update(drain(impl, db, CHANNELS, DRAIN_JOBS))
            if with_list:
                result["list"] = impl.in_odoo(db, "list-search")["seconds"]
        return result
    finally:
        impl.drop_database(db)


def measure_once(impl, largest):
    """Commit limit, plain drain at root:4, autovacuum of ``largest`` old done jobs."""
    db = impl.fresh_database("limit")
    try:
        limit = commit_limit(db)
        impl.in_odoo(db, "enqueue", DRAIN_JOBS)
        plain = drain(impl, db, "root:4", DRAIN_JOBS)
        # Old done jobs to delete, while the server drains new jobs.
        [(model_id,)] = harness.query(db, "SELECT min(id) FROM queue_job")
        harness.execute(db, _copy_model_job(model_id, largest, "root", "done", 10, None))
        harness.execute(db, "VACUUM ANALYZE queue_job")
        impl.in_odoo(db, "enqueue", DRAIN_JOBS)
        with impl.server(db, "root:4"):
            vacuum = impl.in_odoo(db, "autovacuum", AUTOVACUUM_SECONDS)
        return limit, plain, vacuum
    finally:
        impl.drop_database(db)


def _ms(seconds):
    return f"{seconds * 1000:.2f} ms"


def print_table(rows, once):
    report.say("")
    report.say(
        "| shape | backlog | claim median | x empty | drain jobs/s | x empty"
        " | runner RSS MB before -> after | list s |"
    )
    report.say("|---|---|---|---|---|---|---|---|")
    for (shape, size), result in rows.items():
        empty = rows[shape, 0]
        listed = f"{result['list']:.2f}" if "list" in result else ""
        report.say(
            f"| {shape} | {size:,} | {_ms(result['claim'])} | "
            f"{result['claim'] / result['claim_empty']:.2f} | {result['rate']:.0f} | "
            f"{result['rate'] / empty['rate']:.2f} | "
            f"{result['rss_before']:.0f} -> {result['rss_after']:.0f} | {listed} |"
        )
    if once is None:
        return
    limit, plain, vacuum = once
    report.say("")
    report.say(
        f"commit limit: {limit['rate']:.0f} single-row commits/s (4 clients); plain drain at"
        f" root:4: {plain['rate']:.0f} jobs/s = {plain['rate'] / limit['rate']:.0%} of it"
    )
    report.say(
        f"autovacuum: {vacuum['deleted']:,} old done jobs deleted in {vacuum['batches']} batches,"
        f" {vacuum['rate']:.0f} jobs/s, longest batch {vacuum['longest_batch']:.2f} s,"
        " while the runner drained"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", required=True, help="addons dir holding our queue_job")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--ports", default="8380-8399", help="HTTP ports the servers may use")
    parser.add_argument("--db-prefix", default="bench", help="prefix of the databases' names")
    args = parser.parse_args()
    first, last = map(int, args.ports.split("-"))
    harness.PORT_RANGE = range(first, last + 1)
    sizes = [int(size) for size in args.sizes.split(",")]
    if 0 not in sizes:
        sizes.insert(0, 0)  # the ratios are to the empty table
    shapes = args.shapes.split(",")
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    impl = harness.Implementation("ours", args.ours, prefix=args.db_prefix)
    claim, channels = load_core(args.ours)
    rows, once = {}, None
    try:
        report.say("[ours] installing queue_job in a template database")
        impl.make_template()
        once = measure_once(impl, max(sizes))
        report.say(f"once: {once}")
        # The empty table, claimed in turns with each backlog: the ratio is
        # taken under the same load of the machine.
        reference = impl.fresh_database("empty")
        impl.in_odoo(reference, "enqueue", 1)
        model_id, running_id = build(reference, shapes[0], 0)
        with harness.connection(reference) as holder, holder.cursor() as cr:
            cr.execute("SELECT pg_advisory_lock(%s, %s)", (claim.LOCK_NAMESPACE, running_id))
            for size in sizes:
                for shape in shapes if size else shapes[:1]:
                    result = measure_shape(
                        impl, claim, channels, shape, size, shape == shapes[0], (reference, model_id)
                    )
                    report.say(f"{shape} {size:,}: {result}")
                    rows[shape, size] = result
    finally:
        harness.stop_all_servers()
        impl.drop_databases()
        if (shapes[0], 0) in rows:  # what was measured, also when interrupted
            for shape in shapes[1:]:
                rows.setdefault((shape, 0), rows[shapes[0], 0])
            order = sorted(rows, key=lambda key: (shapes.index(key[0]), key[1]))
            print_table({key: rows[key] for key in order}, once)


if __name__ == "__main__":
    main()
