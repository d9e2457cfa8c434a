# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
from odoo import api, models

from ..delay import Delayable, DelayableRecordset


class Base(models.AbstractModel):
    """Any model's methods can be delayed as jobs."""

    _inherit = "base"

    def with_delay(
        self,
        priority=None,
        eta=None,
        max_retries=None,
        description=None,
        channel=None,
        identity_key=None,
    ):
        """Delay the next method call as a job and return the :class:`Job`.

        ``self.with_delay(priority=20, eta=60).action_done()`` stores a job
        that runs ``action_done`` on ``self`` in a minute, in the caller's
        transaction. ``eta`` is a datetime (UTC), a timedelta or seconds;
        ``identity_key`` (a string or a function of the job, such as
        :func:`~odoo.addons.queue_job.job.identity_exact`) returns the job
        already waiting with the same key instead of storing a second one.
        """
        return DelayableRecordset(
            self,
            priority=priority,
            eta=eta,
            max_retries=max_retries,
            description=description,
            channel=channel,
            identity_key=identity_key,
        )

    def delayable(
        self,
        priority=None,
        eta=None,
        max_retries=None,
        description=None,
        channel=None,
        identity_key=None,
    ):
        """A :class:`Delayable`: a job of a graph, stored by ``delay()``.

        ``self.delayable().method(arg)`` records the call; combine delayables
        with ``on_done()``, ``chain()`` and ``group()``.
        """
        return Delayable(
            self,
            priority=priority,
            eta=eta,
            max_retries=max_retries,
            description=description,
            channel=channel,
            identity_key=identity_key,
        )

    @api.model
    def _job_prepare_context_before_enqueue_keys(self):
        """Context keys a job keeps from the context it was delayed in."""
        return ("tz", "lang", "allowed_company_ids", "force_company", "active_test")

    def _job_prepare_context_before_enqueue(self):
        """The part of the context stored with the job's records."""
        keys = self._job_prepare_context_before_enqueue_keys()
        return {key: value for key, value in self.env.context.items() if key in keys}
