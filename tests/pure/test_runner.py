# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Runner processes (runner_process.py) against a real database: capacity across
processes, exactly-once execution, rescue after kill -9, pickup, stop, bad config,
time limits and the cancel of a running job."""

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import closing
from datetime import timedelta

import psycopg2
import pytest
from conftest import create_database, drop_database
from jobs import insert_graph, insert_job, set_channel
from psycopg2.extensions import parse_dsn
from runner_process import APPLICATION_NAME, JOB_TIMEOUT, PsycopgBinding

from queue_job.core import schema, transitions
from queue_job.core.channels import Channels
from queue_job.core.claim import LOCK_NAMESPACE, WORKER_DIED
from queue_job.core.transitions import DEPENDENCY_CANCELLED
from queue_job.jobrunner.runner import (
    RECONNECT_DELAY,
    RECONNECT_DELAY_MAX,
    RESCUE_INTERVAL,
    Runner,
)

RUNNER_PROCESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner_process.py")


def make_served(dsn):
    """Make database ``dsn`` one that a runner serves: queue_job installed, executions recorded."""
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cr:
        cr.execute("CREATE TABLE ir_module_module (name varchar, state varchar)")
        cr.execute("INSERT INTO ir_module_module VALUES ('queue_job', 'installed')")
        cr.execute(
            """CREATE TABLE job_execution (id serial PRIMARY KEY, job_id integer,
                   pid integer, started timestamp with time zone,
                   wrote timestamp with time zone, ended timestamp with time zone)"""
        )
    return dsn


@pytest.fixture(scope="module")
def served_database(database):
    """The test database as a runner serves it."""
    return make_served(database)


@pytest.fixture(scope="module")
def other_served_database():
    """A second database that a runner serves, dropped at the end."""
    dsn = make_served(create_database())
    yield dsn
    drop_database(dsn)


@pytest.fixture
def db(served_database, conn):
    """A connection on emptied queue_job and job_execution tables."""
    run_sql(conn, "TRUNCATE job_execution")
    return conn


@pytest.fixture
def start_runner(served_database, tmp_path):
    """Start runner processes; those still alive are killed after the test."""
    processes = []

    def start(channels="root:2", *db_names):
        log_path = tmp_path / f"runner-{len(processes)}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    RUNNER_PROCESS,
                    served_database,
                    channels,
                    *(db_names or [parse_dsn(served_database)["dbname"]]),
                ],
                stderr=log,
            )
        process.log_path = log_path
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def run_sql(conn, query, params=None):
    with conn, conn.cursor() as cr:
        cr.execute(query, params)
        return cr.fetchall() if cr.description else None


def insert_jobs(conn, seconds, count=1):
    """Insert ``count`` fake jobs that run for ``seconds``."""
    with conn, conn.cursor() as cr:
        return [insert_job(cr, name=str(seconds)) for _ in range(count)]


def wait_for(predicate, timeout, message):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, message
        time.sleep(0.02)
    return result


def wait_until_done(conn, job_ids, timeout):
    wait_for(
        lambda: run_sql(
            conn,
            "SELECT count(*) = %s FROM queue_job WHERE state = 'done' AND id = ANY(%s)",
            (len(job_ids), job_ids),
        )[0][0],
        timeout,
        "jobs not done in time",
    )


def executions(conn, job_id):
    return run_sql(
        conn,
        "SELECT pid, started, ended FROM job_execution WHERE job_id = %s ORDER BY id",
        (job_id,),
    )


def log_lines(process):
    return [line for line in process.log_path.read_text().splitlines() if line.strip()]


def test_two_runners_share_capacity_and_run_each_job_once(db, start_runner):
    job_ids = insert_jobs(db, 0.2, count=200)
    runners = [start_runner("root:2"), start_runner("root:2")]
    wait_until_done(db, job_ids, timeout=45)
    rows = run_sql(db, "SELECT job_id, pid, started, ended FROM job_execution")
    assert sorted(job_id for job_id, *_ in rows) == sorted(job_ids), "each job runs once"
    assert {pid for _, pid, *_ in rows} == {runner.pid for runner in runners}
    # At each start or end of an execution, count those in progress; an end
    # sorts before a start at the same instant.
    events = sorted([(started, 1) for *_, started, _ in rows] + [(ended, -1) for *_, ended in rows])
    in_progress, most = 0, 0
    for _, change in events:
        in_progress += change
        most = max(most, in_progress)
    assert most == 2
    assert run_sql(db, "SELECT state, retry, count(*) FROM queue_job GROUP BY 1, 2") == [
        ("done", 1, 200)
    ]
    for runner in runners:
        assert "Traceback" not in runner.log_path.read_text()


def test_job_of_a_killed_runner_is_rescued_by_the_other(db, start_runner):
    runners = {runner.pid: runner for runner in (start_runner(), start_runner())}
    [job_id] = insert_jobs(db, 1.5)
    [(victim, _, _)] = wait_for(lambda: executions(db, job_id), 10, "job never started")
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: len(executions(db, job_id)) == 2, RESCUE_INTERVAL + 2, "not rescued in time")
    rescue_time = time.monotonic() - killed_at
    wait_until_done(db, [job_id], timeout=5)
    (first_pid, _, first_end), (second_pid, _, second_end) = executions(db, job_id)
    assert (first_pid, first_end) == (victim, None)
    assert second_pid in set(runners) - {victim} and second_end is not None
    assert run_sql(db, "SELECT state, retry FROM queue_job WHERE id = %s", (job_id,)) == [
        ("done", 2)
    ]
    assert rescue_time <= RESCUE_INTERVAL + 1
    rescuer_log = runners[second_pid].log_path.read_text()
    assert f"requeued job(s) [{job_id}], whose worker died" in rescuer_log


def test_job_whose_execution_raises_is_unlocked_and_rescued(db, start_runner):
    """An error outside the job's own code (the fake job fails to parse its name)."""
    runner = start_runner("root:1")
    with db, db.cursor() as cr:
        job_id = insert_job(cr, name="not seconds", max_retries=1)
    wait_for(
        lambda: run_sql(db, "SELECT state FROM queue_job WHERE id = %s", (job_id,))[0][0]
        == "failed",
        RESCUE_INTERVAL + 2,
        "not rescued in time",
    )
    assert run_sql(db, "SELECT retry, exc_name FROM queue_job WHERE id = %s", (job_id,)) == [
        (1, WORKER_DIED)
    ]
    log = runner.log_path.read_text()
    assert "executor error" in log
    # Unlocked before its connection was given back, and by no one else.
    assert "liveness lock" not in log
    # The executor goes on with the next job.
    wait_until_done(db, insert_jobs(db, 0), timeout=5)


