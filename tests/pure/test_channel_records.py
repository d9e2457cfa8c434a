# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Channel records in force: their capacity, pause and rate limit in the claim,
the setting's precedence, the notification of a change, the rate limit's wake-up."""

import select
import time

import pytest
from jobs import insert_job, set_channel

from queue_job.core.channels import SOURCE_DEFAULT, Channels
from queue_job.core.claim import channels_in_force, claim_job, seconds_until_next_eta

NO_SETTING = Channels.parse("", SOURCE_DEFAULT)


def run_sql(conn, query, params=None):
    with conn, conn.cursor() as cr:
        cr.execute(query, params)
        return cr.fetchall() if cr.description else None


def claim(conn, channels=NO_SETTING):
    with conn, conn.cursor() as cr:
        job = claim_job(cr, channels)
    return job and job["id"]


def insert(conn, count=1, **values):
    with conn, conn.cursor() as cr:
        return [insert_job(cr, **values) for _ in range(count)]


def in_force(conn, channels=NO_SETTING):
    with conn, conn.cursor() as cr:
        return channels_in_force(cr, channels)


def test_record_capacities_apply_to_the_next_claim_of_every_connection(connect, conn):
    set_channel(conn, "root", capacity=4)
    set_channel(conn, "root.a", capacity=1)
    a_jobs = insert(conn, count=3, channel="root.a", priority=1)
    [other] = insert(conn, channel="root.b", priority=9)
    assert claim(conn) == a_jobs[0]
    assert claim(connect()) == other  # root.a is full
    set_channel(conn, "root.a", capacity=2)
    assert claim(connect()) == a_jobs[1]
    assert claim(connect()) is None
    set_channel(conn, "root.a", capacity=0)  # no limit of its own: root's 4
    assert claim(connect()) == a_jobs[2]


def test_the_setting_overrides_the_records_it_names(conn):
    set_channel(conn, "root", capacity=1)
    set_channel(conn, "root.a", capacity=1, paused=True)
    insert(conn, count=3, channel="root.a")
    setting = Channels.parse("root:2", "environment")
    assert claim(conn, setting) is None  # root.a's record: paused
    setting = Channels.parse("root:2,root.a:5", "environment")
    assert claim(conn, setting) and claim(conn, setting)
    assert claim(conn, setting) is None  # the setting's root:2, not the record's 1
    channels = in_force(conn, setting)
    assert {name: (str(c), c.source) for name, c in channels.channels.items()} == {
        "root": ("root:2", "environment"),
        "root.a": ("root.a:5", "environment"),
    }


def test_channels_in_force_say_where_they_come_from(conn):
    assert {n: (str(c), c.source) for n, c in in_force(conn).channels.items()} == {
        "root": ("root:1", "default")
    }
    set_channel(conn, "root", capacity=3)
    set_channel(conn, "root.a", capacity=1, sequential=True)
    set_channel(conn, "root.b", rate_limit=20, paused=True)
    set_channel(conn, "root.c")  # no value of its own: not in force
    setting = Channels.parse("root.d:2", "configuration file")
    channels = in_force(conn, setting)
    assert {n: (str(c), c.source) for n, c in channels.channels.items()} == {
        "root": ("root:3", "database"),
        "root.a": ("root.a:1:sequential", "database"),
        "root.b": ("root.b:0:paused:rate_limit=20", "database"),
        "root.d": ("root.d:2", "configuration file"),
    }
    assert channels.root_capacity == 3


def test_paused_records_start_nothing_under_them_until_resumed(conn):
    set_channel(conn, "root", capacity=4)
    set_channel(conn, "root.p", paused=True)
    [paused] = insert(conn, channel="root.p.sub", priority=1)
    [other] = insert(conn, channel="root.other", priority=9)
    assert claim(conn) == other
    assert claim(conn) is None
    set_channel(conn, "root.p")
    assert claim(conn) == paused
    insert(conn)
    set_channel(conn, "root", capacity=4, paused=True)
    assert claim(conn) is None


def test_rate_limit_counts_the_starts_of_the_last_minute_under_the_channel(connect, conn):
    set_channel(conn, "root", capacity=10)
    set_channel(conn, "root.r", rate_limit=2)
    r_jobs = insert(conn, count=3, channel="root.r.sub", priority=1)
    [other] = insert(conn, channel="root.other", priority=9)
    assert claim(conn) == r_jobs[0]
    assert claim(connect()) == r_jobs[1]
    assert claim(connect()) == other  # root.r used its 2 starts: waits
    assert claim(connect()) is None
    # The first start leaves the window: one more.
    run_sql(
        conn,
        "UPDATE queue_job_rate_start SET started_at = started_at - interval '59 s'"
        " WHERE started_at = (SELECT min(started_at) FROM queue_job_rate_start)",
    )
    assert claim(connect()) is None
    run_sql(
        conn,
        "UPDATE queue_job_rate_start SET started_at = started_at - interval '1 s'"
        " WHERE started_at = (SELECT min(started_at) FROM queue_job_rate_start)",
    )
    assert claim(connect()) == r_jobs[2]
    # Starts older than the window are pruned.
    assert run_sql(conn, "SELECT count(*) FROM queue_job_rate_start") == [(2,)]


def test_rate_limited_channel_wakes_the_runners_when_its_window_frees_a_start(connect, conn):
    set_channel(conn, "root", capacity=10)
    set_channel(conn, "root.r", rate_limit=2)
    insert(conn, count=3, channel="root.r")
    listener = connect()
    listener.autocommit = True
    run_sql(listener, "LISTEN queue_job")
    assert claim(conn) and claim(conn)
    select.select([listener], [], [], 2)
    listener.poll()
    assert {notify.payload for notify in listener.notifies} == {"eta"}
    # The earlier start leaves the window first: that frees the next start.
    run_sql(
        conn,
        "UPDATE queue_job_rate_start SET started_at = started_at - interval '50 s'"
        " WHERE started_at = (SELECT min(started_at) FROM queue_job_rate_start)",
    )
    with conn, conn.cursor() as cr:
        seconds = seconds_until_next_eta(cr, channels_in_force(cr, NO_SETTING))
    assert seconds == pytest.approx(10, abs=1)
    set_channel(conn, "root.r", rate_limit=3)  # not at its limit: no wake-up needed
    with conn, conn.cursor() as cr:
        assert seconds_until_next_eta(cr, channels_in_force(cr, NO_SETTING)) is None


def test_a_change_of_the_channel_records_notifies_the_runners(connect, conn):
    listener = connect()
    listener.autocommit = True
    run_sql(listener, "LISTEN queue_job")
    run_sql(conn, "INSERT INTO queue_job_channel (name, complete_name) VALUES ('a', 'root.a')")
    set_channel(conn, "root.a", capacity=3)
    run_sql(conn, "DELETE FROM queue_job_channel")
    deadline = time.monotonic() + 2
    while len(listener.notifies) < 3 and time.monotonic() < deadline:
        select.select([listener], [], [], 0.1)
        listener.poll()
    assert [notify.payload for notify in listener.notifies] == ["channels"] * 3
