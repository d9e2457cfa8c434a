# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Runner processes (runner_process.py) against a real database: capacity across
processes, exactly-once execution, rescue after kill -9, pickup, stop, bad config."""

import os
import signal
import subprocess
import sys
import time
from contextlib import closing

import psycopg2
import pytest
from jobs import insert_job, set_channel
from psycopg2.extensions import parse_dsn
from runner_process import APPLICATION_NAME

from queue_job.core import schema, transitions
from queue_job.core.claim import WORKER_DIED
from queue_job.jobrunner.runner import RECONNECT_DELAY, RECONNECT_DELAY_MAX, RESCUE_INTERVAL

RUNNER_PROCESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner_process.py")


@pytest.fixture(scope="module")
def served_database(database):
    """The test database as a runner serves it: queue_job installed, executions recorded."""
    with closing(psycopg2.connect(database)) as conn, conn, conn.cursor() as cr:
        cr.execute("CREATE TABLE ir_module_module (name varchar, state varchar)")
        cr.execute("INSERT INTO ir_module_module VALUES ('queue_job', 'installed')")
        cr.execute(
            """CREATE TABLE job_execution (id serial PRIMARY KEY, job_id integer,
                   pid integer, started timestamp with time zone,
                   ended timestamp with time zone)"""
        )
    return database


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


def test_runner_wakes_up_for_an_eta(db, start_runner):
    start_runner("root:1")
    warm_up = insert_jobs(db, 0)
    wait_until_done(db, warm_up, timeout=10)
    with db, db.cursor() as cr:
        job_id = insert_job(cr, name="0")
        cr.execute(
            "UPDATE queue_job SET eta = (clock_timestamp() AT TIME ZONE 'UTC') + interval '1.5 s'"
            " WHERE id = %s RETURNING eta",
            (job_id,),
        )
        [eta] = cr.fetchone()
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
