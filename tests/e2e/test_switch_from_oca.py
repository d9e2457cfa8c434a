# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The switch in place: a database running OCA's queue_job moves to ours.

On a database of its own (``QUEUE_JOB_E2E_DB`` + ``_oca``): install OCA's
queue_job 19.0.2.4.0, create with OCA's API jobs in every state, run some of
them as OCA's runner and HTTP worker would, swap the addons path to ours,
``odoo -u queue_job``, then start our runner and watch every job end.
Last, on ``dev/test``'s database of ours, the same update is a no-op.
"""

import datetime
import glob
import json
import os
import subprocess
import sys
import time
import zipfile

import psycopg2
import pytest
from odoo_process import PORT, OdooServer, odoo_shell

E2E_DB = os.environ.get("QUEUE_JOB_E2E_DB")
ADDONS = os.environ.get("QUEUE_JOB_E2E_ADDONS")
DB = f"{E2E_DB}_oca"
OCA_ADDONS = "/opt/oca/addons"
OCA_WHEEL = "odoo-addon-queue-job==19.0.2.4.0.1"
ETA_SECONDS = 90

pytestmark = pytest.mark.skipif(not E2E_DB, reason="needs QUEUE_JOB_E2E_DB (run by dev/test)")

# Jobs created with OCA's API, some of them run the way OCA runs them: the
# runner sets them enqueued, an HTTP worker acquires (started, committed)
# and performs them. Prints the uuid of each job by name.
OCA_JOBS = f"""
import datetime, json
from odoo.addons.queue_job.controllers.main import RunJobController
from odoo.addons.queue_job.delay import chain, group

partner = env["res.partner"].create({{"name": "switch e2e"}})
env.cr.commit()

def post(name, **options):
    return partner.with_delay(description=name, **options).message_post(body=name)

def post_later(name):
    return partner.delayable(description=name).message_post(body=name)

def fail_later(name):
    return partner.delayable(description=name, max_retries=1).write({{"no_such_field": 1}})

def enqueue(job):
    job.set_enqueued()
    job.store()
    env.cr.commit()

def acquire(job):
    enqueue(job)
    acquired = RunJobController._acquire_job(env, job.uuid)
    assert acquired, job
    return acquired

def run(job):
    acquired = acquire(job)
    try:
        RunJobController._runjob(env, acquired)
    except Exception:
        env.cr.rollback()  # OCA stored the failure in a transaction of its own
    env.cr.commit()

jobs = {{
    "done": post("done"),
    "failed": partner.with_delay(description="failed", max_retries=1).write(
        {{"no_such_field": 1}}),
    "cancelled": post("cancelled"),
    "eta": post("eta", eta=datetime.timedelta(seconds={ETA_SECONDS})),
    "enqueued": post("enqueued"),
    "started": post("started", max_retries=5),
}}
graphs = {{name: post_later(name) for name in ("a", "b", "c", "d", "e", "f", "h")}}
graphs["g"] = fail_later("g")
group(graphs["a"], graphs["b"]).on_done(graphs["c"]).delay()
chain(graphs["d"], graphs["e"], graphs["f"]).delay()
chain(graphs["g"], graphs["h"]).delay()
jobs.update({{name: delayable._generated_job for name, delayable in graphs.items()}})
env.cr.commit()

for name in ("done", "failed", "a", "d", "g"):
    run(jobs[name])
