# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Helpers to insert jobs and edges the way the addon stores them."""

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