def test_runner_waits_for_the_module_update_of_an_outdated_database(db, start_runner):
    with db, db.cursor() as cr:
        cr.execute(
            f"COMMENT ON FUNCTION {schema.CLAIM_FUNCTION} IS 'queue_job schema 1'"
        )
    try:
        runner = start_runner("root:1")
        wait_for(
            lambda: "odoo -u queue_job" in runner.log_path.read_text(), 5, "no warning"
        )
        [job_id] = insert_jobs(db, 0)
        time.sleep(0.5)
        assert executions(db, job_id) == []
    finally:
        with db, db.cursor() as cr:
            schema.ensure(cr)
    wait_until_done(db, [job_id], timeout=RECONNECT_DELAY_MAX + 2)
    log = runner.log_path.read_text()
    assert log.count("odoo -u queue_job") == 1, "said once"
    assert "Traceback" not in log


def cpu_seconds(pid):
    """User and system CPU time of process ``pid`` (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_runner_sleeps_and_picks_up_a_new_job_quickly(db, start_runner):
    runner = start_runner("root:2")
    wait_until_done(db, insert_jobs(db, 0), timeout=10)
    time.sleep(0.2)
    cpu_before = cpu_seconds(runner.pid)
    time.sleep(1.5)  # idle: the executors sleep, the dispatcher waits
    assert cpu_seconds(runner.pid) - cpu_before < 0.1
    [job_id] = insert_jobs(db, 0)
    [(committed_at,)] = run_sql(db, "SELECT clock_timestamp()")
    [(_, started, _)] = wait_for(lambda: executions(db, job_id), 5, "job never started")
    assert (started - committed_at).total_seconds() < 1


def insert_job_due_in(conn, seconds):
    """Insert a job that does nothing, with an eta ``seconds`` from now; (its id, its eta)."""
    with conn, conn.cursor() as cr:
        job_id = insert_job(cr, name="0")
        cr.execute(
            "UPDATE queue_job SET eta = (clock_timestamp() AT TIME ZONE 'UTC')"
            " + make_interval(secs => %s) WHERE id = %s RETURNING eta",
            (seconds, job_id),
        )
        return job_id, cr.fetchone()[0]


def test_runner_wakes_up_for_an_eta(db, start_runner):
    start_runner("root:1")
    warm_up = insert_jobs(db, 0)
    wait_until_done(db, warm_up, timeout=10)
    job_id, eta = insert_job_due_in(db, 1.5)
    [(_, started, _)] = wait_for(lambda: executions(db, job_id), 5, "job never started")
    [(lateness,)] = run_sql(
        db, "SELECT EXTRACT(EPOCH FROM (%s AT TIME ZONE 'UTC') - %s)", (started, eta)
    )
    assert 0 <= lateness < 1


def test_runner_reconnects_after_losing_its_connections(db, start_runner):
    runner = start_runner("root:1")
    wait_until_done(db, insert_jobs(db, 0), timeout=10)
    [(terminated,)] = run_sql(
        db,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = %s AND datname = current_database()",
        (APPLICATION_NAME,),
    )
    assert terminated >= 1
    while_away = insert_jobs(db, 0)
    wait_for(
        lambda: "connected again" in runner.log_path.read_text(),
        RECONNECT_DELAY + 2,
        "did not reconnect",
    )
    wait_until_done(db, while_away, timeout=2)
    # Listening again: a new job is picked up on its notification.
    time.sleep(0.2)
    wait_until_done(db, insert_jobs(db, 0), timeout=1)
    log = runner.log_path.read_text()
    assert log.count("lost the connection") == 1
    assert "Traceback" not in log


def test_sigterm_lets_the_running_job_finish_and_claims_no_more(db, start_runner):
    runner = start_runner("root:1")
    [running, waiting] = insert_jobs(db, 1, count=2)
    wait_for(lambda: executions(db, running), 10, "job never started")
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=10) == 0
    states = dict(run_sql(db, "SELECT id, state FROM queue_job"))
    assert states == {running: "done", waiting: "pending"}
    assert executions(db, waiting) == []


@pytest.mark.parametrize("grace_period", [None, 0.3])
def test_stop_waits_for_running_jobs_as_long_as_asked(db, served_database, grace_period):
    """In process: the prefork worker's stop at its soft memory limit (None)
    and at a server stop (a grace period)."""
    binding = PsycopgBinding(served_database, [parse_dsn(served_database)["dbname"]])
    runner = Runner(binding, Channels.parse("root:1"))
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        [running, waiting] = insert_jobs(db, 1.5, count=2)
        wait_for(lambda: executions(db, running), 10, "job never started")
        runner.stop(grace_period)
        thread.join(10)
        assert not thread.is_alive()
        [(_, _, ended)] = executions(db, running)
        if grace_period is None:
            assert ended is not None, "the running job finished first"
        else:
            assert ended is None, "left running after its grace period"
        assert executions(db, waiting) == [], "no claim after the stop"
    finally:
        runner.stop()
        thread.join(10)
        wait_for(lambda: executions(db, running)[0][2], 5, "the job never ended")


def insert_channel_jobs(conn, channel, seconds, count=1):
    with conn, conn.cursor() as cr:
        return [insert_job(cr, name=str(seconds), channel=channel) for _ in range(count)]


def test_two_runners_run_a_sequential_channel_one_job_at_a_time_in_order(db, start_runner):
    job_ids = insert_channel_jobs(db, "root.seq", 0.1, count=12)
    insert_channel_jobs(db, "root.other", 0.1, count=12)
    runners = [start_runner("root:4,root.seq:1:sequential") for _ in range(2)]
    wait_until_done(db, job_ids, timeout=20)
    rows = run_sql(
        db,
        "SELECT job_id, pid, started, ended FROM job_execution WHERE job_id = ANY(%s)"
        " ORDER BY started",
        (job_ids,),
    )
    assert [job_id for job_id, *_ in rows] == job_ids, "in order, each once"
    for (*_, ended), (_, _, started, _) in zip(rows, rows[1:]):
        assert ended <= started, "one at a time"
    for runner in runners:
        assert "Traceback" not in runner.log_path.read_text()


def test_runner_holds_a_sequential_channel_while_its_job_is_failed(db, start_runner):
    with db, db.cursor() as cr:
        failed = insert_job(cr, state="failed", channel="root.seq")
    [waiting] = insert_channel_jobs(db, "root.seq", 0)
    other = insert_channel_jobs(db, "root.other", 0)
    start_runner("root:4,root.seq:1:sequential")
    wait_until_done(db, other, timeout=10)
    time.sleep(0.5)
    assert executions(db, waiting) == []
    with db, db.cursor() as cr:
        transitions.mark_done(cr, [failed], ("failed",))  # Set Done, say
    wait_until_done(db, [waiting], timeout=1)


def test_two_runners_space_the_starts_of_a_throttled_channel(db, start_runner):
    job_ids = insert_channel_jobs(db, "root.t", 0, count=4)
    runners = [start_runner("root:4,root.t:4:throttle=1") for _ in range(2)]
    wait_until_done(db, job_ids, timeout=15)
    # The claims' clock: a job's execution may begin a little after its claim.
    starts = [
        started
        for (started,) in run_sql(
            db,
            "SELECT date_started FROM queue_job WHERE id = ANY(%s) ORDER BY date_started",
            (job_ids,),
        )
    ]
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(starts, starts[1:])]
    assert len(gaps) == 3 and min(gaps) >= 1, gaps
    # Woken at the end of each delay, not at the next periodic rescue.
    assert max(gaps) < 1.5, gaps
    for runner in runners:
        assert "Traceback" not in runner.log_path.read_text()


def runner_connections(conn):
    """Connections of runner processes to ``conn``'s database, now."""
    return run_sql(
        conn,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = %s AND datname = current_database()",
        (APPLICATION_NAME,),
    )[0][0]


