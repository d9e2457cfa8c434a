# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""A failed job tells its user and the queue managers."""

from odoo.tests import new_test_user, tagged

from .job_runner_case import JobRunnerCase


@tagged("post_install", "-at_install")
class TestFailureNotifications(JobRunnerCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(cls.env, "qj_notified_user", groups="base.group_user")
        cls.other_user = new_test_user(cls.env, "qj_other_user", groups="base.group_user")
        cls.manager = new_test_user(
            cls.env, "qj_notified_manager",
            groups="base.group_user,queue_job.group_queue_job_manager",
        )
        cls.failed_subtype = cls.env.ref("queue_job.mt_job_failed")

    def delay_as_user(self, method, *args, max_retries=None):
        delayed = self.record.with_user(self.user).with_delay(max_retries=max_retries)
        return self.job_of(getattr(delayed, method)(*args))

    def failure_messages(self, job):
        return job.message_ids.filtered(lambda message: message.subtype_id == self.failed_subtype)

    def assert_notified(self, job, text):
        messages = self.failure_messages(job)
        self.assertEqual(len(messages), 1)
        self.assertIn(text, messages.body)
        followers = job.message_partner_ids
        self.assertIn(self.user.partner_id, followers, "the job's user follows it")
        self.assertIn(self.manager.partner_id, followers, "managers follow it")
        self.assertIn(self.env.ref("base.user_admin").partner_id, followers)
        self.assertNotIn(self.other_user.partner_id, followers)
        # The followers are notified, in their inbox or by email.
        notified = messages.notification_ids.res_partner_id
        self.assertIn(self.user.partner_id, notified)
        self.assertIn(self.manager.partner_id, notified)

    def test_failure_in_the_runner_posts_to_user_and_managers(self):
        job = self.delay_as_user("fail", "the disk is full")
        self.run_job(job)
        self.assertEqual(job.state, "failed")
        self.assert_notified(job, "the disk is full")

    def test_failure_of_run_now_posts_too(self):
        job = self.delay_as_user("fail", "no luck today")
        job.with_user(self.manager).run_now()
        self.assertEqual(job.state, "failed")
        self.assert_notified(job, "no luck today")

    def test_retry_posts_nothing(self):
        job = self.delay_as_user("retry_later", "later", max_retries=3)
        self.run_job(job)
        self.assertEqual(job.state, "pending")
        self.assertFalse(self.failure_messages(job))
        self.assertNotIn(self.manager.partner_id, job.message_partner_ids)
