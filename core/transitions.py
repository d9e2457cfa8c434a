# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Job state transitions that touch the job graph: the one place they are written.

The runner (after a job ran) and the form buttons (Set Done, Set Failed,
Cancel, Requeue, Run Now) call these functions with a cursor; nothing else
changes a job's state in SQL. Each function acts on a whole set of jobs with a
constant number of statements, whatever the size of the graph.

Invariants kept here:

* ``pending_dependency_count`` of a job is the number of its incoming edges in
  ``queue_job_dependency`` that are not ``released``.
* An edge is released once: one statement flips the unreleased edges of done
  jobs and decrements their dependents in the same breath. A second
  completion of the same job (a redelivery, a double click, a Requeue then
  done) finds no unreleased edge and counts nothing; a release that a
  crash left undone can be run again at any time.
* A job whose counter reaches 0 while waiting becomes ``pending`` in that
  statement; the ``queue_job_notify`` trigger wakes the runners on commit.
* A job that fails (or is cancelled) for good fails (or cancels) every job
  waiting on it through unreleased edges, transitively. Those jobs carry
  ``exc_name`` :data:`DEPENDENCY_FAILED` or :data:`DEPENDENCY_CANCELLED`, so
  that a Requeue of the cause can give them their waiting state back.

Concurrency: every function first locks the rows it may write, in ``id``
order, so two transactions releasing overlapping dependents (say the members
of ``chain(group(a, b), group(c, d))``) queue up instead of deadlocking.

This module imports nothing from Odoo; it works on an Odoo cursor as on a
psycopg2 cursor. Over 400 lines, most of them SQL: the house keeps every
statement that changes a job's state in one module (and the claim's in
``schema.py``), so that none is written twice.
"""

from .schema import NOTIFY_CHANNEL, NOW_UTC, START_SET, STOP_PAYLOAD
from .states import QUEUED_SQL, RUNNING_SQL, STARTED

DEPENDENCY_FAILED = "DependencyFailed"
DEPENDENCY_CANCELLED = "DependencyCancelled"

# state -> (exc_name of the dependents it cascades to, verb of their message)
_CASCADES = {
    "failed": (DEPENDENCY_FAILED, "failed"),
    "cancelled": (DEPENDENCY_CANCELLED, "was cancelled"),
}

# Incoming edges of job ``j`` whose dependency is not done yet.
_UNRELEASED = """(SELECT count(*) FROM queue_job_dependency e
                   WHERE e.job_id = j.id AND NOT e.released)"""

# Seconds from the start of the run to now; kept as is for a job that did not run.
_EXEC_TIME = f"COALESCE(EXTRACT(EPOCH FROM {NOW_UTC} - date_started), exec_time)"

# Dependents reached from %(ids)s through unreleased edges, walking on through
# jobs still in wait_dependencies (a job in another state has its own fate).
_DESCENDANTS_WAITING_DEPENDENCIES = """
    descendants(id, cause_id) AS (
        SELECT e.job_id, e.dependency_id
          FROM queue_job_dependency e
          JOIN queue_job child ON child.id = e.job_id
         WHERE e.dependency_id = ANY(%(ids)s) AND NOT e.released
           AND child.state = 'wait_dependencies'
        UNION
        SELECT e.job_id, d.cause_id
          FROM queue_job_dependency e
          JOIN descendants d ON e.dependency_id = d.id
          JOIN queue_job child ON child.id = e.job_id
         WHERE NOT e.released AND child.state = 'wait_dependencies'
    )
"""

# Dependents failed or cancelled by a cascade, reached from %(ids)s the same way.
_CASCADED_DESCENDANTS = """
    descendants(id) AS (
        SELECT e.job_id
          FROM queue_job_dependency e
          JOIN queue_job child ON child.id = e.job_id
         WHERE e.dependency_id = ANY(%(ids)s) AND NOT e.released
           AND child.exc_name = ANY(%(markers)s)
        UNION
        SELECT e.job_id
          FROM queue_job_dependency e
          JOIN descendants d ON e.dependency_id = d.id
          JOIN queue_job child ON child.id = e.job_id
         WHERE NOT e.released AND child.exc_name = ANY(%(markers)s)
    )
