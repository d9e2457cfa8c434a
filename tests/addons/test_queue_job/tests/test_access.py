# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Who sees which jobs and arguments, and who may change them."""

from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged
from odoo.tools import mute_logger

from odoo.addons.queue_job.delay import chain

from .job_runner_case import JobRunnerCase

ARGUMENT_FIELDS = ("records", "args", "kwargs", "func_string", "exc_info")
BUTTONS = ("requeue", "button_done", "button_failed", "button_cancelled", "run_now")


@tagged("post_install", "-at_install")
class TestJobAccess(JobRunnerCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.alice = new_test_user(cls.env, "qj_alice", groups="base.group_user")
        cls.bob = new_test_user(cls.env, "qj_bob", groups="base.group_user")
        cls.manager = new_test_user(
            cls.env, "qj_manager", groups="base.group_user,queue_job.group_queue_job_manager"
        )
        cls.alice_job = cls.delay_as(cls.alice, "secret of alice")
        cls.bob_job = cls.delay_as(cls.bob, "secret of bob")

    @classmethod
    def delay_as(cls, user, secret):
        record = cls.record.with_user(user)
        job_ = record.with_delay().record_call("tag", secret, password=secret)
        return cls.Job.browse(job_.id)

    def test_user_sees_only_their_own_jobs(self):
        jobs = self.Job.with_user(self.alice).search([])
        self.assertEqual(jobs, self.alice_job)
        self.assertEqual(self.alice_job.with_user(self.alice).state, "pending")
        with self.assertRaises(AccessError):
            self.bob_job.with_user(self.alice).read(["name"])

    def test_user_cannot_read_arguments_even_of_their_own_job(self):
        own = self.alice_job.with_user(self.alice)
        readable = own.fields_get()
        for field in ARGUMENT_FIELDS:
            self.assertNotIn(field, readable)
            with self.subTest(field=field), self.assertRaises(AccessError):
                own.read([field])
        with self.assertRaises(AccessError):
            self.Job.with_user(self.alice).search_read([], ["kwargs"])
        # Positive control: the rest of the job is readable.
        self.assertEqual(own.read(["method_name"])[0]["method_name"], "record_call")

    def test_no_field_a_user_reads_carries_the_arguments(self):
        """Not ``name``, ``display_name``, nor any other field the user may read."""
        own = self.alice_job.with_user(self.alice)
        readable = [name for name in own.fields_get() if own._fields[name].type != "binary"]
        values = own.read(readable)[0]
        values.update(own.web_read({name: {} for name in readable})[0])
        values["name_search"] = self.Job.with_user(self.alice).name_search("")
        for name, value in values.items():
            with self.subTest(field=name):
                self.assertNotIn("secret of alice", repr(value))
        # Positive control: a manager finds the argument where it is kept.
        self.assertIn("secret of alice", self.alice_job.with_user(self.manager).func_string)

    def test_manager_reads_arguments(self):
        job = self.bob_job.with_user(self.manager)
        self.assertEqual(job.args, ["tag", "secret of bob"])
        self.assertEqual(job.kwargs, {"password": "secret of bob"})

    def test_user_cannot_write_nor_create_jobs(self):
        own = self.alice_job.with_user(self.alice)
        for vals in ({"state": "done"}, {"method_name": "unlink"}, {"args": []}, {"priority": 0}):
            with self.subTest(vals=vals), self.assertRaises(AccessError):
                own.write(vals)
        with self.assertRaises(AccessError):
            self.Job.with_user(self.alice).create({"uuid": "forged", "state": "pending"})
        with self.assertRaises(AccessError):
            own.unlink()
        self.alice_job.invalidate_recordset()
        self.assertEqual(self.alice_job.state, "pending")
        self.assertEqual(self.alice_job.method_name, "record_call")

    def test_nobody_writes_a_job_definition(self):
        """Not even a manager or the superuser, without the edit sentinel (as OCA)."""
        for env_job in (self.bob_job.with_user(self.manager), self.bob_job.sudo()):
            for field, value in (
                ("model_name", "res.users"),
                ("method_name", "unlink"),
                ("args", []),
                ("kwargs", {}),
                ("records", {}),
                ("user_id", self.manager.id),
                ("pending_dependency_count", 3),
            ):
                with self.subTest(user=env_job.env.user.login, field=field):
                    with self.assertRaises(AccessError):
                        env_job.write({field: value})
            with self.assertRaises(AccessError):
                env_job.create({"uuid": "forged", "state": "pending"})
        self.bob_job.invalidate_recordset()
        self.assertEqual(self.bob_job.state, "pending")
        self.assertEqual(self.bob_job.method_name, "record_call")

    def test_manager_writes_state_and_scheduling_through_the_transitions(self):
        # As in OCA (queue_job_subscribe's tests write a state): the state
        # moves as by the buttons, and a failure is posted about.
        job = self.bob_job.with_user(self.manager)
        job.write({"priority": 3, "channel": "root"})
        self.assertEqual((job.priority, job.channel), (3, "root"))
        job.write({"state": "failed"})
        self.assertEqual(job.state, "failed")
        self.assertTrue(job.date_done)
        self.assertTrue(
            job.message_ids.filtered(lambda m: m.subtype_id == self.env.ref("queue_job.mt_job_failed"))
        )

    def test_user_cannot_use_the_buttons_even_on_their_own_job(self):
        own = self.alice_job.with_user(self.alice)
        for button in BUTTONS:
            with self.subTest(button=button), self.assertRaises(AccessError):
                getattr(own, button)()
        self.alice_job.invalidate_recordset()
        self.assertEqual(self.alice_job.state, "pending")
        self.assertFalse(self.Log.search([]), "Run Now ran nothing")
        with self.assertRaises(AccessError):
            self.env["queue.job.action.wizard"].with_user(self.alice).create(
                {"action": "done", "job_ids": [(6, 0, own.ids)]}
            )

    def test_user_opens_the_related_record_of_their_job(self):
        action = self.alice_job.with_user(self.alice).open_related_action()
        self.assertEqual(action["res_model"], "test.queue.job")
        self.assertEqual(action["res_id"], self.record.id)

    def test_manager_uses_every_button(self):
        jobs = self.Job.with_user(self.manager)
        done, failed, cancelled, run = (
            jobs.browse(self.delay_as(self.bob, tag).id) for tag in ("d", "f", "c", "r")
        )
        done.button_done()
        failed.button_failed()
        cancelled.button_cancelled()
        run.run_now()
        self.assertEqual(
            [job.state for job in (done, failed, cancelled, run)],
            ["done", "failed", "cancelled", "done"],
        )
        self.assertEqual(
            self.Log.search([]).mapped("arguments"), [repr((("r",), {"password": "r"}))]
        )
        failed.requeue()
        self.assertEqual(failed.state, "pending")
        action = run.open_related_action()
        self.assertEqual(
            (action["res_model"], action["res_id"]), ("test.queue.job", self.record.id)
        )

    def test_related_action_hidden_when_the_function_disables_it(self):
        self.assertTrue(self.alice_job.related_action_enable)
        self.alice_job.job_function_id.related_action = {"enable": False}
        self.alice_job.invalidate_recordset(["related_action_enable"])
        self.assertFalse(self.alice_job.related_action_enable)
        with self.assertRaisesRegex(UserError, "No action available"):
            self.alice_job.open_related_action()

    def test_awaited_job_cannot_be_deleted(self):
        first = self.record.delayable(description="first").record_call("first")
        second = self.record.delayable(description="second").record_call("second")
        chain(first, second).delay()
        first_job, second_job = (self.Job.browse(d._generated_job.id) for d in (first, second))
        with self.assertRaises(UserError), mute_logger("odoo.sql_db"):
            first_job.with_user(self.manager).unlink()
        self.assertTrue(first_job.exists())
        # With the job that waits for it, it goes.
        (first_job | second_job).with_user(self.manager).unlink()
        self.assertFalse((first_job | second_job).exists())