def test_a_runner_serving_several_databases_bounds_connections_per_database(
    db, other_served_database, start_runner, connect
):
    other = psycopg2.connect(other_served_database)
    try:
        databases = {parse_dsn(dsn)["dbname"]: conn for dsn, conn in (
            (db.dsn, db), (other_served_database, other))}
        jobs = {name: insert_jobs(conn, 0.3, count=6) for name, conn in databases.items()}
        runner = start_runner("root:2", *databases)
        most = dict.fromkeys(databases, 0)
        while not all(
            run_sql(conn, "SELECT bool_and(state = 'done') FROM queue_job WHERE id = ANY(%s)",
                    (jobs[name],))[0][0]
            for name, conn in databases.items()
        ):
            for name, conn in databases.items():
                most[name] = max(most[name], runner_connections(conn))
            time.sleep(0.05)
        # Two executors and the LISTEN connection (the discovery's come and go).
        assert all(1 <= count <= 3 for count in most.values()), most
        log = runner.log_path.read_text()
        for name in databases:
            assert log.count(f"serving database {name} with channels") == 1
            assert f"database {name}: channels in force: root:2: up to 3 connections" in log
        assert "Traceback" not in log
    finally:
        other.close()


@pytest.mark.parametrize("level_of", ["database", "role"])
def test_runners_on_a_database_whose_default_is_repeatable_read(db, start_runner, level_of):
    """Claims, rescue and eta wake-ups start their transactions in READ COMMITTED."""
    [(dbname,)] = run_sql(db, "SELECT current_database()")
    target = {"database": f'DATABASE "{dbname}"', "role": f'ROLE CURRENT_USER IN DATABASE "{dbname}"'}
    run_sql(db, f"ALTER {target[level_of]} SET default_transaction_isolation = 'repeatable read'")
    try:
        with closing(psycopg2.connect(db.dsn)) as probe, probe.cursor() as cr:
            cr.execute("SHOW default_transaction_isolation")
            assert cr.fetchone() == ("repeatable read",)
        runners = {runner.pid: runner for runner in (start_runner("root:2"), start_runner("root:2"))}
        job_ids = insert_jobs(db, 0.05, count=40)
        wait_until_done(db, job_ids, timeout=20)
        rows = run_sql(db, "SELECT job_id FROM job_execution WHERE job_id = ANY(%s)", (job_ids,))
        assert sorted(job_id for (job_id,) in rows) == sorted(job_ids), "each job runs once"
        # The rescue, after kill -9 of the runner running a job.
        [job_id] = insert_jobs(db, 1.5)
        [(victim, _, _)] = wait_for(lambda: executions(db, job_id), 10, "job never started")
        os.kill(victim, signal.SIGKILL)
        wait_until_done(db, [job_id], timeout=RESCUE_INTERVAL + 5)
        # An eta wakes the survivor.
        job_id, _eta = insert_job_due_in(db, 1)
        wait_until_done(db, [job_id], timeout=3)
        for pid, runner in runners.items():
            if pid != victim:
                log = runner.log_path.read_text()
                assert "Traceback" not in log and "could not serialize" not in log
    finally:
        run_sql(db, f"ALTER {target[level_of]} RESET default_transaction_isolation")


