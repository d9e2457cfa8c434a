# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The list actions: a confirmation wizard calling the jobs' actions at once."""

from odoo.tests import Form, new_test_user, tagged

from odoo.addons.queue_job.delay import chain

from .job_runner_case import JobRunnerCase

BOUND_ACTIONS = {
    "queue_job.action_requeue_job",
    "queue_job.action_queue_job_run_now",
    "queue_job.action_set_jobs_done",
    "queue_job.action_queue_job_set_failed",
    "queue_job.action_set_jobs_cancelled",
}


@tagged("post_install", "-at_install")
class TestActionWizard(JobRunnerCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = new_test_user(
            cls.env, "qj_wizard_manager",
            groups="base.group_user,queue_job.group_queue_job_manager",
        )
        cls.user = new_test_user(cls.env, "qj_wizard_user", groups="base.group_user")

    def delay(self, tag):
        return self.job_of(self.record.with_delay(description=tag).record_call(tag))

    def wizard(self, action, jobs):
        """The wizard as the list's action opens it on the selected ``jobs``."""
        context = {"active_model": "queue.job", "active_ids": jobs.ids, "default_action": action}
        wizard_env = self.env(user=self.manager, context=context)
        return Form(wizard_env["queue.job.action.wizard"]).save()

    def test_set_done_says_what_it_skips(self):
        pending, failed, done = self.delay("pending"), self.delay("failed"), self.delay("done")
        failed._set_failed()
        done._set_done()
        wizard = self.wizard("done", pending | failed | done)
        self.assertEqual(wizard.job_ids, pending | failed | done)
        self.assertEqual((wizard.acting_job_count, wizard.skipped_job_count), (2, 1))
        result = wizard.action_confirm()
        self.assertEqual(result["params"]["type"], "warning")
        self.assertIn("1 job(s) skipped", result["params"]["message"])
        self.assertEqual(set((pending | failed | done).mapped("state")), {"done"})

    def test_run_now_counts_waiting_jobs_as_skipped(self):
        first = self.record.delayable(description="first").record_call("first")
        second = self.record.delayable(description="second").record_call("second")
        chain(first, second).delay()
        jobs = self.job_of(first._generated_job) | self.job_of(second._generated_job)
        wizard = self.wizard("run_now", jobs)
        self.assertEqual((wizard.acting_job_count, wizard.skipped_job_count), (1, 1))
        wizard.action_confirm()
        self.assertEqual(jobs.mapped("state"), ["done", "pending"])

    def test_each_action_reaches_its_job_method(self):
        for action, state in (
            ("failed", "failed"), ("requeue", "pending"), ("cancel", "cancelled")
        ):
            job = self.delay(action)
            if action == "requeue":
                job._set_done()
            with self.subTest(action=action):
                self.wizard(action, job).action_confirm()
                self.assertEqual(job.state, state)

    def test_list_actions_only_for_managers(self):
        def bound(user):
            bindings = self.env["ir.actions.actions"].with_user(user).get_bindings("queue.job")
            xmlids = self.env["ir.actions.act_window"].browse(
                [action["id"] for action in bindings.get("action", [])]
            ).get_external_id()
            return set(xmlids.values()) & BOUND_ACTIONS

        self.assertEqual(bound(self.manager), BOUND_ACTIONS)
        self.assertEqual(bound(self.user), set())