env["queue.job"].search([("uuid", "=", jobs["cancelled"].uuid)]).button_cancelled()
env.cr.commit()
enqueue(jobs["enqueued"])
acquire(jobs["started"])  # and its worker dies: this shell ends
# Two enqueues racing past OCA's identity check both store their job.
env.cr.execute(
    "UPDATE queue_job SET identity_key = 'twins' WHERE uuid IN %s",
    ((jobs["enqueued"].uuid, jobs["b"].uuid),),
)
print("UUIDS", json.dumps({{name: job.uuid for name, job in jobs.items()}}))
print("PARTNER", partner.id)
"""

COLUMNS = (
    "id", "uuid", "state", "retry", "eta", "result", "exc_name", "exc_message", "exc_info",
    "date_started", "date_done", "record_ids", "pending_dependency_count", "identity_key",
)
HISTORY = ("retry", "result", "exc_name", "exc_message", "exc_info", "date_started", "date_done")


def query(sql, args=(), db=DB):
    """Run ``sql`` on ``db`` and commit; return its rows, if it returns any."""
    with psycopg2.connect(dbname=db) as conn, conn.cursor() as cr:
        cr.execute(sql, args)
        return cr.fetchall() if cr.description else None


def jobs_by_name(uuids, columns=COLUMNS):
    """The rows of the jobs named in ``uuids``, as dicts, by name."""
    names = {uuid: name for name, uuid in uuids.items()}
    rows = query(f"SELECT {', '.join(columns)} FROM queue_job")
    return {names[row[1]]: dict(zip(columns, row)) for row in rows}


def edges(uuids):
    """{(dependent, dependency): released} of the jobs named in ``uuids``."""
    names = {uuid: name for name, uuid in uuids.items()}
    rows = query(
        "SELECT j.uuid, d.uuid, e.released FROM queue_job_dependency e"
        " JOIN queue_job j ON j.id = e.job_id JOIN queue_job d ON d.id = e.dependency_id"
    )
    return {(names[job], names[dep]): released for job, dep, released in rows}


def column_exists(table, column):
    return bool(query(
        "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
        (table, column),
    ))


def odoo(db, *args, log, timeout):
    """Run ``odoo *args --stop-after-init`` on ``db``, its log in ``log``."""
    with open(log, "w") as out:
        subprocess.run(
            ["odoo", "-d", db, *args, "--stop-after-init", "--http-interface=127.0.0.1",
             f"--http-port={PORT}", "--log-level=info"],
            stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=True,
        )
    return log.read_text()


def oca_addons(tmp_path):
    """A folder holding OCA's queue_job 19.0.2.4.0: the machine's, or PyPI's wheel."""
    if os.path.isfile(os.path.join(OCA_ADDONS, "queue_job", "__manifest__.py")):
        return OCA_ADDONS
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--timeout", "30",
         "--retries", "1", "-d", str(tmp_path), OCA_WHEEL],
        capture_output=True, text=True,
    )
    if download.returncode != 0:
        pytest.skip(
            f"!!! SWITCH FROM OCA NOT TESTED: {OCA_ADDONS}/queue_job is missing and "
            f"'pip download {OCA_WHEEL}' failed (no network?): {download.stderr.strip()[-300:]}"
        )
    (wheel,) = glob.glob(str(tmp_path / "*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "wheel")
    return str(tmp_path / "wheel" / "odoo" / "addons")


@pytest.fixture(scope="module")
def switched(tmp_path_factory):
    """The database after the update from OCA's queue_job to ours, before any runner."""
    tmp_path = tmp_path_factory.mktemp("switch")
    subprocess.run(["dropdb", "--if-exists", DB], check=True)
    try:
        oca = oca_addons(tmp_path)
        odoo(DB, f"--addons-path={oca}", "-i", "queue_job", log=tmp_path / "install.log",
             timeout=600)
        out = odoo_shell(OCA_JOBS, DB, oca)
        printed = dict(
            line.split(" ", 1) for line in out.splitlines()
            if line.startswith(("UUIDS ", "PARTNER "))
        )
        uuids = json.loads(printed["UUIDS"])
        before = jobs_by_name(uuids, ("id", "uuid", "state", "date_cancelled", *HISTORY))
        update_log = odoo(DB, f"--addons-path={ADDONS}", "-u", "queue_job",
                          log=tmp_path / "update.log", timeout=600)
        yield {
            "uuids": uuids, "before": before, "partner": int(printed["PARTNER"]),
            "update_log": update_log, "tmp_path": tmp_path,
        }
    finally:
        subprocess.run(["dropdb", "--if-exists", DB], check=True)


def test_oca_jobs_were_in_every_state(switched):
    states = {name: row["state"] for name, row in switched["before"].items()}
    assert states == {
        "done": "done", "failed": "failed", "cancelled": "cancelled", "eta": "pending",
        "enqueued": "enqueued", "started": "started",
        "a": "done", "b": "pending", "c": "wait_dependencies",
        "d": "done", "e": "pending", "f": "wait_dependencies",
        "g": "failed", "h": "wait_dependencies",
    }


def test_update_log_is_clean(switched):
    log = switched["update_log"]
    assert "Adopted the jobs of OCA's queue_job" in log
    assert [line for line in log.splitlines() if " ERROR " in line or " WARNING " in line] == []


def test_no_job_lost_and_history_kept(switched):
    before = switched["before"]
    after = jobs_by_name(switched["uuids"])
    assert {row["id"] for row in after.values()} == {row["id"] for row in before.values()}
    for name in ("done", "failed", "a", "d", "g"):
        assert {key: after[name][key] for key in ("state", *HISTORY)} == {
            key: before[name][key] for key in ("state", *HISTORY)
        }, name
    assert after["failed"]["exc_info"] and "no_such_field" in after["failed"]["exc_info"]
    assert after["done"]["result"]
    assert after["cancelled"]["state"] == "cancelled"
    assert after["cancelled"]["date_done"] == before["cancelled"]["date_cancelled"]
    assert all(row["record_ids"] == [switched["partner"]] for row in after.values())
    assert not column_exists("queue_job", "dependencies")
    assert not query("SELECT 1 FROM pg_tables WHERE tablename = 'queue_job_lock'")


def test_links_became_edges_and_counters(switched):
    uuids = switched["uuids"]
    assert edges(uuids) == {
        ("c", "a"): True, ("c", "b"): False,
        ("e", "d"): True, ("f", "e"): False,
        ("h", "g"): False,
    }
    after = jobs_by_name(uuids)
    summary = {
        name: (row["state"], row["pending_dependency_count"], row["exc_name"])
        for name, row in after.items() if name in ("b", "c", "e", "f", "h")
    }
    assert summary == {
        "b": ("pending", 0, None),
        "c": ("wait_dependencies", 1, None),
        "e": ("pending", 0, None),
        "f": ("wait_dependencies", 1, None),
        "h": ("failed", 1, "DependencyFailed"),
    }
    assert after["enqueued"]["state"] == "pending"
    # The older twin keeps the identity key, which our unique index allows once.
    assert (after["enqueued"]["identity_key"], after["b"]["identity_key"]) == ("twins", None)
    assert (after["started"]["state"], after["started"]["retry"]) == ("started", 1)


def test_our_runner_runs_them_all(switched):
    uuids = switched["uuids"]
    before = switched["before"]
    server = OdooServer(switched["tmp_path"] / "runner.log", DB, ADDONS)
    server.start()
    try:
        runnable = ("b", "c", "e", "f", "enqueued", "started")
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
        while True:
            after = jobs_by_name(uuids)
            if all(after[name]["state"] == "done" for name in runnable):
                break
            assert datetime.datetime.now() < deadline, {n: after[n]["state"] for n in runnable}
            time.sleep(0.5)
        now = query("SELECT now() AT TIME ZONE 'UTC'")[0][0]
        if now < after["eta"]["eta"]:
            assert after["eta"]["state"] == "pending", "not before its eta"
        deadline = after["eta"]["eta"] + datetime.timedelta(seconds=30)
        while after["eta"]["state"] != "done":
            assert query("SELECT now() AT TIME ZONE 'UTC'")[0][0] < deadline, after["eta"]
            time.sleep(0.5)
            after = jobs_by_name(uuids)
    finally:
        server.kill()
    assert after["eta"]["date_started"] >= after["eta"]["eta"]
    # The callback ran after both members, the chain in its order.
    assert after["c"]["date_started"] >= max(after["a"]["date_done"], after["b"]["date_done"])
    assert after["f"]["date_started"] >= after["e"]["date_done"]
    # The started job was rescued: its try under OCA counts, then ours.
    assert after["started"]["retry"] == 2
    # What had ended stays as it ended.
    for name in ("done", "failed", "cancelled", "a", "d", "g"):
        assert after[name]["state"] == before[name]["state"], name
    assert (after["h"]["state"], after["h"]["exc_name"]) == ("failed", "DependencyFailed")
    # Each job posted its body once: the try of 'started' that died left nothing.
    posted = ["done", "eta", "enqueued", "started", "a", "b", "c", "d", "e", "f"]
    bodies = [body for (body,) in query(
        "SELECT regexp_replace(body, '<[^>]*>', '', 'g') FROM mail_message"
        " WHERE model = 'res.partner' AND res_id = %s",
        (switched["partner"],),
    )]
    assert sorted(body for body in bodies if body in posted + ["h"]) == sorted(posted)


def test_a_database_of_ours_updates_as_before(tmp_path):
    """From 19.0.1.0.0, the migration steps run and find no OCA layout: nothing changes."""
    odoo_shell(
        "from odoo.addons.queue_job.delay import group\n"
        "record = env['test.queue.job'].create({'name': 'switch'})\n"
        "group(record.delayable().increment(1), record.delayable().increment(2))"
        ".on_done(record.delayable().increment(3)).delay()\n",
        E2E_DB, ADDONS,
    )
    query("UPDATE ir_module_module SET latest_version = '19.0.1.0.0' WHERE name = 'queue_job'",
          db=E2E_DB)
    tables = ("queue_job", "queue_job_dependency")
    before = [query(f"SELECT * FROM {table} ORDER BY 1, 2", db=E2E_DB) for table in tables]
    log = odoo(E2E_DB, f"--addons-path={ADDONS}", "-u", "queue_job",
               log=tmp_path / "update.log", timeout=600)
    assert "Running migration [>19.0.3.0.0] pre-migration" in log
    assert "Running migration [19.0.3.0.0>] post-migration" in log
    assert "Adopted the jobs" not in log
    assert [line for line in log.splitlines() if " ERROR " in line or " WARNING " in line] == []
    assert [query(f"SELECT * FROM {table} ORDER BY 1, 2", db=E2E_DB) for table in tables] == before
    assert query("SELECT latest_version FROM ir_module_module WHERE name = 'queue_job'",
                 db=E2E_DB) == [("19.0.3.0.0",)]
