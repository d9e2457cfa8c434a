# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The autovacuum deletes old done and cancelled jobs, per channel."""

from unittest.mock import patch

from odoo.tests import tagged

from odoo.addons.queue_job.delay import chain

from .job_runner_case import JobRunnerCase


@tagged("post_install", "-at_install")
class TestAutovacuum(JobRunnerCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env.ref("queue_job.channel_root").removal_interval = 30
        cls.env["queue.job.channel"].create(
            {
                "name": "short",
                "parent_id": cls.env.ref("queue_job.channel_root").id,
                "removal_interval": 2,
            }
        )

    def job(self, state, days_ago, channel="root"):
        """A job of ``channel`` that reached ``state`` ``days_ago`` days ago."""
        job = self.job_of(self.record.with_delay(channel="root").record_call(state))
        self.env.cr.execute(
            "UPDATE queue_job SET state = %s, channel = %s, "
            "date_done = (now() AT TIME ZONE 'UTC') - make_interval(days => %s) WHERE id = %s",
            (state, channel, days_ago, job.id),
        )
        job.invalidate_recordset()
        return job

    def vacuum_all(self):
        """Call the autovacuum until it says nothing is left; return its batch sizes."""
        batches = []
        more = True
        while more:
            deleted, more = self.Job._gc_old_jobs()
            batches.append(deleted)
        return batches

    def test_removes_old_done_and_cancelled_per_channel(self):
        removed = (
            self.job("done", 3, "root.short")
            | self.job("cancelled", 3, "root.short")
            | self.job("done", 40)
            | self.job("cancelled", 40)
            # A channel that no longer exists follows root's interval.
            | self.job("done", 40, "root.gone")
        )
        kept = (
            self.job("done", 1, "root.short")
            | self.job("failed", 3, "root.short")
            | self.job("pending", 3, "root.short")
            | self.job("done", 10)
            | self.job("failed", 40)
            | self.job("done", 10, "root.gone")
        )
        self.assertEqual(self.vacuum_all(), [5])
        self.assertFalse(removed.exists())
        self.assertEqual(kept.exists(), kept)

    def test_batches(self):
        old = self.Job.browse()
        for _index in range(5):
            old |= self.job("done", 40)
        with patch.object(type(self.Job), "_removal_batch_size", 2):
            self.assertEqual(self.vacuum_all(), [2, 2, 1])
        self.assertFalse(old.exists())

    def test_removed_dependency_leaves_its_dependent(self):
        first = self.record.delayable().record_call("first")
        second = self.record.delayable().record_call("second")
        chain(first, second).delay()
        self.drain()
        first_job = self.job_of(first._generated_job)
        second_job = self.job_of(second._generated_job)
        self.env.cr.execute(
            "UPDATE queue_job SET date_done = date_done - interval '40 days' WHERE id = %s",
            (first_job.id,),
        )
        self.vacuum_all()
        self.assertFalse(first_job.exists())
        self.assertEqual(second_job.exists().state, "done")
        self.assertFalse(second_job.dependency_ids)
