# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Adopt the jobs of a database that ran OCA's queue_job: the switch in place.

OCA's ``queue_job`` and ours share the ``queue_job`` table; what differs is
how a job graph is held and what a state means to the runner:

* OCA keeps a job's links in a JSON text column, ``dependencies``
  (``{"depends_on": [uuid, ...], "reverse_depends_on": [uuid, ...]}``), and
  searches it after each job; ours keeps edges in ``queue_job_dependency``
  with a counter of unreleased ones on each dependent (``core/transitions.py``);
* OCA's runner moves a job to ``enqueued`` before it asks an HTTP worker to
  run it; ours claims pending jobs straight to ``started``;
* OCA counts a try when the job's own transaction commits, ours when it
  claims the job;
* OCA stores a job's records, args and kwargs, and a job function's retry
  pattern and related action, as JSON text inside a jsonb string; ours as
  the JSON value itself;
* OCA dates a cancellation in ``date_cancelled``, ours in ``date_done``, and
  OCA stores no ``record_ids``;
* OCA checks an identity key by a search before it inserts, so two
  concurrent enqueues may both have stored their job; ours has a unique index.

:func:`prepare` runs before the tables get our columns and indexes,
:func:`adopt` after; together they convert all that, in a constant number
of statements whatever the number of jobs. The layout is told by what is in the database (the
``dependencies`` column), not by a version: on a database of ours it does
nothing. It imports nothing from Odoo: ``migrations/`` calls it on Odoo's
cursor, ``tests/pure`` on a psycopg2 one.
"""

import logging

from .core import transitions
from .core.states import QUEUED_SQL

_logger = logging.getLogger(__name__)

#: OCA's tables that no model of ours uses: its job locks (ours are advisory
#: locks held by the runner's sessions) and its three wizards (ours is one).
OCA_TABLES = (
    "queue_job_lock",
    "queue_job_queue_jobs_to_done_rel", "queue_jobs_to_done",
    "queue_job_queue_jobs_to_cancelled_rel", "queue_jobs_to_cancelled",
    "queue_job_queue_requeue_job_rel", "queue_requeue_job",
)

#: The columns of OCA's ``queue_job`` that ours computes or has not. Dropped
#: once the jobs are adopted: ``dependencies`` is what tells OCA's layout, so
#: that the adoption never runs twice.
OCA_COLUMNS = ("dependencies", "date_cancelled", "channel_method_name", "worker_pid")


def _unwrapped(column):
    """SQL of ``column``'s JSON value, OCA's jsonb string holding JSON text unwrapped."""
    return (
        f"CASE WHEN jsonb_typeof({column}) = 'string'"
        f" THEN ({column} #>> '{{}}')::jsonb ELSE {column} END"
    )


# One edge per link, whichever side of it OCA recorded; links to jobs that
# are gone (OCA's autovacuum deletes done jobs) are dropped, as OCA ignores
# them too.
_INSERT_EDGES = """
    INSERT INTO queue_job_dependency (job_id, dependency_id)
    SELECT j.id, d.id
      FROM queue_job j
     CROSS JOIN LATERAL jsonb_array_elements_text(
                NULLIF(j.dependencies, '')::jsonb -> 'depends_on') AS link(uuid)
      JOIN queue_job d ON d.uuid = link.uuid
    UNION
    SELECT j.id, d.id
      FROM queue_job d
     CROSS JOIN LATERAL jsonb_array_elements_text(
                NULLIF(d.dependencies, '')::jsonb -> 'reverse_depends_on') AS link(uuid)
      JOIN queue_job j ON j.uuid = link.uuid
    ON CONFLICT DO NOTHING
"""

# Every edge is unreleased until transitions.release_dependents() runs; a job
# without edges gets 0 (Odoo may have added the column empty).
_COUNT_EDGES = """
    UPDATE queue_job j
       SET pending_dependency_count = COALESCE(counted.n, 0)
      FROM (SELECT job.id, edges.n
              FROM queue_job job
              LEFT JOIN (SELECT job_id, count(*) AS n FROM queue_job_dependency
                          WHERE NOT released GROUP BY job_id) edges
                     ON edges.job_id = job.id) counted
     WHERE j.id = counted.id
       AND (j.pending_dependency_count IS NULL OR counted.n IS NOT NULL)
