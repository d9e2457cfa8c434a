# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Database objects the ORM cannot declare: indexes, the edge flag, the NOTIFY trigger.

This module imports nothing from Odoo: ``queue.job``'s ``init()`` calls
:func:`ensure` on an Odoo cursor, and the tests that run without Odoo call it
on a plain psycopg2 cursor, so both see exactly the same database objects.
"""

#: The channel runners ``LISTEN`` on (see ``queue_job_notify`` below).
NOTIFY_CHANNEL = "queue_job"
#: Payload of a notification whose jobs include one waiting for a future eta.
ETA_PAYLOAD = "eta"

#: Odoo stores datetimes as naive UTC ``timestamp`` columns: never compare
#: them with ``now()`` directly, the session time zone would leak in. The
#: wall clock, not ``now()``: a job's transaction starts when the job does,
#: and its ``date_done`` must say when it ended.
NOW_UTC = "(clock_timestamp() AT TIME ZONE 'UTC')"

#: The version of the objects below, bumped whenever they change: a runner
#: serves a database only once its module is updated to this version.
VERSION = 2

_CLAIM_FUNCTION = "queue_job_claim(integer, varchar[], integer[])"

#: States in which a job waits for a runner (the identity key is unique among them).
WAITING_STATES = ("wait_dependencies", "pending", "enqueued")

#: States in which a job holds a slot of its channel.
RUNNING_STATES = ("enqueued", "started")


def _sql_list(values):
    return "({})".format(", ".join(f"'{value}'" for value in values))


#: The same states, as SQL writes them after ``IN``. Partial indexes and the
#: statements that should use them spell their predicates alike.
WAITING_SQL = _sql_list(WAITING_STATES)
RUNNING_SQL = _sql_list(RUNNING_STATES)

#: Second key of the claim lock, under the runners' lock namespace
#: (``jobrunner/claim.py``); job ids, the keys of liveness locks, start at 1.
CLAIM_LOCK_KEY = 0

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
    f"""
    CREATE INDEX IF NOT EXISTS queue_job_running_idx
        ON queue_job (channel) WHERE state IN {RUNNING_SQL}
    """,
    # ETA wake-ups: the next future eta among pending jobs.
    """
    CREATE INDEX IF NOT EXISTS queue_job_eta_idx
        ON queue_job (eta) WHERE state = 'pending' AND eta IS NOT NULL
    """,
    # identity_key: at most one waiting job per key, enforced by PostgreSQL
    # so that two concurrent enqueues cannot both insert.
    f"""
    CREATE UNIQUE INDEX IF NOT EXISTS queue_job_identity_key_uniq
        ON queue_job (identity_key)
        WHERE identity_key IS NOT NULL
          AND state IN {WAITING_SQL}
    """,
    # Statement-level: a 10,000-row insert sends one notification, not
    # 10,000. Runners only need waking when a job may have become runnable
    # (it is pending after the statement) or a slot may have been freed (a
    # job was running before it): a claim (pending -> started) and a release
    # that leaves its dependents waiting wake nobody. The payload ``eta`` says that a
    # pending job waits for a future eta, so that runners read the next eta
    # again; without it they need not.
    f"""
    CREATE OR REPLACE FUNCTION queue_job_notify() RETURNS trigger AS $$
    DECLARE
        runnable boolean;
        eta_ahead boolean;
    BEGIN
        SELECT count(*) > 0, COALESCE(bool_or(eta > {NOW_UTC}), false)
          INTO runnable, eta_ahead
          FROM new_rows WHERE state = 'pending';
        IF NOT runnable AND TG_OP = 'UPDATE' THEN
            runnable := EXISTS (SELECT 1 FROM old_rows WHERE state IN {RUNNING_SQL});
        END IF;
        IF runnable THEN
            PERFORM pg_notify('{NOTIFY_CHANNEL}', CASE WHEN eta_ahead THEN '{ETA_PAYLOAD}' ELSE '' END);
        END IF;
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS queue_job_notify ON queue_job",
    "DROP TRIGGER IF EXISTS queue_job_notify_insert ON queue_job",
    "DROP TRIGGER IF EXISTS queue_job_notify_update ON queue_job",
    # Transition tables need one trigger per event, and no column list.
    """
    CREATE TRIGGER queue_job_notify_insert
        AFTER INSERT ON queue_job REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION queue_job_notify()
    """,
    """
    CREATE TRIGGER queue_job_notify_update
        AFTER UPDATE ON queue_job REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION queue_job_notify()
    """,
    # The claim of a runner (see jobrunner/claim.py, which calls it): one
    # round trip, and plans that PL/pgSQL prepares once per connection.
    # VOLATILE, so that in READ COMMITTED each statement takes a snapshot of
    # its own: the statements after the claim lock see every claim committed
    # while this one waited for it.
    f"""
    CREATE OR REPLACE FUNCTION queue_job_claim(
        lock_namespace integer, channel_names varchar[], capacities integer[]
    ) RETURNS SETOF queue_job AS $$
    DECLARE
        full_channels varchar[];
        claimed queue_job;
    BEGIN
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'queue_job_claim() runs in READ COMMITTED, not %',
                current_setting('transaction_isolation');
        END IF;
        PERFORM pg_advisory_xact_lock(lock_namespace, {CLAIM_LOCK_KEY});
        -- A job counts against its channel and every configured ancestor
        -- (root included), as jobrunner/channels.py describes.
        SELECT array_agg(c.name) INTO full_channels
          FROM unnest(channel_names, capacities) AS c(name, capacity)
         WHERE c.capacity <= (
               SELECT count(*) FROM queue_job r
                WHERE r.state IN {RUNNING_SQL}
                  AND (c.name = 'root' OR r.channel = c.name
                       OR starts_with(r.channel, c.name || '.')));
        IF 'root' = ANY(full_channels) THEN
            RETURN;
        END IF;
        -- Full channels are excluded in the scan itself, with everything
        -- under them: a full channel's backlog ahead in the order cannot
        -- hide the jobs of other channels. SKIP LOCKED passes over a job that
        -- a user's transaction holds instead of waiting for it.
        UPDATE queue_job j
           SET state = 'started', date_enqueued = {NOW_UTC},
               date_started = {NOW_UTC}, retry = j.retry + 1
         WHERE j.id = (
               SELECT c.id FROM queue_job c
                WHERE c.state = 'pending' AND (c.eta IS NULL OR c.eta <= {NOW_UTC})
                  AND NOT EXISTS (
                      SELECT 1 FROM unnest(full_channels) AS f(name)
                       WHERE c.channel = f.name OR starts_with(c.channel, f.name || '.'))
                ORDER BY c.priority, c.date_created, c.id
                LIMIT 1
                  FOR NO KEY UPDATE SKIP LOCKED)
     RETURNING j.* INTO claimed;
        IF FOUND THEN
            -- The liveness lock, taken before the claim commits.
            PERFORM pg_advisory_lock(lock_namespace, claimed.id);
            RETURN NEXT claimed;
        END IF;
    END;
    $$ LANGUAGE plpgsql VOLATILE
    """,
    f"COMMENT ON FUNCTION {_CLAIM_FUNCTION} IS 'queue_job schema {VERSION}'",
)


def ensure(cr):
    """Create or update the objects above; idempotent."""
    for statement in _STATEMENTS:
        cr.execute(statement)


def is_current(cr):
    """Whether the database has the objects of this version (see :data:`VERSION`)."""
    cr.execute(
        "SELECT obj_description(to_regprocedure(%s), 'pg_proc')", (_CLAIM_FUNCTION,)
    )
    return cr.fetchone()[0] == f"queue_job schema {VERSION}"


def drop(cr):
    """Drop the functions above; indexes and triggers go with their tables.

    The uninstall hook: dropping the ``queue_job`` table drops
    ``queue_job_claim`` (it returns its rows) but not ``queue_job_notify``.
    """
    cr.execute("DROP FUNCTION IF EXISTS queue_job_notify() CASCADE")
    cr.execute(f"DROP FUNCTION IF EXISTS {_CLAIM_FUNCTION}")
