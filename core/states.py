# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The states of a job, and the sets of them that the SQL spells.

The one home of the state vocabulary: ``job.py`` re-exports the constants
under OCA's names (``odoo.addons.queue_job.job.PENDING``, ...), the models,
the claim and the transitions take them from here.
"""

WAIT_DEPENDENCIES = "wait_dependencies"
PENDING = "pending"
ENQUEUED = "enqueued"
STARTED = "started"
DONE = "done"
CANCELLED = "cancelled"
FAILED = "failed"

STATES = [
    (WAIT_DEPENDENCIES, "Wait Dependencies"),
    (PENDING, "Pending"),
    (ENQUEUED, "Enqueued"),
    (STARTED, "Started"),
    (DONE, "Done"),
    (CANCELLED, "Cancelled"),
    (FAILED, "Failed"),
]

#: States of a job not run yet, for its dependencies or for a runner (the
#: identity key is unique among them).
QUEUED_STATES = (WAIT_DEPENDENCIES, PENDING, ENQUEUED)

#: States in which a job holds a slot of its channel.
RUNNING_STATES = (ENQUEUED, STARTED)


def _sql_list(values):
    return "({})".format(", ".join(f"'{value}'" for value in values))


#: The same states, as SQL writes them after ``IN``. Partial indexes and the
#: statements that should use them spell their predicates alike.
QUEUED_SQL = _sql_list(QUEUED_STATES)
RUNNING_SQL = _sql_list(RUNNING_STATES)