@pytest.mark.parametrize(
    "channels, db_name, message",
    [
        ("root:0", None, "capacity must be a positive integer"),
        ("root:2,root.a:x", None, "capacity must be a positive integer, or 0 for no limit, not 'x'"),
        ("root:2,root.a:2:sequential", None, "a sequential channel must have a capacity of 1"),
        ("root:2", "no_such_database_for_queue_job", "do not exist"),
    ],
)
def test_bad_configuration_stops_with_one_line(start_runner, channels, db_name, message):
    runner = start_runner(channels, *([db_name] if db_name else []))
    assert runner.wait(timeout=10) == 2
    [line] = log_lines(runner)
    assert message in line and "not started" in line


def job_state(conn, job_id):
    return run_sql(
        conn, "SELECT state, exc_name, exc_message FROM queue_job WHERE id = %s", (job_id,)
    )[0]


def holds_liveness_lock(conn, job_id):
    [(held,)] = run_sql(
        conn,
        "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
        " AND classid = %s::oid AND objid = %s::oid"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (LOCK_NAMESPACE, job_id),
    )
    return held


@pytest.mark.parametrize(
    "channels, channel, job_timeout, limit",
    [
        ("root:1", "root", 2, 2),  # the job's own
        ("root:1,root.t:1:timeout=2", "root.t.sub", None, 2),  # its channel's ancestor's
        ("root:1:timeout=60", "root", 1.5, 1.5),  # the job's own before its channel's
    ],
)
def test_job_past_its_time_limit_fails_and_the_next_job_runs(
    db, start_runner, channels, channel, job_timeout, limit
):
    runner = start_runner(channels)
    with db, db.cursor() as cr:
        job_id = insert_job(cr, name="60", channel=channel, timeout=job_timeout)
        next_id = insert_job(cr, name="0", channel=channel)
    [(_, started, _)] = wait_for(lambda: executions(db, job_id), 10, "job never started")
    wait_for(lambda: job_state(db, job_id)[0] == "failed", 5, "job not stopped in time")
    [(elapsed,)] = run_sql(db, "SELECT EXTRACT(EPOCH FROM clock_timestamp() - %s)", (started,))
    assert limit <= elapsed < limit + 2
    assert job_state(db, job_id) == (
        "failed",
        JOB_TIMEOUT,
        f"ran past its time limit of {limit:g} s",
    )
    wait_until_done(db, [next_id], timeout=2)
    # Its transaction was rolled back with its connection, which held its lock.
    assert executions(db, job_id)[0][2] is None
    assert run_sql(db, "SELECT wrote FROM job_execution WHERE job_id = %s", (job_id,)) == [(None,)]
    assert not holds_liveness_lock(db, job_id)
    log = runner.log_path.read_text()
    assert f"stopping job {job_id} " in log and "time limit" in log
    assert "Traceback" not in log and "worker died" not in log


