# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""What the Channels and Job Functions screens show and edit."""

import os
from unittest.mock import patch

from odoo.exceptions import ValidationError
from odoo.tests import tagged

from .job_runner_case import JobRunnerCase


@tagged("post_install", "-at_install")
class TestChannelFigures(JobRunnerCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        Channel = cls.env["queue.job.channel"]
        cls.root = cls.env.ref("queue_job.channel_root")
        cls.test = cls.env.ref("test_queue_job.channel_test")
        cls.sub = Channel.create({"name": "sub", "parent_id": cls.test.id})
        # Names that '=like' would confuse with root.test or with each other.
        cls.testing = Channel.create({"name": "testing", "parent_id": cls.root.id})
        cls.a_b = Channel.create({"name": "a_b", "parent_id": cls.root.id})
        cls.axb_c = Channel.create(
            {"name": "c", "parent_id": Channel.create({"name": "axb", "parent_id": cls.root.id}).id}
        )

    def in_force(self, setting, channels=None):
        channels = channels or (self.root | self.test)
        with patch.dict(os.environ, {"ODOO_QUEUE_JOB_CHANNELS": setting}):
            channels.invalidate_recordset(
                ["capacity_in_force", "capacity_note", "setting_in_force", "setting_source"]
            )
            return [
                (channel.capacity_in_force, channel.capacity_note, channel.setting_source)
                for channel in channels
            ]

    def test_capacity_from_the_runner_setting(self):
        self.assertEqual(
            self.in_force("root:4,root.test:2"),
            [(4, False, "environment"), (2, False, "environment")],
        )

    def test_capacity_from_the_records_unless_the_setting_names_them(self):
        self.root.capacity = 6
        self.test.write({"capacity": 2, "rate_limit": 30, "paused": True})
        self.assertEqual(
            self.in_force("root.other:1"), [(6, False, "database"), (2, False, "database")]
        )
        self.assertEqual(self.test.setting_in_force, "root.test:2:paused:rate_limit=30")
        self.assertEqual(
            self.in_force("root:3,root.test:1"),
            [(3, False, "environment"), (1, False, "environment")],
        )
        self.assertEqual(self.test.setting_in_force, "root.test:1", "the record is overridden")

    def test_unconfigured_channel_names_the_capacity_it_uses(self):
        (root, test) = self.in_force("root:3")
        self.assertEqual(root, (3, False, "environment"))
        self.assertEqual((test[0], test[2]), (0, False))
        self.assertIn("root (3)", test[1])
        (sub,) = self.in_force("root:3,root.test:2", self.sub)
        self.assertIn("root.test (2)", sub[1])

    def test_invalid_setting_is_shown_not_raised(self):
        for capacity, note, source in self.in_force("root:0"):
            self.assertEqual((capacity, source), (0, False))
            self.assertIn("positive integer", note)

    def delay_in(self, channel, state="pending"):
        job = self.job_of(self.record.with_delay(channel=channel.complete_name).record_call("x"))
        self.env.cr.execute("UPDATE queue_job SET state = %s WHERE id = %s", (state, job.id))
        return job

    def counts(self, channel):
        channel.invalidate_recordset(["running_job_count", "pending_job_count"])
        return channel.running_job_count, channel.pending_job_count

    def test_counts_cover_sub_channels_only(self):
        running = self.delay_in(self.test, "started") | self.delay_in(self.sub, "enqueued")
        pending = self.delay_in(self.test) | self.delay_in(self.sub)
        self.delay_in(self.test, "done")
        self.delay_in(self.testing)
        self.delay_in(self.axb_c)
        self.assertEqual(self.counts(self.test), (2, 2))
        self.assertEqual(self.counts(self.sub), (1, 1))
        self.assertEqual(self.counts(self.a_b), (0, 0))
        self.assertEqual(self.counts(self.root), (2, 4))
        for action, jobs in (
            (self.test.action_open_running_jobs(), running),
            (self.test.action_open_pending_jobs(), pending),
        ):
            self.assertEqual(self.Job.search(action["domain"]), jobs)


@tagged("post_install", "-at_install")
class TestJobFunctionSettings(JobRunnerCase):
    def setUp(self):
        super().setUp()
        self.function = self.env.ref("test_queue_job.job_function_retry_later")

    def test_settings_edited_as_json(self):
        self.function.edit_retry_pattern = '{"1": 10, "5": 60}'
        self.function.edit_related_action = '{"enable": false}'
        self.assertEqual(self.function.retry_pattern, {"1": 10, "5": 60})
        self.assertEqual(self.function.related_action, {"enable": False})
        config = self.env["queue.job.function"].job_config(self.function.name)
        self.assertEqual(config.retry_pattern, {1: 10, 5: 60})
        self.assertFalse(config.related_action_enable)
        self.function.edit_retry_pattern = ""
        self.assertFalse(self.function.retry_pattern)

    def test_invalid_settings_are_refused(self):
        for field, text in (
            ("edit_retry_pattern", "{1: 10}"),
            ("edit_retry_pattern", '{"one": 10}'),
            ("edit_related_action", '{"open": true}'),
        ):
            with self.subTest(field=field, text=text), self.assertRaises(ValidationError):
                self.function.write({field: text})
                self.function.flush_recordset()
