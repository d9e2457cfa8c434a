# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The no-delay mode (``QUEUE_JOB__NO_DELAY``, context key
``queue_job__no_delay``): jobs run at once, in the caller's transaction."""

import os
from unittest import mock

from odoo.tests import TransactionCase, tagged

from odoo.addons.queue_job.delay import chain, group


@tagged("post_install", "-at_install")
class TestNoDelay(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.record = cls.env["test.queue.job"].create({"name": "inline"})
        cls.no_delay = cls.record.with_context(queue_job__no_delay=True)

    def setUp(self):
        super().setUp()
        self.stored_before = self.job_count_in_database()

    def job_count_in_database(self):
        self.env.flush_all()
        self.env.cr.execute("SELECT count(*) FROM queue_job")
        return self.env.cr.fetchone()[0]

    def assert_nothing_stored(self):
        self.assertEqual(self.job_count_in_database(), self.stored_before)

    def log_tags(self):
        return self.record.log_ids.mapped("tag")

    def test_context_key_runs_the_job_at_once(self):
        job = self.no_delay.with_delay().increment(4)
        self.assertEqual(self.record.counter, 4)
        self.assertEqual(job.state, "done")
        self.assert_nothing_stored()
        self.record.with_delay().increment(4)
        self.assertEqual(self.record.counter, 4, "without the key the job waits")
        self.assertEqual(self.job_count_in_database(), self.stored_before + 1)

    def test_environment_variable_runs_the_job_at_once(self):
        with mock.patch.dict(os.environ, {"QUEUE_JOB__NO_DELAY": "1"}):
            job = self.record.with_delay().record_call("now")
            self.assertEqual(self.log_tags(), ["now"])
        self.assertEqual(self.record.log_ids.job_uuid, job.uuid)
        self.assert_nothing_stored()

    def test_chain_runs_in_order_whatever_the_priorities(self):
        chain(
            self.no_delay.delayable(priority=30).record_call("a"),
            self.no_delay.delayable(priority=20).record_call("b"),
            self.no_delay.delayable(priority=10).record_call("c"),
        ).delay()
        self.assertEqual(self.log_tags(), ["a", "b", "c"])
        self.assert_nothing_stored()

    def test_group_callback_runs_after_all_members(self):
        callback = self.no_delay.delayable(priority=0).record_call("cb")
        members = group(
            self.no_delay.delayable().record_call("a"),
            self.no_delay.delayable().record_call("b"),
        )
        chain(self.no_delay.delayable().record_call("start"), members).on_done(callback).delay()
        self.assertEqual(self.log_tags(), ["start", "a", "b", "cb"])
        self.assert_nothing_stored()

    def test_key_on_one_job_runs_the_whole_graph(self):
        group(
            self.record.delayable().record_call("a"),
            self.no_delay.delayable().record_call("b"),
        ).delay()
        self.assertEqual(sorted(self.log_tags()), ["a", "b"])
        self.assert_nothing_stored()

    def test_errors_propagate_to_the_caller(self):
        with self.assertRaisesRegex(ValueError, "kaboom"):
            self.no_delay.with_delay().fail("kaboom")
        graph = chain(
            self.no_delay.delayable().record_call("before"),
            self.no_delay.delayable().fail("in the middle"),
            self.no_delay.delayable().record_call("after"),
        )
        with self.assertRaisesRegex(ValueError, "in the middle"):
            graph.delay()
        self.assertEqual(self.log_tags(), ["before"], "the jobs after the error do not run")
        self.assert_nothing_stored()

    def test_job_delaying_a_job_runs_it_inline_too(self):
        # A server action stands for a job method that delays another job.
        action = self.env["ir.actions.server"].create(
            {
                "name": "delay a job, then commit",
                "model_id": self.env["ir.model"]._get_id("test.queue.job"),
                "state": "code",
                "code": "record.with_delay().record_call('inner')\nrecord.env.cr.commit()",
            }
        )
        context = {"active_model": "test.queue.job", "active_id": self.record.id}
        # The inner job's commit guard must hand the outer one back intact.
        with self.assertRaisesRegex(ValueError, "commit is forbidden in this job"):
            action.with_context(context, queue_job__no_delay=True).with_delay().run()
        self.assertEqual(self.log_tags(), ["inner"])
        self.assert_nothing_stored()
