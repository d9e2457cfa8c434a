# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
import functools

from odoo import api, models

from ..delay import Delayable, DelayableRecordset
from ..utils import must_run_without_delay


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
        timeout=None,
    ):
        """Delay the next method call as a job and return the :class:`Job`.

        ``self.with_delay(priority=20, eta=60).action_done()`` stores a job
        that runs ``action_done`` on ``self`` in a minute, in the caller's
        transaction. ``eta`` is a datetime (UTC), a timedelta or seconds;
        ``identity_key`` (a string or a function of the job, such as
        :func:`~odoo.addons.queue_job.job.identity_exact`) returns the job
        already waiting with the same key instead of storing a second one.
        ``timeout`` (seconds) stops the job if it runs longer, before its job
        function's limit and its channel's (see readme/USAGE.md).
        """
        return DelayableRecordset(
            self,
            priority=priority,
            eta=eta,
            max_retries=max_retries,
            description=description,
            channel=channel,
            identity_key=identity_key,
            timeout=timeout,
        )

    def delayable(
        self,
        priority=None,
        eta=None,
        max_retries=None,
        description=None,
        channel=None,
        identity_key=None,
        timeout=None,
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
            timeout=timeout,
        )

    def _patch_job_auto_delay(self, method_name, context_key=None):
        """A wrapper of ``method_name`` that delays the call as a job instead.

        Patch the method with it in ``_register_hook``::

            def _register_hook(self):
                patched = self._patch_job_auto_delay("foo", context_key="auto_delay_foo")
                type(self).foo = functools.update_wrapper(patched, type(self).foo)
                return super()._register_hook()

        A call of the patched method then returns the delayed :class:`Job`
        instead of running; with ``context_key`` only when that key is set in
        the caller's context (advised: callers that expect the method's
        result keep getting it). A method ``<method_name>_job_options``,
        called with the same arguments, may return the ``with_delay()``
        options (priority, description, identity_key...). The call runs at
        once inside the job itself (``job_uuid`` in the context) and in the
        no-delay mode.
        """
        origin = getattr(type(self), method_name)

        def auto_delay_wrapper(self, *args, **kwargs):
            wanted = self.env.context.get(context_key) if context_key else True
            if self.env.context.get("job_uuid") or not wanted or must_run_without_delay(self.env):
                return origin(self, *args, **kwargs)
            options_method = getattr(self, f"{method_name}_job_options", None)
            options = options_method(*args, **kwargs) if options_method else {}
            return getattr(self.with_delay(**options), method_name)(*args, **kwargs)

        auto_delay_wrapper.origin = origin
        return functools.update_wrapper(auto_delay_wrapper, origin)

    @api.model
    def _job_store_values(self, job):
        """Extra ``queue.job`` values to store with ``job`` (a hook; none by default).

        Return ``{field name: value}`` for stored fields that an addon adds
        to ``queue.job``: they are written when the job is inserted (in the
        same statement) and each time :meth:`Job.store` writes it. A method
        ``_job_store_values_for_<method name>`` adds values for the jobs of
        one method. The job's own fields cannot be set this way.
        """
        return {}

    @api.model
    def _job_prepare_context_before_enqueue_keys(self):
        """Context keys a job keeps from the context it was delayed in."""
        return ("tz", "lang", "allowed_company_ids", "force_company", "active_test")

    def _job_prepare_context_before_enqueue(self):
        """The part of the context stored with the job's records."""
        keys = self._job_prepare_context_before_enqueue_keys()
        return {key: value for key, value in self.env.context.items() if key in keys}
