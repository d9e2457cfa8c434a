# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The benchmark's work done through Odoo's API, for whichever queue_job is on the addons path.

Run with Odoo's python, one process per implementation (both addons are
``odoo.addons.queue_job``, so they cannot share a process):

    python bench/in_odoo.py ADDONS_PATH DATABASE COMMAND [ARGS...]

Prints one JSON object on the last line of stdout. The code that delays jobs
is the same for both addons: only their public API is used, except by
``release-cost``, which times our ``transitions`` module directly.
"""

import json
import math
import sys
import time

from lxml import etree
from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry
from odoo.tools import config

from harness import epoch  # bench/ is this script's directory, so on sys.path


def open_env(addons_path, db_name):
    config.parse_config(
        ["--addons-path", addons_path, "-d", db_name, "--log-level", "warn"],
        setup_logging=True,
    )
    cr = Registry(db_name).cursor()
    return api.Environment(cr, SUPERUSER_ID, {})


def admin_partner(env):
    return env.ref("base.partner_admin")


def enqueue(env, count):
    """Delay ``count`` jobs in one transaction; time the loop plus the commit."""
    partner = admin_partner(env)
    env.cr.commit()  # start the clock on a fresh transaction
    started = time.perf_counter()
    for number in range(count):
        partner.with_delay().bench_noop(number)
    env.cr.commit()
    seconds = time.perf_counter() - started
    return {"jobs": count, "seconds": seconds, "rate": count / seconds}


def pickup(env, count, pause):
    """Delay ``count`` jobs one transaction at a time; latency from commit to start.

    The commit time is taken just *before* ``commit()`` is called: the
    latency includes the commit itself, as a user would see it.
    """
    partner = admin_partner(env)
    env.cr.commit()
    committed_at = {}
    for number in range(count):
        job = partner.with_delay().bench_noop(number)
        committed_at[job.uuid] = time.time()
        env.cr.commit()
        time.sleep(pause)
    deadline = time.monotonic() + 60
    while True:
        env.cr.execute(
            "SELECT uuid, date_started FROM queue_job WHERE uuid = ANY(%s) "
            "AND date_started IS NOT NULL",
            (list(committed_at),),
        )
        rows = env.cr.fetchall()
        env.cr.commit()
        if len(rows) == count or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return {
        "jobs": count,
        "latencies": [epoch(started) - committed_at[uuid] for uuid, started in rows],
    }


def make_group(env, members):
    """Store ``group(members...).on_done(callback)``; time the building, storing and commit."""
    from odoo.addons.queue_job.delay import group

    partner = admin_partner(env)
    env.cr.commit()
    started = time.perf_counter()
    delayables = [partner.delayable().bench_noop(number) for number in range(members)]
    group(*delayables).on_done(partner.delayable().bench_noop(-1)).delay()
    env.cr.commit()
    seconds = time.perf_counter() - started
    return {"jobs": members + 1, "seconds": seconds, "rate": (members + 1) / seconds}


BASELINE_SAMPLES = 1000


def release_cost(env, members):
    """Our addon only: time the release of each member of a fresh group, as the runner does it.

    The runner commits a job's ``done`` state first, then releases its
    dependents in a transaction of its own (``release_dependents``): that
    transaction is what is timed here, for every member in turn. Plain jobs
    (no dependent) go through the same transaction as a baseline, each right
    after a member, so that both see the same machine load; the difference
    is what the callback costs. The baseline samples at most
    ``BASELINE_SAMPLES`` members, to keep the run short.
    """
    try:
        from odoo.addons.queue_job.core import isolation, transitions
    except ImportError:
        return {"skipped": "this queue_job has no transitions module"}

    created = make_group(env, members)
    baseline = min(members, BASELINE_SAMPLES)
    enqueue(env, baseline)
    cr = env.cr
    cr.execute(
        "SELECT array_agg(id ORDER BY id) FILTER (WHERE graph_uuid IS NOT NULL"
        "                                          AND state = 'pending'),"
        "       array_agg(id ORDER BY id) FILTER (WHERE graph_uuid IS NULL)"
        "  FROM queue_job"
    )
    member_ids, plain_ids = cr.fetchone()
    # Setup, not timed: the jobs ran. Their releases are still to be done.
    cr.execute(
        "UPDATE queue_job SET state = 'done', date_done = now() AT TIME ZONE 'UTC' "
        "WHERE id = ANY(%s)",
        (member_ids + plain_ids,),
    )
    cr.commit()

    def timed_release(job_id):
        started = time.perf_counter()
        isolation.read_committed(cr)
        transitions.release_dependents(cr, [job_id])
        cr.commit()
        return time.perf_counter() - started

    plain_every = math.ceil(members / baseline)
    member_seconds = plain_seconds = 0.0
    for index, member_id in enumerate(member_ids):
        member_seconds += timed_release(member_id)
        if index % plain_every == 0:
            plain_seconds += timed_release(plain_ids[index // plain_every])
    cr.execute("SELECT state FROM queue_job WHERE state <> 'done'")
    left = [state for (state,) in cr.fetchall()]
    cr.commit()
    return {
        "members": members,
        "create_rate": created["rate"],
        "member_release_ms": 1000 * member_seconds / members,
        "plain_release_ms": 1000 * plain_seconds / math.ceil(members / plain_every),
        "callback_state": left[0] if len(left) == 1 else repr(left),
    }


def list_search(env):
    """Seconds to open the Jobs list as an admin: its first page and count, with no
    filter and with each filter of its search view, and its group-by counts."""
    jobs = env["queue.job"].with_user(env.ref("base.user_admin"))
    arch = jobs.get_views([(False, "list")])["views"]["list"]["arch"]
    specification = {field.get("name"): {} for field in etree.fromstring(arch).iter("field")}
    domains = {"no filter": []}
    for name, domain in (
        ("my jobs", [("user_id", "=", jobs.env.uid)]),
        ("pending", [("state", "=", "pending")]),
        ("failed", [("state", "=", "failed")]),
        ("done", [("state", "=", "done")]),
        ("in a graph", [("graph_uuid", "!=", False)]),
    ):
        domains[name] = domain
    timings = {}
    for name, domain in domains.items():
        jobs.env.invalidate_all()
        started = time.perf_counter()
        jobs.web_search_read(domain, specification, limit=80)
        timings[name] = time.perf_counter() - started
    for groupby in ("state", "channel", "model_name", "date_created:day"):
        jobs.env.invalidate_all()
        started = time.perf_counter()
        jobs.web_read_group([], [groupby], ["__count"])
        timings[f"group by {groupby}"] = time.perf_counter() - started
    slowest = max(timings, key=timings.get)
    return {"timings": timings, "slowest": slowest, "seconds": timings[slowest]}


def autovacuum(env, seconds):
    """Call the autovacuum of jobs for ``seconds``, a committed batch per call, as
    Odoo's cron does; the rate of jobs deleted and the longest batch."""
    jobs = env["queue.job"]
    deleted, longest, batches = 0, 0.0, 0
    started = time.perf_counter()
    more = True
    while more and time.perf_counter() - started < seconds:
        batch_started = time.perf_counter()
        removed, more = jobs._gc_old_jobs()
        env.cr.commit()
        longest = max(longest, time.perf_counter() - batch_started)
        deleted += removed
        batches += 1
    elapsed = time.perf_counter() - started
    return {"deleted": deleted, "rate": deleted / elapsed, "longest_batch": longest,
            "batches": batches}


COMMANDS = {
    "list-search": list_search,
    "autovacuum": lambda env, seconds: autovacuum(env, float(seconds)),
    "enqueue": lambda env, count: enqueue(env, int(count)),
    "pickup": lambda env, count, pause: pickup(env, int(count), float(pause)),
    "group": lambda env, members: make_group(env, int(members)),
    "release-cost": lambda env, members: release_cost(env, int(members)),
}


def main(addons_path, db_name, command, *args):
    env = open_env(addons_path, db_name)
    try:
        result = COMMANDS[command](env, *args)
    finally:
        env.cr.rollback()
        env.cr.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
