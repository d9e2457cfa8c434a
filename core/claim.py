# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The SQL through which runners share the queue: claim a job, release it, rescue orphans.

PostgreSQL is the only coordinator between runner processes, on any number
of hosts. Two advisory locks, both in :data:`LOCK_NAMESPACE`, carry it:

* the *claim lock*, ``(LOCK_NAMESPACE, CLAIM_LOCK_KEY)``, held for the length
  of a claim transaction, so that claims happen one after the other: each
  one counts the running jobs that the previous ones committed, and channel
  capacities hold across processes. Nothing under it waits for another
  lock: the claim takes row and liveness locks with try-locks;
* a job's *liveness lock*, ``(LOCK_NAMESPACE, job id)``, a session lock taken
  by the claim on the executor's connection *before* the claim commits, and
  released after the job's outcome is committed (the rescue takes it too,
  for its transaction). A job that is ``started``
  while nobody holds its liveness lock therefore lost its worker (process
  killed, host gone, connection cut): :func:`rescue_orphans` puts it back.
  No guess about how long a job may run is involved.

Each function takes a DB-API cursor (an Odoo cursor or a psycopg2 one) and
leaves the transaction open: the caller commits. The claim and the rescue
start their transaction in READ COMMITTED (see ``isolation.read_committed``).
"""

import logging
from contextlib import contextmanager

import psycopg2

from . import isolation, transitions
from .schema import NOW_UTC, RATE_WINDOW_SECONDS
from .states import RUNNING_SQL, RUNNING_STATES
from .channels import ROOT, SOURCE_DATABASE, SOURCE_DEFAULT, Channel, Channels

_logger = logging.getLogger(__name__)

#: First key of every advisory lock of the runners: an arbitrary int4 that
#: nothing else on the database may use as the first of two keys.
LOCK_NAMESPACE = 1_903_520_354
#: ``exc_name`` of a job whose worker died while running it.
WORKER_DIED = "WorkerDied"

# Spelled as the predicate of queue_job_running_idx, so the planner uses it.
_RUNNING = f"state IN {RUNNING_SQL}"


def _setting_arrays(channels):
    """The entries of the channels setting (:class:`~.channels.Channels`) as
    the arrays of ``queue_job_claim`` and ``queue_job_channels``."""
    given = channels.given
    return (
        [channel.name for channel in given],
        [channel.capacity for channel in given],
        [channel.sequential for channel in given],
        [channel.throttle for channel in given],
        [channel.rate_limit for channel in given],
        [channel.paused for channel in given],
    )


def channels_in_force(cr, channels):
    """The channels in force on ``cr``'s database: the entries of the setting
    ``channels``, and for the other channels the values of their records.

    Return :class:`~.channels.Channels` whose channels say their source.
    """
    cr.execute(
        "SELECT * FROM queue_job_channels(%s::varchar[], %s::integer[], %s::boolean[],"
        " %s::integer[], %s::integer[], %s::boolean[])",
        _setting_arrays(channels),
    )
    in_force = {}
    for name, capacity, sequential, throttle, rate_limit, paused, from_database in sorted(
        cr.fetchall()
    ):
        given = channels.channels.get(name)
        if from_database:
            source = SOURCE_DATABASE
        elif given is not None:
            source = given.source
        else:
            source = SOURCE_DEFAULT
        in_force[name] = Channel(
            name,
            capacity,
            sequential=sequential,
            throttle=throttle,
            paused=paused,
            # Time limits are the setting's only.
            timeout=given.timeout if given is not None else None,
            rate_limit=rate_limit,
            source=source,
        )
    return Channels(in_force)


def claim_job(cr, channels):
    """Start the next runnable job and take its liveness lock on ``cr``'s connection.

    Runnable: pending, eta reached, and no channel it goes through full,
    paused, throttled, at its rate limit or waiting (see :mod:`~.channels`):
    the entries of the setting ``channels`` and, for the channels these do
    not name, the channel records, as the claim reads them under its lock.
    Jobs go by priority, then age. The retry count is a count of tries: the claim
    increments it. Return the claimed job's row as a dict (column: value),
    or None when nothing is runnable.

    The claim is the database function ``queue_job_claim`` (``schema.py``):
    one round trip under the claim lock. On an autocommit
    connection (the runner's) it is a transaction of its own, which needs the
    session's default isolation to be READ COMMITTED.
    """
    isolation.read_committed(cr)
    cr.execute(
        "SELECT * FROM queue_job_claim(%s, %s::varchar[], %s::integer[], %s::boolean[],"
        " %s::integer[], %s::integer[], %s::boolean[])",
        (LOCK_NAMESPACE, *_setting_arrays(channels)),
    )
    row = cr.fetchone()
    if row is None:
        return None
    job = dict(zip([column.name for column in cr.description], row, strict=True))
    if _logger.isEnabledFor(logging.DEBUG):
        # As OCA's runner says it of a channel that falls back on an ancestor
        # other than root.
        fallback = channels.lineage(job["channel"])[0]
        if fallback not in (job["channel"], ROOT):
            _logger.debug("%s has no specific configuration: using %s", job["channel"], fallback)
    return job


def hold_liveness_lock(cr, job_id):
    """Take the liveness lock of ``job_id`` on ``cr``'s connection.

    Whoever moves a job to ``started`` must hold it before that commits, or
    the rescue takes the job for an orphan.
    """
    cr.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, job_id))


@contextmanager
def liveness_locks_elsewhere(connect, job_ids):
    """Hold the liveness locks of ``job_ids`` on a connection of their own while the block runs.

    ``connect()`` opens a psycopg2 connection to the jobs' database; it is
    closed on the way out, whatever the block did (committed, raised, failed
    to serialize), and the locks end with it: no pooled connection can keep
    them. Run Now uses it for the jobs it started in the request's
    transaction: they must be started (their rows locked by that
    transaction) first, or a runner could claim one of them and wait for its
    liveness lock under the claim lock.

    Yields the connection's cursor (in autocommit), on which the block drops
    the lock of each job whose run is over (:func:`drop_liveness_lock`): a
    job whose retry committed is pending again, and a runner claiming it
    must not wait for the others.
    """
    connection = connect()
    try:
        connection.autocommit = True
        with connection.cursor() as cr:
            for job_id in job_ids:
                hold_liveness_lock(cr, job_id)
            yield cr
    finally:
        connection.close()


def drop_liveness_lock(cr, job_id):
    """Drop the liveness lock of ``job_id`` once its outcome is committed.

    Odoo's pool would drop it too, but only when it lends the connection
    again (its reset discards session state): until then a job put back to
    pending would look alive to the rescue, and block the claim that picks it
    up. Return False if this session did not hold the lock.
    """
    cr.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, job_id))
    return cr.fetchone()[0]


def backend_pid(cr):
    """The server process of ``cr``'s connection, which :func:`take_over` terminates."""
    cr.execute("SELECT pg_backend_pid()")
    return cr.fetchone()[0]


def take_over(cr, job_id, pid):
    """Terminate the server process ``pid`` that runs job ``job_id``, and hold its
    liveness lock on ``cr``'s connection once that process is gone.

    The job's transaction is rolled back with its process, and its locks
    freed. PostgreSQL grants a released lock to the sessions waiting for it
    before anyone else may try it: no rescue can find the job without its
    lock and requeue it before the caller records its outcome in this
    transaction (READ COMMITTED: it sees a ``done`` that the job committed
    first). The caller commits, then drops the liveness lock
    (:func:`drop_liveness_lock`), even when it rolls back: it is a session
    lock. No claim waits for any of this.
    """
    isolation.read_committed(cr)
    # Allowed on the sessions of one's own role: the runner's connections share theirs.
    cr.execute("SELECT pg_terminate_backend(%s)", (pid,))
    if not cr.fetchone()[0]:
        raise RuntimeError(f"could not terminate server process {pid} of job {job_id}")
    # Granted when the process ends (or at once if its job had ended).
    cr.execute("SET LOCAL lock_timeout = '10s'")
    hold_liveness_lock(cr, job_id)


def cancelled_among(cr, job_ids):
    """Those of ``job_ids`` that are cancelled: running jobs that must stop."""
    cr.execute(
        "SELECT id FROM queue_job WHERE id = ANY(%s) AND state = 'cancelled'", (list(job_ids),)
    )
    return [job_id for (job_id,) in cr.fetchall()]


def rescue_orphans(cr):
    """Put back the running jobs whose worker died; return (requeued ids, failed ids).

    A job with tries left goes back to pending, to run again at once (its
    retry count already holds the try that died). A job that used its last
    try fails, and so do the jobs waiting on it (max_retries 0: unlimited).

    The rescue does not take the claim lock: it takes the liveness lock of
    each running job, for its transaction, with a try-lock. Taken, nobody
    holds it: the worker is gone, and no claim can start the job again
    before the rescue commits (a claim skips a job whose liveness lock it
    cannot take). A job whose row a transaction holds (a form's, or Run
    Now's final transition) is skipped, not waited for: the next rescue sees
    it again.
    """
    isolation.read_committed(cr)
    # The running jobs are read first (their index holds only them), so that
    # the try-lock is never taken on any other job; a lock is reentrant, so
    # those whose lock this session holds are left out first.
    cr.execute(
        f"""
        WITH running AS MATERIALIZED (
            SELECT id FROM queue_job WHERE {_RUNNING}
            EXCEPT
            SELECT objid::bigint::integer FROM pg_locks
             WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND objsubid = 2
               AND classid = %(namespace)s::oid
        )
        SELECT j.id, j.max_retries > 0 AND j.retry >= j.max_retries
          FROM running r JOIN queue_job j ON j.id = r.id
         WHERE pg_try_advisory_xact_lock(%(namespace)s, r.id) AND j.{_RUNNING}
         ORDER BY j.id
           FOR NO KEY UPDATE OF j SKIP LOCKED
        """,
        {"namespace": LOCK_NAMESPACE},
    )
    rows = cr.fetchall()
    exhausted = [job_id for job_id, no_try_left in rows if no_try_left]
    retryable = [job_id for job_id, no_try_left in rows if not no_try_left]
    requeued = transitions.retry_later(
        cr,
        retryable,
        0,
        exc_name=WORKER_DIED,
        exc_message="worker died while running the job; requeued",
    )
    # Failing cascades to the jobs that wait on these: if a transaction
    # holds one of them, the rescue fails these jobs at a later sweep rather
    # than wait for it.
    cr.execute("SAVEPOINT queue_job_rescue")
    cr.execute("SET LOCAL lock_timeout = '1ms'")
    try:
        failed = transitions.mark_failed(
            cr,
            exhausted,
            RUNNING_STATES,
            exc_name=WORKER_DIED,
            exc_message="worker died while running the job, which had no try left",
        )
    except psycopg2.errors.LockNotAvailable:
        cr.execute("ROLLBACK TO SAVEPOINT queue_job_rescue")
        failed = []
    cr.execute("RELEASE SAVEPOINT queue_job_rescue")
    cr.execute("SET LOCAL lock_timeout TO DEFAULT")
    return requeued, failed


#: Jobs with unreleased edges that one :func:`release_orphaned_edges` looks at.
RELEASE_BATCH = 1000


def release_orphaned_edges(cr, after_id=0):
    """Release the dependents of done jobs whose worker died before it released them.

    Such a job's worker died between the job's commit and the release of
    its dependents (releasing twice is harmless, should that worker still be
    at it). One call looks at the next :data:`RELEASE_BATCH` jobs that have
    unreleased edges, in id order after ``after_id``, through the index of
    unreleased edges: its cost does not grow with the graphs that wait.
    Dependents that a transaction holds are left for a later call. Return
    the ``after_id`` of the next call: 0 once the end is reached.
    """
    isolation.read_committed(cr)
    cr.execute(
        """
        WITH RECURSIVE awaited(id) AS (
            SELECT (SELECT min(dependency_id) FROM queue_job_dependency
                     WHERE NOT released AND dependency_id > %(after)s)
            UNION ALL
            SELECT (SELECT min(e.dependency_id) FROM queue_job_dependency e
                     WHERE NOT e.released AND e.dependency_id > a.id)
              FROM awaited a WHERE a.id IS NOT NULL
        )
        SELECT a.id, d.state = 'done'
          FROM (SELECT id FROM awaited WHERE id IS NOT NULL LIMIT %(limit)s) a
          JOIN queue_job d ON d.id = a.id
        """,
        {"after": after_id, "limit": RELEASE_BATCH},
    )
    rows = cr.fetchall()
    transitions.release_dependents(
        cr, [job_id for job_id, done in rows if done], skip_locked=True
    )
    return max(job_id for job_id, _done in rows) if len(rows) == RELEASE_BATCH else 0


def seconds_until_next_eta(cr, channels):
    """Seconds (database clock) until the next time a job may become runnable, or None.

    That is the earliest future eta of a pending job, the end of a
    throttle delay of one of ``channels`` (:class:`~.channels.Channels`, in
    force), or the moment a channel at its rate limit may start again: when
    the ``rate_limit``-th latest of its starts leaves the window.
    """
    throttled = [channel for channel in channels.channels.values() if channel.throttle]
    limited = [channel for channel in channels.channels.values() if channel.rate_limit]
    cr.execute(
        f"""
        SELECT EXTRACT(EPOCH FROM min(at) - {NOW_UTC}) FROM (
            SELECT min(eta) AS at FROM queue_job
             WHERE state = 'pending' AND waits_for_eta AND eta > {NOW_UTC}
             UNION ALL
            SELECT t.last_start + make_interval(secs => c.throttle)
              FROM queue_job_throttle t
              JOIN unnest(%s::varchar[], %s::integer[]) AS c(name, throttle)
                ON c.name = t.channel
             WHERE t.last_start + make_interval(secs => c.throttle) > {NOW_UTC}
             UNION ALL
            SELECT s.started_at + make_interval(secs => {RATE_WINDOW_SECONDS})
              FROM unnest(%s::varchar[], %s::integer[]) AS c(name, rate_limit)
              CROSS JOIN LATERAL (
                   SELECT s.started_at FROM queue_job_rate_start s
                    WHERE s.channel = c.name
                      AND s.started_at > {NOW_UTC} - make_interval(secs => {RATE_WINDOW_SECONDS})
                    ORDER BY s.started_at DESC
                   OFFSET c.rate_limit - 1 LIMIT 1) AS s
        ) AS next
        """,
        (
            [channel.name for channel in throttled],
            [channel.throttle for channel in throttled],
            [channel.name for channel in limited],
            [channel.rate_limit for channel in limited],
        ),
    )
    seconds = cr.fetchone()[0]
    return None if seconds is None else float(seconds)
