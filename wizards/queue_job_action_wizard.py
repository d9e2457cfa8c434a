# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
from odoo import Command, api, fields, models
from odoo.tools.misc import clean_context

from ..models.queue_job import (
    CANCEL_FROM,
    REQUEUE_FROM,
    RUN_NOW_FROM,
    SET_DONE_FROM,
    SET_FAILED_FROM,
)

# action -> (the queue.job method it calls, the states that method acts on)
ACTIONS = {
    "requeue": ("requeue", REQUEUE_FROM),
    "done": ("button_done", SET_DONE_FROM),
    "failed": ("button_failed", SET_FAILED_FROM),
    "cancel": ("button_cancelled", CANCEL_FROM),
    "run_now": ("run_now", RUN_NOW_FROM),
}


class QueueJobActionWizard(models.TransientModel):
    """Confirm an action on the jobs selected in the list.

    It says how many of them the action will skip because of their state,
    then calls the same method as the form's button, on all of them at once.
    """

    _name = "queue.job.action.wizard"
    _description = "Act on Jobs"

    action = fields.Selection(
        [
            ("requeue", "Requeue"),
            ("done", "Set Done"),
            ("failed", "Set Failed"),
            ("cancel", "Cancel"),
            ("run_now", "Run Now"),
        ],
        required=True,
    )
    job_ids = fields.Many2many("queue.job", string="Jobs")
    acting_job_count = fields.Integer(compute="_compute_job_counts")
    skipped_job_count = fields.Integer(compute="_compute_job_counts")

    @api.model
    def default_get(self, fields):
        values = super().default_get(fields)
        context = self.env.context
        if "job_ids" in fields and context.get("active_model") == "queue.job":
            values["job_ids"] = [Command.set(context.get("active_ids") or [])]
        return values

    @api.depends("action", "job_ids.state", "job_ids.pending_dependency_count")
    def _compute_job_counts(self):
        for wizard in self:
            acting = wizard._acting_jobs()
            wizard.acting_job_count = len(acting)
            wizard.skipped_job_count = len(wizard.job_ids) - len(acting)

    def _acting_jobs(self):
        """The selected jobs the action will move."""
        if not self.action:
            return self.job_ids.browse()
        _method, states = ACTIONS[self.action]
        jobs = self.job_ids.filtered(lambda job: job.state in states)
        if self.action == "run_now":
            # Run Now starts no job that still waits for a dependency.
            jobs = jobs.filtered(lambda job: not job.pending_dependency_count)
        return jobs

    def action_confirm(self):
        """Run the action; its notification says what moved and what was skipped."""
        self.ensure_one()
        method, _states = ACTIONS[self.action]
        # The wizard's default_* keys must not reach the records the jobs create.
        jobs = self.job_ids.with_context(clean_context(self.env.context))
        return getattr(jobs, method)()
