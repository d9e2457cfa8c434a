# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Chaos: 2,000 jobs on 3 runner processes that are killed, cut off and restarted under them.

The runners are real Odoo servers (``odoo --load=base,web,queue_job
--no-http``), the documented way to run the jobrunner, so that the Odoo
binding, Odoo's connection pool and the ORM's transactions go through the
chaos too (the plain-psycopg2 runner of ``tests/pure`` would leave them
out). They serve a copy of ``dev/test``'s database (``QUEUE_JOB_E2E_DB``,
where queue_job and test_queue_job are installed) in a PostgreSQL cluster of
the test's own (``private_postgres.py``), because the test restarts it: the
shared cluster serves other tests. Copying takes seconds, installing the
modules again a minute.

Each job (``test.queue.job.hold_a_slot``, in channel ``root.chaos:3``) takes
one of 3 numbered advisory-lock slots without waiting, sleeps 10 to 50 ms
and logs its run, keyed by its uuid, in ``test_queue_job_log`` (no unique
constraint: a second commit would be a second row), all in its own
transaction. Each runner has 4 executors (``root:4``): 12 compete for 3
places. While they drain the queue, a controller carries out, in a random
order and spread over the drain (one each time another fifteenth of the
jobs is done), 6 SIGKILLs of a runner that runs a job, each followed by the
start of a new runner, 6 cuts (``pg_terminate_backend``) of the connections
that run a runner's jobs (those that hold a liveness lock), and, in the
middle, a restart of the cluster (``-m immediate``, as a crash). A monitor
samples the number of started jobs of the channel and of slots held.

At the end every job is done; each job has exactly one log row; no job found
all slots taken, and neither sampled count exceeded the capacity. The chaos
is random; ``QUEUE_JOB_CHAOS_SEED`` replays a run's choices (the seed is in
the failure messages).
"""

import collections
import os
import random
import signal
import subprocess
import threading
import time

import psycopg2
import pytest
from odoo_process import OdooServer, odoo_shell
from private_postgres import PrivateCluster

SOURCE_DB = os.environ.get("QUEUE_JOB_E2E_DB")
ADDONS = os.environ.get("QUEUE_JOB_E2E_ADDONS")

pytestmark = pytest.mark.skipif(not SOURCE_DB, reason="needs QUEUE_JOB_E2E_DB (run by dev/test)")

DB = "queue_job_chaos"
JOBS = 2000
RUNNERS = 3
CAPACITY = 3
CHANNELS = f"root:4,root.chaos:{CAPACITY}"
# A job's tries: a try that chaos interrupts counts, and a job may be hit
# more than the default 5 times without anything being wrong.
MAX_RETRIES = 50
SECONDS_PER_JOB = (0.01, 0.05)
KILLS = CUTS = 6
DRAIN_TIMEOUT = 240.0
LIVENESS_NAMESPACE = 1_903_520_354  # core/claim.py's LOCK_NAMESPACE
SLOT_NAMESPACE = 1_903_520_355  # test_queue_job's SLOT_LOCK_NAMESPACE
SEED = int(os.environ.get("QUEUE_JOB_CHAOS_SEED", time.time_ns() % 10**6))


@pytest.fixture
def cluster():
    cluster = PrivateCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def database(cluster):
    """``dev/test``'s database copied into ``cluster``, without its jobs and logs."""
    server = Queries(cluster.dsn("postgres"))
    server.fetchall(f'CREATE DATABASE "{DB}"')
    server.close()
    dump = subprocess_pipe(
        [os.path.join(cluster.bindir, "pg_dump"), "-Fc", SOURCE_DB],
        [os.path.join(cluster.bindir, "pg_restore"), "--no-owner", "--exit-on-error",
         "-h", cluster.host, "-p", str(cluster.port), "-d", DB],
    )
    assert dump == 0, "copying the database failed"
    copy = Queries(cluster.dsn(DB))
    copy.fetchall("DELETE FROM queue_job; DELETE FROM test_queue_job_log")
    copy.close()
    return DB


def subprocess_pipe(first, second):
    """Run ``first | second``; return the first non-zero exit status, or 0."""
    producer = subprocess.Popen(first, stdout=subprocess.PIPE)
    consumer = subprocess.Popen(second, stdin=producer.stdout)
    producer.stdout.close()
    statuses = producer.wait(), consumer.wait()
    return next((status for status in statuses if status), 0)