def test_a_stopped_job_frees_its_slot_but_its_thread_adds_no_capacity(db, start_runner):
    runner = start_runner("root:1")
    with db, db.cursor() as cr:
        stopped = insert_job(cr, name="4", timeout=0.5)
    wait_for(lambda: job_state(db, stopped)[0] == "failed", 5, "job not stopped in time")
    # Its thread still sleeps: the new executor takes the jobs one at a time.
    job_ids = insert_jobs(db, 0.3, count=4)
    wait_until_done(db, job_ids, timeout=10)
    rows = run_sql(
        db,
        "SELECT started, ended FROM job_execution WHERE job_id = ANY(%s) ORDER BY started",
        (job_ids,),
    )
    for (_, ended), (started, _) in zip(rows, rows[1:]):
        assert ended <= started, "one at a time"
    [(_, stopped_start, _)] = executions(db, stopped)
    assert rows[-1][1] < stopped_start + timedelta(seconds=4), "while its thread slept"
    # Once its sleep returns, the thread ends, and writes nothing.
    wait_for(
        lambda: f"the abandoned thread of stopped job {stopped} ended"
        in runner.log_path.read_text(),
        5,
        "abandoned thread did not end",
    )
    assert job_state(db, stopped)[:2] == ("failed", JOB_TIMEOUT)
    assert executions(db, stopped)[0][2] is None
    assert "Traceback" not in runner.log_path.read_text()