"""

# A waiting job none of whose dependencies is left: all were deleted (OCA
# runs a job whose dependencies are gone), or OCA missed its release (two
# members ending at once, see readme/DEVELOP.md).
_WAKE_UNBLOCKED = """
    UPDATE queue_job SET state = 'pending'
     WHERE state = 'wait_dependencies' AND pending_dependency_count = 0
"""

# Waiting jobs behind a failed or cancelled job: OCA leaves them waiting.
_BLOCKED_BY_ENDED = """
    SELECT DISTINCT e.job_id
      FROM queue_job_dependency e
      JOIN queue_job dep ON dep.id = e.dependency_id
      JOIN queue_job j ON j.id = e.job_id
     WHERE NOT e.released AND dep.state IN ('failed', 'cancelled')
       AND j.state = 'wait_dependencies'
"""


def has_oca_layout(cr):
    """Whether ``queue_job`` still holds OCA's ``dependencies`` column."""
    cr.execute(
        """
        SELECT 1 FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = 'queue_job'
           AND column_name = 'dependencies'
        """
    )
    return cr.fetchone() is not None


def prepare(cr):
    """Clear what would stop our indexes being created on OCA's jobs.

    Of waiting jobs sharing an identity key, the oldest keeps it; the others
    lose it, and run as OCA would have run them. Returns whether OCA's
    layout was found.
    """
    if not has_oca_layout(cr):
        return False
    cr.execute(
        f"""
        UPDATE queue_job j SET identity_key = NULL
          FROM (SELECT id, row_number() OVER (PARTITION BY identity_key ORDER BY id) AS rank
                  FROM queue_job
                 WHERE identity_key IS NOT NULL AND state IN {QUEUED_SQL}) twins
         WHERE j.id = twins.id AND twins.rank > 1
        """
    )
    if cr.rowcount:
        _logger.info(
            "%s waiting jobs of OCA's queue_job shared an identity key with an older "
            "one: their key is cleared",
            cr.rowcount,
        )
    return True


def adopt(cr):
    """Convert OCA's jobs to ours, if the database holds OCA's layout.

    Done, failed and cancelled jobs keep their results and errors. Links
    become edges, released where the dependency is done; a waiting job whose
    dependencies are all done becomes pending, one behind a failed or
    cancelled job fails or is cancelled with it (as ours would have done).
    ``enqueued`` jobs go back to ``pending``: no OCA runner will start them.
    ``started`` jobs get the try they were in counted and stay ``started``:
    nobody holds their liveness lock, so a runner of ours rescues them (back
    to pending, or failed when that was their last try).
    Returns whether OCA's layout was found.
    """
    if not has_oca_layout(cr):
        return False
    cr.execute(
        f"""
        UPDATE queue_job
           SET records = {_unwrapped("records")}, args = {_unwrapped("args")},
               kwargs = {_unwrapped("kwargs")},
               record_ids = COALESCE(record_ids, {_unwrapped("records")} -> 'ids'),
               date_done = CASE WHEN state = 'cancelled'
                                THEN COALESCE(date_done, date_cancelled)
                                ELSE date_done END
        """
    )
    cr.execute(
        f"""
        UPDATE queue_job_function
           SET retry_pattern = {_unwrapped("retry_pattern")},
               related_action = {_unwrapped("related_action")}
         WHERE 'string' IN (jsonb_typeof(retry_pattern), jsonb_typeof(related_action))
        """
    )
    cr.execute(_INSERT_EDGES)
    edges = cr.rowcount
    cr.execute(_COUNT_EDGES)
    transitions.release_dependents(cr)
    cr.execute(_WAKE_UNBLOCKED)
    cr.execute(_BLOCKED_BY_ENDED)
    transitions.recascade(cr, [job_id for (job_id,) in cr.fetchall()])
    cr.execute("SELECT id FROM queue_job WHERE state = 'enqueued'")
    enqueued = transitions.retry_later(cr, [job_id for (job_id,) in cr.fetchall()], 0)
    cr.execute("UPDATE queue_job SET retry = retry + 1 WHERE state = 'started'")
    started = cr.rowcount
    cr.execute(f"DROP TABLE IF EXISTS {', '.join(OCA_TABLES)}")
    cr.execute(
        "ALTER TABLE queue_job "
        + ", ".join(f"DROP COLUMN IF EXISTS {column}" for column in OCA_COLUMNS)
    )
    _logger.info(
        "Adopted the jobs of OCA's queue_job: %s edges, %s enqueued jobs back "
        "to pending, %s started jobs left for the runner's rescue",
        edges, len(enqueued), started,
    )
    return True
