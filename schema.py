# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Database objects the ORM cannot declare: indexes, the edge flag, the NOTIFY trigger.

This module imports nothing from Odoo: ``queue.job``'s ``init()`` calls
:func:`ensure` on an Odoo cursor, and the tests that run without Odoo call it
on a plain psycopg2 cursor, so both see exactly the same database objects.
"""

#: The channel runners ``LISTEN`` on; every job state change notifies it.
NOTIFY_CHANNEL = "queue_job"

#: Odoo stores datetimes as naive UTC ``timestamp`` columns: never compare
#: them with ``now()`` directly, the session time zone would leak in. The
#: wall clock, not ``now()``: a job's transaction starts when the job does,
#: and its ``date_done`` must say when it ended.
NOW_UTC = "(clock_timestamp() AT TIME ZONE 'UTC')"

#: States in which a job waits for a runner (the identity key is unique among them).
WAITING_STATES = ("wait_dependencies", "pending", "enqueued")

#: States in which a job holds a slot of its channel.
RUNNING_STATES = ("enqueued", "started")

_STATEMENTS = (
    # One edge per (dependent, dependency); ``released`` is flipped once,
    # in the statement that decrements the dependent's counter: the
    # per-edge claim that makes a release idempotent.
    """
    ALTER TABLE queue_job_dependency
        ADD COLUMN IF NOT EXISTS released boolean NOT NULL DEFAULT false
    """,
    # Dependents of a job: the release and the failure cascade walk this.
    """
    CREATE INDEX IF NOT EXISTS queue_job_dependency_dependency_idx
        ON queue_job_dependency (dependency_id) WHERE NOT released
    """,
    # The runner's candidate scan: pending jobs in priority, then age, order.
    """
    CREATE INDEX IF NOT EXISTS queue_job_pending_idx
        ON queue_job (priority, date_created, id) WHERE state = 'pending'
    """,
    # Capacity counts and orphan rescue only look at running jobs.
    """
    CREATE INDEX IF NOT EXISTS queue_job_running_idx
        ON queue_job (channel) WHERE state IN ('enqueued', 'started')
    """,
    # ETA wake-ups: the next future eta among pending jobs.
    """
    CREATE INDEX IF NOT EXISTS queue_job_eta_idx
        ON queue_job (eta) WHERE state = 'pending' AND eta IS NOT NULL
    """,
    # identity_key: at most one waiting job per key, enforced by PostgreSQL
    # so that two concurrent enqueues cannot both insert.
    """
    CREATE UNIQUE INDEX IF NOT EXISTS queue_job_identity_key_uniq
        ON queue_job (identity_key)
        WHERE identity_key IS NOT NULL
          AND state IN ('wait_dependencies', 'pending', 'enqueued')
    """,
    # Statement-level: a 10,000-row insert sends one notification, not 10,000.
    f"""
    CREATE OR REPLACE FUNCTION queue_job_notify() RETURNS trigger AS $$
    BEGIN
        PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS queue_job_notify ON queue_job",
    """
    CREATE TRIGGER queue_job_notify
        AFTER INSERT OR UPDATE OF state ON queue_job
        FOR EACH STATEMENT EXECUTE FUNCTION queue_job_notify()
    """,
)


def ensure(cr):
    """Create or update the objects above; idempotent."""
    for statement in _STATEMENTS:
        cr.execute(statement)
