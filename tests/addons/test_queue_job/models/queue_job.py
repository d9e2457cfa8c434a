# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Overrides of queue.job hooks, as OCA's client addons write them."""

from odoo import models

MUTED_LOGIN_PREFIX = "qj_muted_"
QUIET_MARK = "[quiet]"


class QueueJob(models.Model):
    _inherit = "queue.job"

    def _subscribe_users_domain(self):
        # As queue_job_subscribe does: narrow OCA's domain.
        domain = super()._subscribe_users_domain()
        domain.append(("login", "not like", MUTED_LOGIN_PREFIX + "%"))
        return domain

    def _message_failed_job(self):
        if (self.exc_message or "").startswith(QUIET_MARK):
            return None
        return super()._message_failed_job()

    def related_action_test_label(self, label):
        """A related action of the job function's data, with its kwargs."""
        self.ensure_one()
        return {"type": "ir.actions.act_window", "name": label, "res_model": self.model_name}
