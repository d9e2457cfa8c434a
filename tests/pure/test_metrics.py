# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The metrics' text: Prometheus' format, read strictly, and the figures of the table."""

import datetime

import pytest
from jobs import insert_job

from queue_job.core.metrics import exposition
from queue_job.tests.prometheus_text import parse


def scrape(conn):
    with conn, conn.cursor() as cr:
        return parse(exposition(cr))


def samples(families, family, name=None):
    return {
        tuple(sorted(labels.items())): value
        for sample_name, labels, value in families[family]["samples"]
        if name in (None, sample_name)
    }


def insert_done(cr, channel, seconds):
    started = datetime.datetime(2026, 1, 1, 10)
    insert_job(
        cr,
        state="done",
        channel=channel,
        date_started=started,
        date_done=started + datetime.timedelta(seconds=seconds),
    )


def test_counts_by_state_totals_and_run_time_histogram(conn):
    with conn, conn.cursor() as cr:
        insert_job(cr, channel="root.a")
        insert_job(cr, channel="root.a", state="started")
        insert_job(cr, channel='root."quoted"\\back')
        insert_job(cr, channel="root.a", state="failed")
        for seconds in (0.05, 0.3, 2, 2, 4000):
            insert_done(cr, "root.a", seconds)
    families = scrape(conn)
    assert {name: info["type"] for name, info in families.items()} == {
        "queue_job_jobs": "gauge",
        "queue_job_jobs_done_total": "counter",
        "queue_job_jobs_failed_total": "counter",
        "queue_job_run_seconds": "histogram",
    }
    jobs = samples(families, "queue_job_jobs")
    assert jobs[(("channel", "root.a"), ("state", "pending"))] == 1
    assert jobs[(("channel", "root.a"), ("state", "started"))] == 1
    assert jobs[(("channel", "root.a"), ("state", "done"))] == 5
    assert jobs[(("channel", "root.a"), ("state", "cancelled"))] == 0  # given, as 0
    assert jobs[(("channel", 'root."quoted"\\back'), ("state", "pending"))] == 1
    assert samples(families, "queue_job_jobs_done_total")[(("channel", "root.a"),)] == 5
    assert samples(families, "queue_job_jobs_failed_total")[(("channel", "root.a"),)] == 1
    buckets = {
        labels[1][1]: value
        for labels, value in samples(
            families, "queue_job_run_seconds", "queue_job_run_seconds_bucket"
        ).items()
    }
    assert buckets["0.1"] == 1 and buckets["0.5"] == 2 and buckets["1.0"] == 2
    assert buckets["5.0"] == 4 and buckets["3600.0"] == 4 and buckets["+Inf"] == 5
    values = list(buckets.values())
    assert values == sorted(values), "cumulative"
    [total] = samples(families, "queue_job_run_seconds", "queue_job_run_seconds_sum").values()
    assert total == pytest.approx(4004.35)
    [count] = samples(families, "queue_job_run_seconds", "queue_job_run_seconds_count").values()
    assert count == 5


def test_an_empty_queue_is_valid_text(conn):
    families = scrape(conn)
    assert all(info["samples"] == [] for info in families.values())


@pytest.mark.parametrize(
    "text",
    [
        "queue_job_jobs 1\n",  # no TYPE
        "# TYPE a gauge\na{b=\"c\"}\n",  # no value
        "# TYPE a gauge\na{b=\"c\\x\"} 1\n",  # bad escape
        "# TYPE a gauge\na 1",  # no final line feed
    ],
)
def test_the_reader_is_strict(text):
    with pytest.raises(AssertionError):
        parse(text)
