# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Channel records as the runners apply them: their checks, pause and resume,
who may change them, and the metrics endpoint."""

from unittest.mock import patch

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import HttpCase, TransactionCase, new_test_user, tagged

from odoo.addons.queue_job.controllers.metrics import TOKEN_PARAMETER
from odoo.addons.queue_job.tests.prometheus_text import parse


@tagged("post_install", "-at_install")
class TestChannelValues(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Channel = cls.env["queue.job.channel"]
        cls.root = cls.env.ref("queue_job.channel_root")
        cls.a, cls.b = (
            cls.Channel.create({"name": name, "parent_id": cls.root.id}) for name in ("a", "b")
        )

    def test_root_starts_at_the_settings_default(self):
        self.assertEqual(self.root.capacity, 1)
        self.assertEqual((self.a.capacity, self.a.rate_limit, self.a.paused), (0, 0, False))

    def test_values_that_would_mean_something_else_are_refused(self):
        for channel, values in (
            (self.root, {"capacity": 0}),
            (self.a, {"capacity": 2, "sequential": True}),
            (self.a, {"capacity": -1}),
            (self.a, {"rate_limit": -5}),
        ):
            with self.subTest(channel=channel.complete_name, values=values):
                with self.assertRaises(ValidationError), self.env.cr.savepoint():
                    channel.write(values)
                    channel.flush_recordset()
        self.a.write({"capacity": 1, "sequential": True})
        self.assertEqual(self.a.setting_in_force, "root.a:1:sequential")

    def test_pause_and_resume_many_at_once(self):
        channels = self.a | self.b
        channels.action_pause()
        self.assertEqual(channels.mapped("paused"), [True, True])
        channels.invalidate_recordset(["setting_in_force"])
        self.assertEqual(
            channels.mapped("setting_in_force"), ["root.a:0:paused", "root.b:0:paused"]
        )
        self.root.action_pause()
        self.assertTrue(self.root.paused)
        (channels | self.root).action_resume()
        self.assertEqual((channels | self.root).mapped("paused"), [False] * 3)

    def test_only_queue_managers_change_channels(self):
        user = new_test_user(self.env, "qj_channel_user", groups="base.group_user")
        manager = new_test_user(
            self.env, "qj_channel_manager",
            groups="base.group_user,queue_job.group_queue_job_manager",
        )
        self.assertEqual(self.a.with_user(user).capacity_in_force, 0, "users read them")
        for action in (
            lambda channel: channel.write({"capacity": 5}),
            lambda channel: channel.action_pause(),
        ):
            with self.assertRaises(AccessError):
                action(self.a.with_user(user))
        self.a.with_user(manager).action_pause()
        self.a.with_user(manager).capacity = 5
        self.assertEqual((self.a.capacity, self.a.paused), (5, True))


@tagged("post_install", "-at_install")
class TestMetricsEndpoint(HttpCase):
    URL = "/queue_job/metrics"

    def get(self, token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.url_open(self.URL, headers=headers)

    def test_disabled_until_a_token_is_set(self):
        self.env["ir.config_parameter"].set_param(TOKEN_PARAMETER, False)
        self.assertEqual(self.get("anything").status_code, 404)

    def test_refused_without_the_token_and_served_with_it(self):
        self.env["ir.config_parameter"].set_param(TOKEN_PARAMETER, "s3cret-token")
        record = self.env["test.queue.job"].create({"name": "metrics"})
        record.with_delay(channel="root.test").record_call("m")
        self.assertEqual(self.get().status_code, 403)
        self.assertEqual(self.get("wrong-token").status_code, 403)
        response = self.url_open(self.URL, headers={"Authorization": "Basic s3cret-token"})
        self.assertEqual(response.status_code, 403)
        response = self.get("s3cret-token")
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        families = parse(response.text)
        self.assertIn(
            ("queue_job_jobs", {"channel": "root.test", "state": "pending"}),
            [(name, labels) for name, labels, value in families["queue_job_jobs"]["samples"]
             if value >= 1],
        )
        self.assertEqual(families["queue_job_run_seconds"]["type"], "histogram")

    def test_the_setting_takes_precedence_over_the_system_parameter(self):
        self.env["ir.config_parameter"].set_param(TOKEN_PARAMETER, "from-parameter")
        with patch.dict("os.environ", {"ODOO_QUEUE_JOB_METRICS_TOKEN": "from-environment"}):
            self.assertEqual(self.get("from-parameter").status_code, 403)
            self.assertEqual(self.get("from-environment").status_code, 200)