class Queries:
    """Queries on ``dsn`` that wait out a restart of the server (up to 60 s)."""

    def __init__(self, dsn):
        self.dsn = dsn
        self._conn = None

    def fetchall(self, query, params=None):
        """The rows of ``query`` (None for a statement that returns none)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                if self._conn is None:
                    self._conn = psycopg2.connect(self.dsn)
                    self._conn.autocommit = True
                with self._conn.cursor() as cr:
                    cr.execute(query, params)
                    return cr.fetchall() if cr.description else None
            except psycopg2.Error as exc:
                # A connection the server ended fails with an OperationalError,
                # or a plain DatabaseError without an SQLSTATE.
                if exc.pgcode is not None and exc.pgcode[:2] not in ("08", "57"):
                    raise
                self.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def value(self, query, params=None):
        return self.fetchall(query, params)[0][0]

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Monitor(threading.Thread):
    """Samples the started jobs of root.chaos and the slots held; keeps the maxima."""

    def __init__(self, dsn):
        super().__init__(daemon=True)
        self.queries = Queries(dsn)
        self.stopping = threading.Event()
        self.max_started = self.max_slots = self.samples = 0

    def run(self):
        while not self.stopping.is_set():
            started, slots = self.queries.fetchall(
                "SELECT (SELECT count(*) FROM queue_job"
                "         WHERE channel = 'root.chaos' AND state = 'started'),"
                "       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                "         AND classid = %s::oid AND granted)",
                (SLOT_NAMESPACE,),
            )[0]
            self.max_started = max(self.max_started, started)
            self.max_slots = max(self.max_slots, slots)
            self.samples += 1
            time.sleep(0.005)
        self.queries.close()


class Runners:
    """The runner processes, each logging to a file of its own."""

    def __init__(self, cluster, log_dir):
        self._cluster = cluster
        self._log_dir = log_dir
        self.started = []
        self.alive = []

    def launch(self):
        runner = OdooServer(
            self._log_dir / f"runner-{len(self.started)}.log",
            DB,
            ADDONS,
            environ={"ODOO_QUEUE_JOB_CHANNELS": CHANNELS},
            options=[f"--db_host={self._cluster.host}", f"--db_port={self._cluster.port}",
                     "--no-http", "--max-cron-threads=0"],
        )
        runner.launch()
        self.started.append(runner)
        self.alive.append(runner)

    def kill(self, runner):
        runner.kill(signal.SIGKILL)
        self.alive.remove(runner)

    def kill_all(self):
        for runner in list(self.alive):
            self.kill(runner)

    def log_tails(self, lines=15):
        return "\n".join(
            f"--- {runner.log_path.name} (pid {runner.process.pid}):\n"
            + "\n".join(runner.log_path.read_text().splitlines()[-lines:])
            for runner in self.started
        )


@pytest.fixture
def runners(cluster, tmp_path):
    runners = Runners(cluster, tmp_path)
    yield runners
    runners.kill_all()


def enqueue(cluster, count):
    """Delay ``count`` jobs of ``hold_a_slot`` in root.chaos, from ``odoo shell``."""
    rng = random.Random(SEED)
    seconds = [round(rng.uniform(*SECONDS_PER_JOB), 3) for _ in range(count)]
    odoo_shell(
        "env['queue.job.channel'].create("
        "    {'name': 'chaos', 'parent_id': env.ref('queue_job.channel_root').id})\n"
        "record = env['test.queue.job'].create({'name': 'chaos'})\n"
        f"for seconds in {seconds!r}:\n"
        f"    record.with_delay(channel='root.chaos', max_retries={MAX_RETRIES})"
        f".hold_a_slot({CAPACITY}, seconds)\n",
        DB,
        ADDONS,
        options=[f"--db_host={cluster.host}", f"--db_port={cluster.port}"],
    )


_RUNNING_JOBS = (
    "FROM pg_stat_activity a WHERE EXISTS ("
    " SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted"
    " AND l.classid = %s::oid AND l.objsubid = 2 AND l.objid != 0)"
)


def working_runners(queries, runners):
    """The runners that run a job now: one of their connections holds a liveness lock."""
    names = {
        name for (name,) in queries.fetchall(
            f"SELECT DISTINCT a.application_name {_RUNNING_JOBS}", (LIVENESS_NAMESPACE,)
        )
    }
    return [runner for runner in runners.alive if f"odoo-{runner.process.pid}" in names]


def cut_connections(queries, runner):
    """End the connections on which ``runner`` runs jobs; return how many."""
    return queries.value(
        f"SELECT count(pg_terminate_backend(a.pid)) {_RUNNING_JOBS} AND a.application_name = %s",
        (LIVENESS_NAMESPACE, f"odoo-{runner.process.pid}"),
    )


def test_jobs_survive_kills_cut_connections_and_a_restart(cluster, database, runners):
    queries = Queries(cluster.dsn(DB))
    monitor = Monitor(cluster.dsn(DB))
    monitor.start()
    # They start (several seconds) while the jobs are delayed.
    for _ in range(RUNNERS):
        runners.launch()
    launched = time.monotonic()
    enqueue(cluster, JOBS)
    rng = random.Random(SEED)
    # In a random order, with the restart in the middle, each once a
    # fraction more of the jobs is done: spread over the drain, however
    # fast it goes.
    plan = ["kill"] * KILLS + ["cut"] * CUTS
    rng.shuffle(plan)
    plan.insert(len(plan) // 2, "restart")
    due_at = [JOBS * (number + 1) // (len(plan) + 2) for number in range(len(plan))]
    chaos = collections.Counter()
    began = time.monotonic()
    done = 0
    while done < JOBS and time.monotonic() - began < DRAIN_TIMEOUT:
        time.sleep(0.1)
        done = queries.value("SELECT count(*) FROM queue_job WHERE state = 'done'")
        if not plan or done < due_at[0] or done == JOBS:
            continue
        working = working_runners(queries, runners)
        if not working:  # the kill or the cut would hit no running job
            continue
        event = plan.pop(0)
        due_at.pop(0)
        if event == "restart":
            cluster.restart()
        elif event == "kill":
            runners.kill(rng.choice(working))
            runners.launch()
        else:
            chaos["connections cut"] += cut_connections(queries, rng.choice(working))
        chaos[event] += 1
    drained = time.monotonic() - began
    monitor.stopping.set()
    monitor.join()
    runners.kill_all()

    context = (
        f"seed {SEED}, delayed in {began - launched:.0f}s, drained in {drained:.0f}s,"
        f" chaos {dict(chaos)}, {monitor.samples} samples\n" + runners.log_tails()
    )
    unfinished = queries.fetchall(
        "SELECT id, state, retry, exc_name, exc_message FROM queue_job"
        " WHERE state != 'done' ORDER BY id"
    )
    assert not unfinished, f"{len(unfinished)} job(s) not done: {unfinished[:20]}\n{context}"
    runs = queries.fetchall(
        "SELECT j.id, j.retry, count(l.id) FROM queue_job j"
        "  LEFT JOIN test_queue_job_log l ON l.job_uuid = j.uuid"
        " GROUP BY j.id HAVING count(l.id) != 1 ORDER BY j.id"
    )
    assert not runs, f"jobs committed other than once (id, tries, commits): {runs[:20]}\n{context}"
    assert queries.value("SELECT count(*) FROM test_queue_job_log") == JOBS, context
    overruns = queries.value("SELECT count(*) FROM test_queue_job_log WHERE tag = 'no free slot'")
    assert not overruns, f"{overruns} job(s) found all {CAPACITY} slots taken\n{context}"
    assert monitor.max_started <= CAPACITY, f"{monitor.max_started} started at once\n{context}"
    assert monitor.max_slots <= CAPACITY, f"{monitor.max_slots} slots held at once\n{context}"
    # The capacity was reached (12 executors for 3 places), and chaos hit running jobs.
    assert monitor.max_started == CAPACITY, context
    assert not plan, f"chaos left undone: {plan}\n{context}"
    assert chaos["connections cut"] >= CUTS, context
    interrupted = queries.value("SELECT count(*) FROM queue_job WHERE retry > 1")
    assert interrupted >= 5, f"only {interrupted} job(s) ran more than once\n{context}"
    queries.close()
    print(f"chaos: {context.splitlines()[0]}, {interrupted} job(s) interrupted")
