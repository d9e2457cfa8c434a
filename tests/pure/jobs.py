# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Helpers to insert jobs and edges the way the addon stores them."""

import time
import uuid


def insert_job(cr, state="pending", channel="root", priority=10, name=None, **values):
    """Insert one job row and return its id."""
    row = {
        "uuid": str(uuid.uuid4()),
        "name": name,
        "state": state,
        "channel": channel,
        "priority": priority,
        "retry": 0,
        "max_retries": 5,
        "pending_dependency_count": 0,
        **values,
    }
    columns = ", ".join(row)
    placeholders = ", ".join(f"%({key})s" for key in row)
    cr.execute(
        f"INSERT INTO queue_job ({columns}, date_created) "
        f"VALUES ({placeholders}, now() AT TIME ZONE 'UTC') RETURNING id",
        row,
    )
    return cr.fetchone()[0]


def insert_graph(cr, edges, names=()):
    """Insert a job per name in ``names`` and ``edges`` as (dependent, dependency) names.

    Jobs with dependencies wait for them, with the matching counter.
    Returns {name: id}.
    """
    waiting_on = {}
    for dependent, dependency in edges:
        waiting_on.setdefault(dependent, []).append(dependency)
    all_names = list(dict.fromkeys([*names, *(n for edge in edges for n in edge)]))
    ids = {}
    for name in all_names:
        deps = waiting_on.get(name, [])
        ids[name] = insert_job(
            cr,
            state="wait_dependencies" if deps else "pending",
            name=name,
            pending_dependency_count=len(deps),
        )
    for dependent, dependency in edges:
        cr.execute(
            "INSERT INTO queue_job_dependency (job_id, dependency_id) VALUES (%s, %s)",
            (ids[dependent], ids[dependency]),
        )
    return ids


def states(cr, ids):
    """{name: (state, pending_dependency_count)} for ``ids`` as returned by insert_graph."""
    cr.execute(
        "SELECT id, state, pending_dependency_count FROM queue_job WHERE id = ANY(%s)",
        (list(ids.values()),),
    )
    by_id = {row[0]: row[1:] for row in cr.fetchall()}
    return {name: by_id[job_id] for name, job_id in ids.items()}


def set_state(cr, job_ids, state, **values):
    """Force ``job_ids`` into ``state`` (and set ``values``), bypassing the transitions."""
    assignments = ", ".join(["state = %(state)s", *(f"{key} = %({key})s" for key in values)])
    cr.execute(
        f"UPDATE queue_job SET {assignments} WHERE id = ANY(%(ids)s)",
        {**values, "state": state, "ids": list(job_ids)},
    )


def job_row(cr, job_id):
    """The queue_job row ``job_id`` as a dict."""
    cr.execute("SELECT * FROM queue_job WHERE id = %s", (job_id,))
    row = cr.fetchone()
    return dict(zip((column[0] for column in cr.description), row))


def is_released(cr, dependent_id, dependency_id):
    """Whether the edge dependent -> dependency is released."""
    cr.execute(
        "SELECT released FROM queue_job_dependency WHERE job_id = %s AND dependency_id = %s",
        (dependent_id, dependency_id),
    )
    return cr.fetchone()[0]


def counter_mismatches(cr):
    """[(id, name, state, counter, unreleased incoming edges)] for every job whose
    ``pending_dependency_count`` is not its number of unreleased incoming edges."""
    cr.execute(
        """
        SELECT j.id, j.name, j.state, j.pending_dependency_count, count(e.job_id)
          FROM queue_job j
          LEFT JOIN queue_job_dependency e ON e.job_id = j.id AND NOT e.released
         GROUP BY j.id
        HAVING j.pending_dependency_count IS DISTINCT FROM count(e.job_id)
         ORDER BY j.id
        """
    )
    return cr.fetchall()


def wait_until_blocked(conn, pid, timeout=10, unless=None):
    """Wait until the backend ``pid`` waits on a lock (``conn``: autocommit, to look),
    or until ``unless()`` is true."""
    deadline = time.monotonic() + timeout
    with conn.cursor() as cr:
        while time.monotonic() < deadline:
            cr.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
            if cr.fetchone()[0] == "Lock" or (unless is not None and unless()):
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} never blocked on a lock")


def set_channel(conn, complete_name, capacity=0, sequential=False, rate_limit=0, paused=False):
    """Create or update the channel record ``complete_name`` with these values, and commit."""
    values = (capacity, sequential, rate_limit, paused, complete_name)
    with conn, conn.cursor() as cr:
        cr.execute(
            "UPDATE queue_job_channel SET capacity = %s, sequential = %s, rate_limit = %s,"
            " paused = %s WHERE complete_name = %s",
            values,
        )
        if not cr.rowcount:
            cr.execute(
                "INSERT INTO queue_job_channel (capacity, sequential, rate_limit, paused,"
                " complete_name, name) VALUES (%s, %s, %s, %s, %s, %s)",
                (*values, complete_name.rsplit(".", 1)[-1]),
            )
