# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Database objects the ORM cannot declare: indexes, the edge flag, the NOTIFY trigger.

This module imports nothing from Odoo: ``queue.job``'s ``init()`` calls
:func:`ensure` on an Odoo cursor, and the tests that run without Odoo call it
on a plain psycopg2 cursor, so both see exactly the same database objects.
"""

from .states import QUEUED_SQL, RUNNING_SQL

#: The channel runners ``LISTEN`` on (see ``queue_job_notify`` below).
NOTIFY_CHANNEL = "queue_job"
#: Payload of a notification whose jobs include one waiting for a future eta.
ETA_PAYLOAD = "eta"
#: Payload of a notification sent when a running job was cancelled: the
#: runners stop those of their jobs that are no longer to run.
STOP_PAYLOAD = "stop"
#: Payload of a notification that the channel records changed: runners read
#: the channels in force again (``queue_job_channel_notify`` below).
CHANNELS_PAYLOAD = "channels"
#: The window of a channel's rate limit: at most ``rate_limit`` starts in any
#: this many seconds.
RATE_WINDOW_SECONDS = 60

#: Odoo stores datetimes as naive UTC ``timestamp`` columns: never compare
#: them with ``now()`` directly, the session time zone would leak in. The
#: wall clock, not ``now()``: a job's transaction starts when the job does,
#: and its ``date_done`` must say when it ended.
NOW_UTC = "(clock_timestamp() AT TIME ZONE 'UTC')"

#: What starting a job sets, on ``queue_job`` aliased ``j``: the claim
#: (``queue_job_claim`` below) and Run Now (``transitions.start``) alike.
#: The try counts.
START_SET = (
    f"state = 'started', date_enqueued = {NOW_UTC}, date_started = {NOW_UTC}, "
    "retry = j.retry + 1"
)

#: The version of the objects below, bumped whenever they change: a runner
#: serves a database only once its module is updated to this version.
VERSION = 5

CLAIM_FUNCTION = (
    "queue_job_claim(integer, varchar[], integer[], boolean[], integer[], integer[], boolean[])"
)
_CLAIM_FUNCTION_NAMED = (
    "queue_job_claim(lock_namespace integer, channel_names varchar[], capacities integer[],"
    " sequential boolean[], throttles integer[], rate_limits integer[], paused boolean[])"
)
CHANNELS_FUNCTION = (
    "queue_job_channels(varchar[], integer[], boolean[], integer[], integer[], boolean[])"
)

def under(job_channel, channel):
    """SQL: the job channel ``job_channel`` is ``channel`` or under it.

    No term tests ``channel`` alone (such as ``channel = 'root'``): the
    planner would take the scan's exclusions for nearly total and sort every
    pending job instead of reading the first ones in index order.
    """
    return f"({job_channel} = {channel} OR starts_with({job_channel}, {channel} || '.'))"


#: Candidates a claim tries at most when transactions hold the best ones.
_CLAIM_ATTEMPTS = 32
#: Jobs whose eta has passed that one claim makes claimable.
_DUE_BATCH = 1000

#: Second key of the claim lock, under the runners' lock namespace
#: (``claim.py``); job ids, the keys of liveness locks, start at 1.
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
    # A pending job whose eta is ahead is not claimable: ``waits_for_eta``
    # says so, set by the trigger below whenever ``eta`` is written and
    # cleared by the claim once the eta has passed. The claim's index then
    # holds claimable jobs only: a backlog of future etas costs it nothing.
    """
    ALTER TABLE queue_job
        ADD COLUMN IF NOT EXISTS waits_for_eta boolean NOT NULL DEFAULT false
    """,
    f"""
    CREATE OR REPLACE FUNCTION queue_job_eta_written() RETURNS trigger AS $$
    BEGIN
        NEW.waits_for_eta := NEW.eta IS NOT NULL AND NEW.eta > {NOW_UTC};
        RETURN NEW;
    END;
    $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS queue_job_eta_insert ON queue_job",
    "DROP TRIGGER IF EXISTS queue_job_eta_update ON queue_job",
    # A row trigger, called only for the rows that have an eta or change it.
    """
    CREATE TRIGGER queue_job_eta_insert
        BEFORE INSERT ON queue_job FOR EACH ROW WHEN (NEW.eta IS NOT NULL)
        EXECUTE FUNCTION queue_job_eta_written()
    """,
    """
    CREATE TRIGGER queue_job_eta_update
        BEFORE UPDATE OF eta ON queue_job FOR EACH ROW WHEN (NEW.eta IS DISTINCT FROM OLD.eta)
        EXECUTE FUNCTION queue_job_eta_written()
    """,
    # Jobs stored before the column existed (an update of the module).
    f"""
    UPDATE queue_job SET waits_for_eta = true
     WHERE state IN ('pending', 'wait_dependencies') AND eta > {NOW_UTC} AND NOT waits_for_eta
    """,
    # Schema 3's claim scan (priority order over all pending jobs).
    "DROP INDEX IF EXISTS queue_job_pending_idx",
    # The claim: the claimable jobs of each channel in priority, then age,
    # order. Leading by channel, it finds the channels that have claimable
    # jobs in one probe each (a loose index scan) and the first job of each
    # in one more.
    """
    CREATE INDEX IF NOT EXISTS queue_job_claimable_idx
        ON queue_job (channel, priority, date_created, id)
     WHERE state = 'pending' AND NOT waits_for_eta
    """,
    # Capacity counts and orphan rescue only look at running jobs.
    f"""
    CREATE INDEX IF NOT EXISTS queue_job_running_idx
        ON queue_job (channel) WHERE state IN {RUNNING_SQL}
    """,
    # The first pending job of a sequential channel.
    """
    CREATE INDEX IF NOT EXISTS queue_job_pending_channel_idx
        ON queue_job (channel, priority, date_created, id) WHERE state = 'pending'
    """,
    # A sequential channel waits while it has a failed job.
    """
    CREATE INDEX IF NOT EXISTS queue_job_failed_channel_idx
        ON queue_job (channel) WHERE state = 'failed'
    """,
    # ETA wake-ups (the next future eta) and the claim's clearing of
    # ``waits_for_eta``: only jobs whose eta the claim has not seen pass.
    "DROP INDEX IF EXISTS queue_job_eta_idx",
    """
    CREATE INDEX IF NOT EXISTS queue_job_waits_for_eta_idx
        ON queue_job (eta) WHERE state = 'pending' AND waits_for_eta
    """,
    # The Jobs list's order (``date_created DESC, id DESC``): its first page
    # without sorting every job.
    """
    CREATE INDEX IF NOT EXISTS queue_job_date_created_idx ON queue_job (date_created, id)
    """,
    # Jobs ended lately (Job Queue > Overview: the last hour, and per minute
    # over the last 24 hours), and the autovacuum's old ones.
    """
    CREATE INDEX IF NOT EXISTS queue_job_date_done_idx
        ON queue_job (date_done) WHERE date_done IS NOT NULL
    """,
    # identity_key: at most one waiting job per key, enforced by PostgreSQL
    # so that two concurrent enqueues cannot both insert.
    f"""
    CREATE UNIQUE INDEX IF NOT EXISTS queue_job_identity_key_uniq
        ON queue_job (identity_key)
        WHERE identity_key IS NOT NULL
          AND state IN {QUEUED_SQL}
    """,
    # Statement-level: a 10,000-row insert sends one notification, not
    # 10,000. Runners only need waking when a job may have become runnable:
    # it is pending after the statement, a slot may have been freed (a job
    # was running before it), or a sequential channel may go on (a job was
    # failed before it). A claim (pending -> started) and a release that
    # leaves its dependents waiting wake nobody. The payload ``eta`` says that a
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
            runnable := EXISTS (SELECT 1 FROM old_rows
                                 WHERE state IN {RUNNING_SQL} OR state = 'failed');
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
    # When each throttled channel (``root.a:2:throttle=3``) last started a
    # job: the claim writes it, under the claim lock, for the throttled
    # channels a job goes through, and waits ``throttle`` seconds from it.
    """
    CREATE TABLE IF NOT EXISTS queue_job_throttle (
        channel varchar PRIMARY KEY,
        last_start timestamp NOT NULL
    )
    """,
    # The starts of the jobs of rate-limited channels within the last
    # window: the claim writes them under the claim lock, one row per
    # rate-limited channel a job goes through, and prunes older ones.
    """
    CREATE TABLE IF NOT EXISTS queue_job_rate_start (
        channel varchar NOT NULL,
        started_at timestamp NOT NULL
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS queue_job_rate_start_idx
        ON queue_job_rate_start (channel, started_at)
    """,
    # The channels in force: the entries of a runner's channels setting
    # (arrays, as channels.py has them), and for every channel that these
    # do not name, its record's values when it has any (root always has
    # one; without a root record, root is 1). A record's capacity 0 is no
    # limit of its own. ``from_database`` says which are records'.
    f"""
    CREATE OR REPLACE FUNCTION {CHANNELS_FUNCTION}
    RETURNS TABLE (name varchar, capacity integer, sequential boolean, throttle integer,
                   rate_limit integer, paused boolean, from_database boolean) AS $$
        SELECT c.name, c.capacity, c.sequential, c.throttle, c.rate_limit, c.paused, false
          FROM unnest($1, $2, $3, $4, $5, $6)
               AS c(name, capacity, sequential, throttle, rate_limit, paused)
         UNION ALL
        SELECT r.complete_name,
               CASE WHEN r.complete_name = 'root' THEN GREATEST(r.capacity, 1)
                    ELSE NULLIF(r.capacity, 0) END,
               r.sequential, 0, r.rate_limit, r.paused, true
          FROM queue_job_channel r
         WHERE r.complete_name <> ALL($1)
           AND (r.complete_name = 'root' OR r.capacity > 0 OR r.sequential
                OR r.rate_limit > 0 OR r.paused)
         UNION ALL
        SELECT 'root', 1, false, 0, 0, false, false
         WHERE 'root' <> ALL($1)
           AND NOT EXISTS (SELECT 1 FROM queue_job_channel WHERE complete_name = 'root')
    $$ LANGUAGE sql STABLE
    """,
    # A change of the channel records wakes the runners, which read the
    # channels in force again (sizing their executors and wake-ups on them;
    # the claim reads them itself).
    f"""
    CREATE OR REPLACE FUNCTION queue_job_channel_notify() RETURNS trigger AS $$
    BEGIN
        PERFORM pg_notify('{NOTIFY_CHANNEL}', '{CHANNELS_PAYLOAD}');
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS queue_job_channel_notify ON queue_job_channel",
    """
    CREATE TRIGGER queue_job_channel_notify
        AFTER INSERT OR UPDATE OR DELETE ON queue_job_channel
        FOR EACH STATEMENT EXECUTE FUNCTION queue_job_channel_notify()
    """,
    # Signatures of earlier versions: CREATE OR REPLACE would add an overload.
    "DROP FUNCTION IF EXISTS queue_job_claim(integer, varchar[], integer[])",
    "DROP FUNCTION IF EXISTS queue_job_claim(integer, varchar[], integer[], boolean[], integer[])",
    # The claim of a runner (see claim.py, which calls it): one
    # round trip, and plans that PL/pgSQL prepares once per connection:
    # generic ones from the first call (PostgreSQL would otherwise plan the
    # statements again at each call, the custom plans looking no cheaper
    # than the generic ones: 1.5 ms a claim).
    # VOLATILE, so that in READ COMMITTED each statement takes a snapshot of
    # its own: the statements after the claim lock see every claim committed
    # while this one waited for it. The channels are those of
    # channels.py, as arrays: a capacity NULL for no limit, a throttle or a
    # rate limit 0 for none; the claim merges them with the channel
    # records' (queue_job_channels) under the claim lock, so that a change
    # of a record applies to every runner's next claim.
    f"""
    CREATE OR REPLACE FUNCTION {_CLAIM_FUNCTION_NAMED} RETURNS SETOF queue_job AS $$
    DECLARE
        now_utc timestamp;
        blocked varchar[];
        first_channels varchar[] := '{{}}';
        first_priorities integer[];
        first_dates timestamp[];
        first_ids integer[];
        skipped integer[] := '{{}}';
        candidate integer;
        claimed queue_job;
    BEGIN
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'queue_job_claim() runs in READ COMMITTED, not %',
                current_setting('transaction_isolation');
        END IF;
        PERFORM pg_advisory_xact_lock(lock_namespace, {CLAIM_LOCK_KEY});
        now_utc := {NOW_UTC};
        -- The channels in force; a paused channel has no capacity.
        SELECT array_agg(c.name), array_agg(CASE WHEN c.paused THEN 0 ELSE c.capacity END),
               array_agg(c.sequential), array_agg(c.throttle), array_agg(c.rate_limit)
          INTO channel_names, capacities, sequential, throttles, rate_limits
          FROM queue_job_channels(channel_names, capacities, sequential, throttles,
                                  rate_limits, paused) AS c;
        -- Jobs whose eta has passed become claimable, a batch per claim
        -- (one probe when none has: min() reads the first entry of the
        -- index); those a transaction holds, later.
        IF (SELECT min(j.eta) FROM queue_job j
             WHERE j.state = 'pending' AND j.waits_for_eta) <= now_utc THEN
            UPDATE queue_job SET waits_for_eta = false
             WHERE id IN (SELECT j.id FROM queue_job j
                           WHERE j.state = 'pending' AND j.waits_for_eta AND j.eta <= now_utc
                           ORDER BY j.eta LIMIT {_DUE_BATCH}
                             FOR NO KEY UPDATE SKIP LOCKED);
        END IF;
        -- Channels that start no job now, nor any under them: full (a job
        -- counts against its channel and every configured ancestor, root
        -- included, as channels.py describes), throttled, at its rate
        -- limit, or sequential with a failed job of its own.
        SELECT COALESCE(array_agg(c.name), '{{}}') INTO blocked
          FROM unnest(channel_names, capacities, sequential, throttles, rate_limits)
               AS c(name, capacity, sequential, throttle, rate_limit)
         WHERE (c.capacity IS NOT NULL AND c.capacity <= (
                SELECT count(*) FROM queue_job r
                 WHERE r.state IN {RUNNING_SQL}
                   AND (c.name = 'root' OR {under("r.channel", "c.name")})))
            OR (c.throttle > 0 AND EXISTS (
                SELECT 1 FROM queue_job_throttle t
                 WHERE t.channel = c.name
                   AND t.last_start > now_utc - make_interval(secs => c.throttle)))
            OR (c.rate_limit > 0 AND c.rate_limit <= (
                SELECT count(*) FROM queue_job_rate_start s
                 WHERE s.channel = c.name
                   AND s.started_at > now_utc - make_interval(secs => {RATE_WINDOW_SECONDS})))
            OR (c.sequential AND EXISTS (
                SELECT 1 FROM queue_job f WHERE f.state = 'failed' AND f.channel = c.name));
        IF 'root' = ANY(blocked) THEN
            RETURN;
        END IF;
        -- A sequential channel starts no job that sorts after its first
        -- pending job of its own, be that one waiting for its eta or locked
        -- by a transaction (its capacity of 1 does the rest).
        IF true = ANY(sequential) THEN
            SELECT COALESCE(array_agg(s.name), '{{}}'), array_agg(h.priority),
                   array_agg(h.date_created), array_agg(h.id)
              INTO first_channels, first_priorities, first_dates, first_ids
              FROM unnest(channel_names, sequential) AS s(name, sequential)
              CROSS JOIN LATERAL (
                   SELECT h.priority, h.date_created, h.id FROM queue_job h
                    WHERE h.state = 'pending' AND h.channel = s.name
                    ORDER BY h.priority, h.date_created, h.id
                    LIMIT 1) AS h
             WHERE s.sequential AND s.name <> ALL(blocked);
        END IF;
        -- Candidates, best first: the first claimable job of each channel
        -- that has one (the channels found one index probe each, the last,
        -- NULL, standing for jobs without a channel), neither blocked nor
        -- behind its sequential channel's first job. The cost is one probe
        -- per channel with claimable jobs, whatever the backlog: a full
        -- channel's jobs, future etas and waiting graphs are never read.
        -- A candidate that a transaction holds (its row, or its liveness
        -- lock: a job requeued while its worker still runs it) is skipped,
        -- without waiting: the claim lock waits for nothing else.
        FOR attempt IN 1..{_CLAIM_ATTEMPTS} LOOP
            -- Ordered as the claimable index, which only it answers without
            -- a sort: an index of all jobs by channel would be read through
            -- every done job of the channels before the first claimable one.
            WITH RECURSIVE channels(name) AS (
                SELECT (SELECT j.channel FROM queue_job j
                         WHERE j.state = 'pending' AND NOT j.waits_for_eta
                           AND j.channel IS NOT NULL
                         ORDER BY j.channel, j.priority, j.date_created, j.id LIMIT 1)
                UNION ALL
                SELECT (SELECT j.channel FROM queue_job j
                         WHERE j.state = 'pending' AND NOT j.waits_for_eta
                           AND j.channel > c.name
                         ORDER BY j.channel, j.priority, j.date_created, j.id LIMIT 1)
                  FROM channels c WHERE c.name IS NOT NULL
            )
            SELECT f.id INTO candidate
              FROM channels c
             CROSS JOIN LATERAL (
                   (SELECT j.id, j.priority, j.date_created FROM queue_job j
                     WHERE j.state = 'pending' AND NOT j.waits_for_eta
                       AND j.channel = c.name AND j.id <> ALL(skipped)
                     ORDER BY j.priority, j.date_created, j.id LIMIT 1)
                   UNION ALL
                   (SELECT j.id, j.priority, j.date_created FROM queue_job j
                     WHERE c.name IS NULL AND j.state = 'pending' AND NOT j.waits_for_eta
                       AND j.channel IS NULL AND j.id <> ALL(skipped)
                     ORDER BY j.priority, j.date_created, j.id LIMIT 1)
                   ) AS f
             WHERE NOT EXISTS (
                   SELECT 1 FROM unnest(blocked) AS b(name)
                    WHERE {under("c.name", "b.name")})
               AND NOT EXISTS (
                   SELECT 1
                     FROM unnest(first_channels, first_priorities, first_dates, first_ids)
                          AS s(name, priority, date_created, id)
                    WHERE {under("c.name", "s.name")}
                      AND (f.priority, f.date_created, f.id)
                          > (s.priority, s.date_created, s.id))
             ORDER BY f.priority, f.date_created, f.id
             LIMIT 1;
            IF candidate IS NULL THEN
                RETURN;
            END IF;
            PERFORM 1 FROM queue_job j
              WHERE j.id = candidate AND j.state = 'pending' AND NOT j.waits_for_eta
                FOR NO KEY UPDATE SKIP LOCKED;
            -- The liveness lock, taken before the claim commits.
            IF FOUND AND pg_try_advisory_lock(lock_namespace, candidate) THEN
                UPDATE queue_job j SET {START_SET} WHERE j.id = candidate
             RETURNING j.* INTO claimed;
                EXIT;
            END IF;
            skipped := skipped || candidate;
            candidate := NULL;
        END LOOP;
        IF claimed.id IS NULL THEN
            RETURN;
        END IF;
        IF 0 < ANY(throttles) THEN
            INSERT INTO queue_job_throttle (channel, last_start)
            SELECT c.name, claimed.date_started
              FROM unnest(channel_names, throttles) AS c(name, throttle)
             WHERE c.throttle > 0 AND (c.name = 'root' OR {under("claimed.channel", "c.name")})
                ON CONFLICT (channel) DO UPDATE SET last_start = EXCLUDED.last_start;
            IF FOUND THEN
                -- Have the runners read when the throttle ends (claim.py).
                PERFORM pg_notify('{NOTIFY_CHANNEL}', '{ETA_PAYLOAD}');
            END IF;
        END IF;
        IF 0 < ANY(rate_limits) THEN
            DELETE FROM queue_job_rate_start
             WHERE started_at <= now_utc - make_interval(secs => {RATE_WINDOW_SECONDS});
            INSERT INTO queue_job_rate_start (channel, started_at)
            SELECT c.name, claimed.date_started
              FROM unnest(channel_names, rate_limits) AS c(name, rate_limit)
             WHERE c.rate_limit > 0 AND (c.name = 'root' OR {under("claimed.channel", "c.name")});
            IF FOUND THEN
                -- Have the runners read when the window frees a start (claim.py).
                PERFORM pg_notify('{NOTIFY_CHANNEL}', '{ETA_PAYLOAD}');
            END IF;
        END IF;
        RETURN NEXT claimed;
    END;
    $$ LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan
    """,
    f"COMMENT ON FUNCTION {CLAIM_FUNCTION} IS 'queue_job schema {VERSION}'",
)


def ensure(cr):
    """Create or update the objects above; idempotent."""
    for statement in _STATEMENTS:
        cr.execute(statement)


def is_current(cr):
    """Whether the database has the objects of this version (see :data:`VERSION`)."""
    cr.execute(
        "SELECT obj_description(to_regprocedure(%s), 'pg_proc')", (CLAIM_FUNCTION,)
    )
    return cr.fetchone()[0] == f"queue_job schema {VERSION}"


def drop(cr):
    """Drop the functions and the table above; indexes and triggers go with their tables.

    The uninstall hook: dropping the ``queue_job`` table drops
    ``queue_job_claim`` (it returns its rows) but not ``queue_job_notify`` nor
    ``queue_job_eta_written``.
    """
    cr.execute("DROP FUNCTION IF EXISTS queue_job_notify() CASCADE")
    cr.execute("DROP FUNCTION IF EXISTS queue_job_channel_notify() CASCADE")
    cr.execute("DROP FUNCTION IF EXISTS queue_job_eta_written() CASCADE")
    cr.execute(f"DROP FUNCTION IF EXISTS {CLAIM_FUNCTION}")
    cr.execute(f"DROP FUNCTION IF EXISTS {CHANNELS_FUNCTION}")
    cr.execute("DROP TABLE IF EXISTS queue_job_throttle, queue_job_rate_start")