"""


def _lock(cr, ids, seeds=None, with_causes=False):
    """Lock the jobs ``ids`` and everything downstream of ``seeds`` (default: ``ids``).

    Downstream is followed through unreleased edges, whatever the states: a
    superset of what the transitions below may write, locked in one
    statement, in id order, so that concurrent transitions queue up instead
    of deadlocking. A seed that is not in ``ids`` is only read: locking it
    while holding its dependents would take locks out of order.

    ``with_causes`` also locks what is downstream of the failed or cancelled
    jobs that these jobs still wait on: what :func:`recascade` may fail
    again after a restore, so that it takes no lock of its own later.
    """
    cr.execute(
        """
        WITH RECURSIVE downstream(id) AS (
            SELECT job_id FROM queue_job_dependency
             WHERE dependency_id = ANY(%(seeds)s) AND NOT released
            UNION
            SELECT e.job_id FROM queue_job_dependency e
              JOIN downstream d ON e.dependency_id = d.id
             WHERE NOT e.released
        ), causes(id) AS (
            SELECT e.dependency_id
              FROM queue_job_dependency e
              JOIN queue_job dep ON dep.id = e.dependency_id
             WHERE %(with_causes)s AND NOT e.released
               AND dep.state IN ('failed', 'cancelled')
               AND (e.job_id = ANY(%(ids)s) OR e.job_id IN (SELECT id FROM downstream))
        ), further(id) AS (
            SELECT job_id FROM queue_job_dependency
             WHERE dependency_id IN (SELECT id FROM causes) AND NOT released
            UNION
            SELECT e.job_id FROM queue_job_dependency e
              JOIN further f ON e.dependency_id = f.id
             WHERE NOT e.released
        )
        SELECT id FROM queue_job
         -- One array of ids, not OR-ed conditions: those plan as a scan of
         -- the whole table; this is an index scan.
         WHERE id = ANY(ARRAY(SELECT unnest(%(ids)s::int[])
                              UNION SELECT id FROM downstream
                              UNION SELECT id FROM further))
         ORDER BY id FOR NO KEY UPDATE
        """,
        {
            "ids": list(ids),
            "seeds": list(ids if seeds is None else seeds),
            "with_causes": with_causes,
        },
    )


def mark_done(cr, ids, from_states, result=None, release=True):
    """Move ``ids`` that are in ``from_states`` to ``done``; returns the ids that moved.

    With ``release`` (the default), their dependents are released in the same
    transaction; those that a cascade from these jobs had failed or
    cancelled wait again first (Set Done on a failed member lets its group's
    callback run). The runner passes ``release=False`` in the job's own
    transaction and calls :func:`release_dependents` right after it commits.
    """
    if not ids:
        return []
    # Without the release (the runner's job transaction, in REPEATABLE READ)
    # only the jobs themselves are written, and the UPDATE locks them: locking
    # their dependents there would fail to serialize when a sibling has just
    # released them.
    if release:
        _lock(cr, ids, with_causes=True)
    cr.execute(
        f"""
        UPDATE queue_job j
           SET state = 'done', date_done = {NOW_UTC}, exec_time = {_EXEC_TIME},
               result = COALESCE(%(result)s, j.result),
               exc_name = NULL, exc_message = NULL, exc_info = NULL
          FROM (SELECT id, state FROM queue_job WHERE id = ANY(%(ids)s)) previous
         WHERE j.id = previous.id AND j.state = ANY(%(from_states)s)
     RETURNING j.id, previous.state IN ('failed', 'cancelled')
        """,
        {"ids": list(ids), "from_states": list(from_states), "result": result},
    )
    rows = cr.fetchall()
    moved = [job_id for job_id, _ended in rows]
    if release:
        # Only a job that had failed or been cancelled has cascaded dependents.
        restored = _restore_cascaded(cr, [job_id for job_id, ended in rows if ended])
        release_dependents(cr, moved)
        recascade(cr, restored)
    return moved


def release_dependents(cr, ids=None, skip_locked=False):
    """Release the dependents of the ``done`` jobs among ``ids`` (all done jobs if None).

    One statement flips each unreleased edge of a done job and decrements its
    dependent by the number of edges flipped; a dependent that reaches 0
    while waiting becomes pending. An edge already released is not counted
    again, so calling this twice, or from two workers, is harmless.
    With ``skip_locked``, the edges to dependents that another transaction
    holds are left unreleased, for a later call (the rescue's), instead of
    waiting for that transaction.
    """
    if ids is not None and not ids:
        return
    scope = "d.id = ANY(%(ids)s)" if ids is not None else "true"
    # Lock the dependents in id order before updating them (see _lock).
    cr.execute(
        f"""
        SELECT id FROM queue_job
         WHERE id IN (SELECT e.job_id
                        FROM queue_job_dependency e
                        JOIN queue_job d ON d.id = e.dependency_id
                       WHERE {scope} AND d.state = 'done' AND NOT e.released)
         ORDER BY id FOR NO KEY UPDATE {"SKIP LOCKED" if skip_locked else ""}
        """,
        {"ids": list(ids or ())},
    )
    locked = [job_id for (job_id,) in cr.fetchall()]
    if not locked:
        return  # nothing to release: no need for the UPDATE
    cr.execute(
        f"""
        WITH released AS (
            UPDATE queue_job_dependency e
               SET released = true
              FROM queue_job d
             WHERE e.dependency_id = d.id AND {scope}
               AND d.state = 'done' AND NOT e.released
               {"AND e.job_id = ANY(%(locked)s)" if skip_locked else ""}
         RETURNING e.job_id
        ), counts AS (
            SELECT job_id, count(*) AS n FROM released GROUP BY job_id
        )
        UPDATE queue_job j
           SET pending_dependency_count = j.pending_dependency_count - c.n,
               state = CASE
                   WHEN j.state = 'wait_dependencies'
                    AND j.pending_dependency_count = c.n THEN 'pending'
                   ELSE j.state END
          FROM counts c
         WHERE j.id = c.job_id
        """,
        {"ids": list(ids or ()), "locked": locked},
    )


def _end_with_cascade(cr, ids, from_states, state, exc, causes=()):
    """Move ``ids`` in ``from_states`` to ``state`` (failed or cancelled), then
    give the same fate to the jobs waiting on them or on ``causes``."""
    if not ids and not causes:
        return []
    marker, verb = _CASCADES[state]
    _lock(cr, ids, seeds=[*ids, *causes])
    seeded = "ARRAY(SELECT id FROM ended) || %(causes)s::int[]"
    cr.execute(
        f"""
        WITH RECURSIVE ended AS (
            UPDATE queue_job
               SET state = %(state)s, date_done = {NOW_UTC}, exec_time = {_EXEC_TIME},
                   exc_name = %(exc_name)s, exc_message = %(exc_message)s,
                   exc_info = %(exc_info)s
             WHERE id = ANY(%(ids)s) AND state = ANY(%(from_states)s)
         RETURNING id
        ), {_DESCENDANTS_WAITING_DEPENDENCIES.replace("%(ids)s", seeded)},
        causes AS (
            SELECT DISTINCT ON (d.id) d.id, cause.uuid, cause.name
              FROM descendants d JOIN queue_job cause ON cause.id = d.cause_id
             ORDER BY d.id, d.cause_id
        ), cascaded AS (
            UPDATE queue_job j
               SET state = %(state)s, date_done = {NOW_UTC},
                   exc_name = %(marker)s,
                   exc_message = 'Dependency ' || COALESCE(c.name, 'job')
                                 || ' (' || c.uuid || ') ' || %(verb)s,
                   exc_info = NULL
              FROM causes c
             WHERE j.id = c.id AND j.state = 'wait_dependencies'
               AND j.id NOT IN (SELECT id FROM ended)
        )
        SELECT id FROM ended
        """,
        {
            "ids": list(ids),
            "from_states": list(from_states),
            "causes": list(causes),
            "state": state,
            "marker": marker,
            "verb": verb,
            "exc_name": exc.get("exc_name"),
            "exc_message": exc.get("exc_message"),
            "exc_info": exc.get("exc_info"),
        },
    )
    return [row[0] for row in cr.fetchall()]


def mark_failed(cr, ids, from_states, exc_name=None, exc_message=None, exc_info=None):
    """Fail ``ids`` that are in ``from_states``; their waiting dependents fail too.

    Returns the ids that moved.
    """
    exc = {"exc_name": exc_name, "exc_message": exc_message, "exc_info": exc_info}
    return _end_with_cascade(cr, ids, from_states, "failed", exc)


def mark_cancelled(cr, ids, from_states, message=None):
    """Cancel ``ids`` that are in ``from_states``; their waiting dependents are cancelled.

    When ``started`` jobs may be among them, the runners are told at commit
    to stop those they run (the job's transaction, terminated, is rolled
    back). Returns the ids that moved.
    """
    moved = _end_with_cascade(cr, ids, from_states, "cancelled", {"exc_message": message})
    if moved and STARTED in from_states:
        cr.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, STOP_PAYLOAD))
    return moved


def requeue(cr, ids, from_states):
    """Make ``ids`` that are in ``from_states`` runnable again, with a fresh retry count.

    A job goes back to ``pending``, or to ``wait_dependencies`` when some of
    its dependencies are not done yet. Dependents that a cascade from these
    jobs had failed or cancelled wait again (:func:`_restore_cascaded`).
    Returns the ids that moved.
    """
    if not ids:
        return []
    _lock(cr, ids, with_causes=True)
    cr.execute(
        f"""
        UPDATE queue_job j
           SET state = CASE WHEN {_UNRELEASED} > 0
                            THEN 'wait_dependencies' ELSE 'pending' END,
               pending_dependency_count = {_UNRELEASED},
               retry = 0, eta = NULL, date_done = NULL, date_started = NULL,
               date_enqueued = NULL, exec_time = NULL, result = NULL,
               exc_name = NULL, exc_message = NULL, exc_info = NULL
         WHERE j.id = ANY(%(ids)s) AND j.state = ANY(%(from_states)s)
     RETURNING j.id
        """,
        {"ids": list(ids), "from_states": list(from_states)},
    )
    requeued = [row[0] for row in cr.fetchall()]
    restored = _restore_cascaded(cr, requeued)
    recascade(cr, requeued + restored)
    return requeued


def _restore_cascaded(cr, ids):
    """Give the dependents that a cascade from ``ids`` failed or cancelled their
    waiting state back, with counters recomputed from their edges.

    Returns their ids; the caller holds the locks (see :func:`_lock`).
    """
    if not ids:
        return []
    cr.execute(
        f"""
        WITH RECURSIVE {_CASCADED_DESCENDANTS}
        UPDATE queue_job j
           SET state = 'wait_dependencies',
               pending_dependency_count = {_UNRELEASED},
               date_done = NULL, exc_name = NULL, exc_message = NULL, exc_info = NULL
         WHERE j.id IN (SELECT id FROM descendants) AND j.id <> ALL(%(ids)s)
     RETURNING j.id
        """,
        {"ids": list(ids), "markers": [marker for marker, _verb in _CASCADES.values()]},
    )
    return [row[0] for row in cr.fetchall()]


def recascade(cr, waiting_ids):
    """Fail or cancel the jobs of ``waiting_ids`` that wait on a failed or cancelled job.

    Used again after a restore, and once on the jobs adopted from OCA's
    queue_job, which does not cascade failures (``from_oca.py``).
    """
    if not waiting_ids:
        return
    cr.execute(
        """
        SELECT DISTINCT dep.id, dep.state
          FROM queue_job_dependency e JOIN queue_job dep ON dep.id = e.dependency_id
         WHERE e.job_id = ANY(%(ids)s) AND NOT e.released
           AND dep.state IN ('failed', 'cancelled')
        """,
        {"ids": list(waiting_ids)},
    )
    by_state = {"failed": [], "cancelled": []}
    for dep_id, state in cr.fetchall():
        by_state[state].append(dep_id)
    for state, causes in by_state.items():
        _end_with_cascade(cr, (), (), state, {}, causes=causes)


def wait_for_more(cr, edges):
    """Make jobs that wait already wait for more: ``edges`` are
    ``(job_id, dependency_id)`` pairs whose ``job_id`` exists and waits.

    A graph whose dependent takes, by its identity key, the place of a job
    already waiting makes that job wait for the graph's jobs too. Edges that
    exist are left as they are; each new one counts on its job, and a
    ``pending`` job among them waits again. A job that left the waiting
    states meanwhile (a runner started it) gets no edge: it runs without
    waiting, as the job it is. Returns the ids of the jobs that wait for more.
    """
    if not edges:
        return []
    job_ids = sorted({job_id for job_id, _dependency_id in edges})
    _lock(cr, job_ids)
    cr.execute(
        f"""
        WITH added AS (
            INSERT INTO queue_job_dependency (job_id, dependency_id)
            SELECT e.job_id, e.dependency_id
              FROM unnest(%(job_ids)s::int[], %(dependency_ids)s::int[])
                   AS e(job_id, dependency_id)
              JOIN queue_job j ON j.id = e.job_id AND j.state IN {QUEUED_SQL}
            ON CONFLICT DO NOTHING
            RETURNING job_id
        )
        UPDATE queue_job j
           SET pending_dependency_count = j.pending_dependency_count + a.count,
               state = 'wait_dependencies'
          FROM (SELECT job_id, count(*) AS count FROM added GROUP BY job_id) a
         WHERE j.id = a.job_id
     RETURNING j.id
        """,
        {
            "job_ids": [job_id for job_id, _dependency_id in edges],
            "dependency_ids": [dependency_id for _job_id, dependency_id in edges],
        },
    )
    return [row[0] for row in cr.fetchall()]


def start(cr, ids, from_states):
    """Move ``ids`` in ``from_states`` that wait for nothing to ``started`` (Run Now).

    The try counts, as when a runner claims a job: both set :data:`schema.START_SET`. Returns the ids that moved.
    """
    if not ids:
        return []
    cr.execute(
        f"""
        UPDATE queue_job j
           SET {START_SET}
         WHERE j.id = ANY(%(ids)s) AND j.state = ANY(%(from_states)s)
           AND j.pending_dependency_count = 0
     RETURNING j.id
        """,
        {"ids": list(ids), "from_states": list(from_states)},
    )
    return [row[0] for row in cr.fetchall()]


def retry_later(
    cr, ids, delay_seconds, exc_name=None, exc_message=None, exc_info=None, retry=None
):
    """Put running ``ids`` back to ``pending``, to start again in ``delay_seconds``.

    Used for a retryable error and for a job whose worker died; the retry
    count was taken when the job was claimed. ``retry``, when given, is the
    count to keep instead (a try given back). Returns the ids that moved.
    """
    if not ids:
        return []
    cr.execute(
        f"""
        UPDATE queue_job
           SET state = 'pending',
               eta = CASE WHEN %(delay)s > 0
                          THEN {NOW_UTC} + make_interval(secs => %(delay)s) END,
               date_enqueued = NULL, date_started = NULL,
               retry = COALESCE(%(retry)s, retry),
               exc_name = %(exc_name)s, exc_message = %(exc_message)s,
               exc_info = %(exc_info)s
         WHERE id = ANY(%(ids)s) AND state IN {RUNNING_SQL}
     RETURNING id
        """,
        {
            "ids": list(ids),
            "delay": delay_seconds,
            "exc_name": exc_name,
            "exc_message": exc_message,
            "exc_info": exc_info,
            "retry": retry,
        },
    )
    return [row[0] for row in cr.fetchall()]