def test_cancel_of_a_running_job_stops_it_in_its_runner(db, start_runner):
    runner = start_runner("root:2")
    with db, db.cursor() as cr:
        ids = insert_graph(cr, [("after", "running")])
        cr.execute("UPDATE queue_job SET name = '60' WHERE id = %s", (ids["running"],))
    wait_for(lambda: executions(db, ids["running"]), 10, "job never started")
    assert holds_liveness_lock(db, ids["running"])
    with db, db.cursor() as cr:  # a manager's Cancel, in this process
        assert transitions.mark_cancelled(cr, [ids["running"]], ("started",), message="no")
    cancelled_at = time.monotonic()
    wait_for(
        lambda: not holds_liveness_lock(db, ids["running"]), 5, "job's connection not ended"
    )
    assert time.monotonic() - cancelled_at < 2, "stopped on the notification"
    assert job_state(db, ids["running"]) == ("cancelled", None, "no")
    assert job_state(db, ids["after"])[:2] == ("cancelled", DEPENDENCY_CANCELLED)
    assert run_sql(
        db, "SELECT wrote FROM job_execution WHERE job_id = %s", (ids["running"],)
    ) == [(None,)]
    wait_until_done(db, insert_jobs(db, 0, count=2), timeout=2)  # capacity intact
    log = runner.log_path.read_text()
    assert f"stopping job {ids['running']} " in log and "cancelled" in log
    assert "Traceback" not in log
def started_count(conn, channel):
    return run_sql(
        conn,
        "SELECT count(*) FROM queue_job WHERE channel = %s AND state = 'started'",
        (channel,),
    )[0][0]


def wait_for_logs(runners, text, timeout):
    wait_for(
        lambda: all(text in runner.log_path.read_text() for runner in runners),
        timeout,
        f"not every runner says {text!r}",
    )


