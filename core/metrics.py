# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The queue's metrics, in Prometheus' text exposition format (version 0.0.4).

Read from the ``queue_job`` table of one database at each scrape, so that
every runner and every Odoo worker see the same figures:

* ``queue_job_jobs{channel, state}`` (gauge): the jobs of each job channel
  in each state, now; every state of a channel that has a job is given, 0
  included, so that a series does not vanish when it empties;
* ``queue_job_jobs_done_total{channel}`` and ``queue_job_jobs_failed_total``
  (counters): the done and failed jobs *that the table retains*. The
  autovacuum deletes done jobs after their channel's removal interval, and a
  failed job that is requeued or set done leaves the failed ones: these
  drops read as counter resets. No counter is kept elsewhere, because a
  counter row that every job's transaction updated would serialize them;
* ``queue_job_run_seconds{channel}`` (histogram): the run time of the done
  jobs the table retains, ``date_done - date_started`` of their last try.
"""

from .states import DONE, FAILED, STATES

#: Upper bounds (seconds) of the run-time histogram's buckets, +Inf aside.
RUN_SECONDS_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)
#: The Content-Type of the exposition.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value):
    """A label value, escaped as the format says: backslash, double quote, line feed."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample(name, labels, value):
    inner = ",".join(f'{key}="{_label(val)}"' for key, val in labels.items())
    return f"{name}{{{inner}}} {value}"


def _family(name, kind, help_text, samples):
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def exposition(cr):
    """The metrics of ``cr``'s database, as the text of a scrape."""
    cr.execute("SELECT COALESCE(channel, ''), state, count(*) FROM queue_job GROUP BY 1, 2")
    counts = {}
    for channel, state, count in cr.fetchall():
        counts.setdefault(channel, {})[state] = count
    channels = sorted(counts)
    lines = _family(
        "queue_job_jobs",
        "gauge",
        "Jobs by job channel and state, now.",
        [
            _sample(
                "queue_job_jobs",
                {"channel": channel, "state": state},
                counts[channel].get(state, 0),
            )
            for channel in channels
            for state, _state_label in STATES
        ],
    )
    for state in (DONE, FAILED):
        name = f"queue_job_jobs_{state}_total"
        lines += _family(
            name,
            "counter",
            f"Jobs {state}, among the jobs the table retains (drops when jobs are deleted"
            f"{' or requeued' if state == FAILED else ''}).",
            [
                _sample(name, {"channel": channel}, counts[channel].get(state, 0))
                for channel in channels
            ],
        )
    lines += _family(
        "queue_job_run_seconds",
        "histogram",
        "Run time of the done jobs the table retains (their last try), in seconds.",
        _run_seconds_samples(cr),
    )
    return "\n".join(lines) + "\n"


def _run_seconds_samples(cr):
    in_buckets = ", ".join(
        f"count(*) FILTER (WHERE seconds <= {bound})" for bound in RUN_SECONDS_BUCKETS
    )
    cr.execute(
        f"""
        SELECT channel, ARRAY[{in_buckets}], sum(seconds), count(*)
          FROM (SELECT COALESCE(channel, '') AS channel,
                       EXTRACT(EPOCH FROM date_done - date_started)::float8 AS seconds
                  FROM queue_job
                 WHERE state = %s AND date_started IS NOT NULL AND date_done IS NOT NULL) AS done
         GROUP BY 1 ORDER BY 1
        """,
        (DONE,),
    )
    samples = []
    for channel, in_bucket_counts, total, count in cr.fetchall():
        bounds = [repr(float(bound)) for bound in RUN_SECONDS_BUCKETS]
        for bound, in_bucket in zip([*bounds, "+Inf"], [*in_bucket_counts, count], strict=True):
            labels = {"channel": channel, "le": bound}
            samples.append(_sample("queue_job_run_seconds_bucket", labels, in_bucket))
        samples.append(_sample("queue_job_run_seconds_sum", {"channel": channel}, repr(total)))
        samples.append(_sample("queue_job_run_seconds_count", {"channel": channel}, count))
    return samples