def test_two_runners_apply_a_capacity_change_and_a_pause_within_a_second(db, start_runner):
    set_channel(db, "root", capacity=4)
    set_channel(db, "root.c", capacity=1)
    runners = [start_runner(""), start_runner("")]
    wait_for_logs(runners, "channels in force: root:4, root.c:1", 10)
    c_jobs = insert_channel_jobs(db, "root.c", 2, count=9)
    wait_for(lambda: started_count(db, "root.c") == 1, 5, "no job started")
    time.sleep(0.3)
    assert started_count(db, "root.c") == 1
    set_channel(db, "root.c", capacity=3)
    wait_for(lambda: started_count(db, "root.c") == 3, 1, "capacity 3 not applied in time")
    wait_for_logs(runners, "channels in force: root:4, root.c:3", 1)
    set_channel(db, "root.c", capacity=3, paused=True)
    wait_for_logs(runners, "channels in force: root:4, root.c:3:paused", 1)
    [(started_before_pause,)] = run_sql(
        db, "SELECT count(*) FROM job_execution WHERE job_id = ANY(%s)", (c_jobs,)
    )
    others = insert_channel_jobs(db, "root.other", 0, count=3)
    wait_until_done(db, others, timeout=2)  # another channel runs meanwhile
    # The running jobs finish; no job of the paused channel starts.
    wait_for(lambda: started_count(db, "root.c") == 0, 5, "running jobs did not finish")
    time.sleep(0.5)
    assert run_sql(
        db, "SELECT count(*) FROM job_execution WHERE job_id = ANY(%s)", (c_jobs,)
    ) == [(started_before_pause,)]
    set_channel(db, "root.c", capacity=3)
    wait_for(lambda: started_count(db, "root.c") == 3, 1, "not resumed in time")
    for runner in runners:
        assert "Traceback" not in runner.log_path.read_text()


def test_two_runners_grow_and_shrink_their_executors_on_roots_capacity(db, start_runner):
    set_channel(db, "root", capacity=1)
    runners = [start_runner(""), start_runner("")]
    wait_for_logs(runners, "channels in force: root:1", 10)
    insert_jobs(db, 1, count=12)
    wait_for(lambda: started_count(db, "root") == 1, 5, "no job started")
    set_channel(db, "root", capacity=6)
    wait_for(lambda: started_count(db, "root") == 6, 1, "capacity 6 not applied in time")
    set_channel(db, "root", capacity=2)
    wait_for_logs(runners, "channels in force: root:2", 1)
    time.sleep(1.2)  # the jobs started at 6 end; 2 run at most from then on
    assert started_count(db, "root") <= 2
    for runner in runners:
        assert "Traceback" not in runner.log_path.read_text()


def test_two_runners_hold_a_rate_limit_over_any_minute(db, start_runner):
    """Three starts 58 s ago: the window frees them in 2 s, for three starts at once."""
    set_channel(db, "root", capacity=4)
    set_channel(db, "root.r", rate_limit=3)
    run_sql(
        db,
        "INSERT INTO queue_job_rate_start (channel, started_at)"
        " SELECT 'root.r', (clock_timestamp() AT TIME ZONE 'UTC') - interval '58 s'"
        " FROM generate_series(1, 3)",
    )
    [(earlier,)] = run_sql(db, "SELECT max(started_at) FROM queue_job_rate_start")
    r_jobs = insert_channel_jobs(db, "root.r", 0, count=7)
    runners = [start_runner(""), start_runner("")]
    time.sleep(1)
    assert run_sql(db, "SELECT count(*) FROM job_execution") == [(0,)]
    wait_for(
        lambda: run_sql(db, "SELECT count(*) FROM job_execution")[0][0] == 3, 3, "no start"
    )
    time.sleep(1.5)
    starts = [
        started
        for (started,) in run_sql(
            db,
            "SELECT date_started FROM queue_job WHERE id = ANY(%s) AND state = 'done'"
            " ORDER BY date_started",
            (r_jobs,),
        )
    ]
    assert len(starts) == 3, "no more than 3 in the minute"
    assert all((start - earlier).total_seconds() >= 60 for start in starts)
    # Woken when the window freed the starts, not at a periodic rescue.
    assert (starts[0] - earlier).total_seconds() < 61
    assert run_sql(
        db, "SELECT count(*) FROM queue_job WHERE id = ANY(%s) AND state = 'pending'", (r_jobs,)
    ) == [(4,)]
    for runner in runners:
        assert "Traceback" not in runner.log_path.read_text()
