# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""OCA's queue.job, queue.job.function and queue.job.channel API, as client
addons use it: hooks they override, methods they call, data they declare,
XML ids they reference."""

from unittest import mock

from psycopg2 import IntegrityError

from odoo import Command, exceptions
from odoo.tests import new_test_user, tagged
from odoo.tools import mute_logger

from odoo.addons.queue_job.delay import chain
from odoo.addons.queue_job.job import CANCELLED, DONE, PENDING, Job

from ..models.queue_job import MUTED_LOGIN_PREFIX, QUIET_MARK
from .job_runner_case import JobRunnerCase

MANAGERS = "base.group_user,queue_job.group_queue_job_manager"


@tagged("post_install", "-at_install")
class TestFailureHooks(JobRunnerCase):
    """_message_post_on_failure() asks the hooks whom to tell and what."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(cls.env, "qj_hook_user", groups="base.group_user")
        cls.manager = new_test_user(cls.env, "qj_hook_manager", groups=MANAGERS)
        cls.muted = new_test_user(cls.env, MUTED_LOGIN_PREFIX + "manager", groups=MANAGERS)
        cls.failed_subtype = cls.env.ref("queue_job.mt_job_failed")

    def failed_job(self, message):
        job = self.job_of(self.record.with_user(self.user).with_delay(max_retries=1).fail(message))
        self.run_job(job)
        self.assertEqual(job.state, "failed")
        return job

    def failure_messages(self, job):
        return job.message_ids.filtered(lambda message: message.subtype_id == self.failed_subtype)

    def test_overridden_users_domain_decides_who_follows(self):
        job = self.failed_job("disk full")
        followers = job.message_partner_ids
        self.assertIn(self.manager.partner_id, followers)
        self.assertIn(self.user.partner_id, followers)
        self.assertNotIn(self.muted.partner_id, followers, "the override excludes them")

    def test_users_domain_is_the_managers_of_the_jobs_companies(self):
        job = self.job_of(self.record.with_delay().echo())
        users = self.env["res.users"].search(job._subscribe_users_domain())
        self.assertIn(self.manager, users)
        self.assertNotIn(self.user, users, "not a manager")
        other_company = self.env["res.company"].create({"name": "qj other company"})
        abroad = new_test_user(
            self.env, "qj_hook_abroad", groups=MANAGERS,
            company_id=other_company.id, company_ids=[Command.set(other_company.ids)],
        )
        users = self.env["res.users"].search(job._subscribe_users_domain())
        self.assertNotIn(abroad, users, "a manager of another company only")

    def test_message_failed_job_returns_the_body_posted(self):
        job = self.failed_job("disk full")
        body = job._message_failed_job()
        self.assertIn("disk full", body)
        self.assertIn("disk full", self.failure_messages(job).body)

    def test_empty_message_posts_nothing_but_subscribes(self):
        job = self.failed_job(QUIET_MARK + " nothing to say")
        self.assertFalse(self.failure_messages(job))
        self.assertIn(self.manager.partner_id, job.message_partner_ids)

    def test_job_creator_not_subscribed_when_the_hook_says_so(self):
        with mock.patch.object(
            type(self.env["queue.job"]), "_subscribe_job_creator", return_value=False
        ):
            job = self.failed_job("disk full")
        self.assertNotIn(self.user.partner_id, job.message_partner_ids)
        self.assertIn(self.manager.partner_id, job.message_partner_ids)
        self.assertTrue(self.env["queue.job"]._subscribe_job_creator(), "OCA's default")

    def test_needaction_domain_finds_failed_jobs(self):
        failed = self.failed_job("disk full")
        pending = self.job_of(self.record.with_delay().echo())
        found = self.Job.search(self.Job._needaction_domain_get())
        self.assertIn(failed, found)
        self.assertNotIn(pending, found)


@tagged("post_install", "-at_install")
class TestQueueJobApi(JobRunnerCase):
    def graph(self):
        first = self.record.delayable().record_call("first")
        second = self.record.delayable().record_call("second")
        chain(first, second).delay()
        return self.job_of(first._generated_job), self.job_of(second._generated_job)

    def test_change_job_state_done_releases_dependents(self):
        first, second = self.graph()
        moved = first._change_job_state(DONE, result="done by hand")
        self.assertEqual(moved, first)
        self.assertEqual((first.state, first.result), ("done", "done by hand"))
        self.assertEqual(second.state, "pending")

    def test_change_job_state_cancelled_cancels_dependents(self):
        first, second = self.graph()
        first._change_job_state(CANCELLED, result="not needed")
        self.assertEqual((first.state, second.state), ("cancelled", "cancelled"))
        self.assertEqual(first.exc_message, "not needed")
        self.assertTrue(first.date_cancelled)
        self.assertFalse(self.job_of(self.record.with_delay().echo()).date_cancelled)

    def test_change_job_state_pending_requeues(self):
        first, _second = self.graph()
        first._change_job_state(CANCELLED)
        first._change_job_state(PENDING)
        self.assertEqual(first.state, "pending")

    def test_change_job_state_refuses_other_states(self):
        first, _second = self.graph()
        with self.assertRaisesRegex(ValueError, "State not supported"):
            first._change_job_state("started")
        with self.assertRaisesRegex(ValueError, "no result"):
            first._change_job_state(PENDING, result="x")
        self.assertEqual(first.state, "pending")

    def test_graph_fields(self):
        first, second = self.graph()
        self.assertEqual(first.dependent_ids, second)
        self.assertEqual(second.dependency_ids, first)
        self.assertEqual(
            second.dependencies, {"depends_on": [first.uuid], "reverse_depends_on": []}
        )
        self.assertEqual(
            first.dependencies, {"depends_on": [], "reverse_depends_on": [second.uuid]}
        )
        self.assertEqual((first.graph_jobs_count, second.graph_jobs_count), (2, 2))
        action = first.open_graph_jobs()
        self.assertEqual(action["context"], {"search_default_graph_uuid": first.graph_uuid})

    def test_channel_method_name(self):
        job = self.job_of(self.record.with_delay().client_import())
        self.assertEqual(job.channel_method_name, "<test.queue.job>.client_import")
        self.assertEqual(job.channel_method_name, job.job_function_id.name)

    def test_related_action_of_the_function_data(self):
        job = self.job_of(self.record.with_delay().client_import())
        action = job.open_related_action()
        self.assertEqual(action["name"], "Echoed", "func_name and kwargs of the XML data")

    def test_no_related_action_is_an_error(self):
        disabled = self.job_of(self.record.with_delay().client_export())
        with self.assertRaisesRegex(exceptions.UserError, "No action available"):
            disabled.open_related_action()
        gone = self.env["test.queue.job"].create({"name": "gone"})
        job = self.job_of(gone.with_delay().record_call("x"))
        self.assertEqual(job.open_related_action()["res_id"], gone.id)
        gone.unlink()
        with self.assertRaisesRegex(exceptions.UserError, "No action available"):
            job.open_related_action()

    def test_default_related_action_is_a_class_attribute(self):
        job = self.job_of(self.record.with_delay().record_call("x"))
        with mock.patch.object(
            type(self.Job), "_default_related_action", "related_action_test_label"
        ), self.assertRaisesRegex(TypeError, "label"):
            job.open_related_action()


@tagged("post_install", "-at_install")
class TestClientData(JobRunnerCase):
    """Channels and functions declared as OCA's client addons declare them
    (data/queue_job_oca_client_data.xml of the test addon)."""

    def test_function_declared_by_name(self):
        function = self.env.ref("test_queue_job.job_function_client_import")
        self.assertEqual(function.model_id.model, "test.queue.job")
        self.assertEqual(function.method, "client_import")
        self.assertEqual(function.channel, "root.client.import")
        self.assertEqual(function.retry_pattern, {"1": [5, 7], "4": 30})
        job = self.job_of(self.record.with_delay().client_import())
        self.assertEqual((job.job_function_id, job.channel), (function, "root.client.import"))

    def test_retry_pattern_with_a_range_of_seconds(self):
        job_ = Job.load(self.env, self.record.with_delay().client_import().uuid)
        self.assertEqual(job_.job_config.retry_pattern, {1: (5, 7), 4: 30})
        job_.retry = 2
        drawn = {job_._get_retry_seconds() for _draw in range(60)}
        self.assertLessEqual(drawn, {5, 6, 7})
        self.assertGreater(len(drawn), 1, "picked at random")
        job_.retry = 4
        self.assertEqual(job_._get_retry_seconds(), 30)
        function = self.env.ref("test_queue_job.job_function_client_import")
        for pattern in ({"1": [7, 5]}, {"1": [1, 2, 3]}, {"1": [1, True]},
                        {"1": [[1, 2], [3, 4]]}):
            with self.subTest(pattern=pattern), self.assertRaises(exceptions.ValidationError):
                function.retry_pattern = pattern

    def test_on_fail_method_is_called_when_the_job_fails_for_good(self):
        retried = self.job_of(
            self.record.with_delay(max_retries=2).client_fail("disk full", retryable=True)
        )
        self.run_job(retried)
        self.assertEqual(retried.state, "pending")
        self.assertFalse(self.log_tags(), "not while the job is to be retried")
        self.run_job(retried)
        self.assertEqual(retried.state, "failed")
        log = self.Log.search([])
        self.assertEqual(log.tag, "on fail")
        self.assertIn("Max. retries (2) reached: disk full", log.arguments)
        self.assertIn("FailedJobError", log.arguments)
        failed = self.job_of(self.record.with_delay().client_fail("at once"))
        self.run_job(failed)
        self.assertIn("'exc_name': 'builtins.ValueError', 'exc_message': 'at once'",
                      self.Log.search([("id", "not in", log.ids)]).arguments)

    def test_on_fail_method_that_raises_leaves_the_job_failed(self):
        job = self.job_of(self.record.with_delay(max_retries=1).client_fail("disk full"))
        model = type(self.env["test.queue.job"])
        with mock.patch.object(model, "on_client_failure", side_effect=ValueError("oops")), \
                self.assertLogs("odoo.addons.queue_job.job", "ERROR") as logs:
            self.run_job(job)
        self.assertEqual(job.state, "failed")
        self.assertIn("On-fail method of job", logs.output[0])

    def test_on_fail_method_must_be_a_method_of_the_model(self):
        function = self.env.ref("test_queue_job.job_function_client_fail")
        self.assertEqual(function.on_fail_method, "on_client_failure")
        with self.assertRaisesRegex(exceptions.ValidationError, "has no method"):
            function.on_fail_method = "no_such_method"

    def test_function_declared_twice_is_one_record(self):
        function = self.env.ref("test_queue_job.job_function_client_import")
        self.assertEqual(self.env.ref("test_queue_job.job_function_client_import_again"), function)
        self.assertEqual(function.related_action["func_name"], "related_action_test_label")

    def test_channel_declared_twice_is_one_record(self):
        channel = self.env.ref("test_queue_job.channel_client")
        self.assertEqual(self.env.ref("test_queue_job.channel_client_again"), channel)
        self.assertEqual(channel.removal_interval, 20, "the last declaration's values")
        self.assertIn(
            self.env.ref("test_queue_job.job_function_client_import"),
            self.env.ref("test_queue_job.channel_client_import").job_function_ids,
        )

    def test_channel_name_with_dots(self):
        channel = self.env.ref("test_queue_job.channel_dotted")
        self.assertEqual(channel.complete_name, "root.channel.test.dotted")
        job = self.job_of(self.record.with_delay().client_export())
        self.assertEqual(job.channel, "root.channel.test.dotted")
        self.assertFalse(job.related_action_enable, "noupdate data of the function")
        function = self.env.ref("test_queue_job.job_function_client_export")
        self.assertEqual(
            (function.model_id.model, function.method), ("test.queue.job", "client_export")
        )
        self.assertEqual(job.job_function_id, function)

    def test_module_data_adopts_a_function_created_on_first_use(self):
        self.record.with_delay().nothing_to_do()
        Function = self.env["queue.job.function"]
        created = Function.search([("name", "=", "<test.queue.job>.nothing_to_do")])
        self.assertEqual(created.channel, "root")
        declared = Function.with_context(install_mode=True).create(
            [
                {
                    "model_id": self.env["ir.model"]._get_id("test.queue.job"),
                    "method": "nothing_to_do",
                    "channel_id": self.env.ref("test_queue_job.channel_client").id,
                },
                {"name": "<test.queue.job>.sleep"},
            ]
        )
        self.assertEqual(declared[0], created)
        self.assertEqual(created.channel, "root.client")
        self.assertEqual(declared[1].method, "sleep")
        # Outside module data, the name stays unique.
        with mute_logger("odoo.sql_db"), self.assertRaises(IntegrityError), self.env.cr.savepoint():
            Function.create({"name": "<test.queue.job>.sleep"})

    def test_bad_function_names(self):
        Function = self.env["queue.job.function"]
        with self.assertRaisesRegex(exceptions.ValidationError, "Invalid job function name"):
            Function.create({"name": "test.queue.job.echo"})
        with self.assertRaisesRegex(exceptions.ValidationError, "no model"):
            Function.create({"name": "<no.such.model>.echo"})
        with self.assertRaisesRegex(exceptions.ValidationError, "needs a model and a method"):
            Function.create({"model_id": self.env["ir.model"]._get_id("test.queue.job")})

    def test_root_channel_declared_again_keeps_its_name(self):
        root = self.env.ref("queue_job.channel_root")
        root.write({"name": "root", "removal_interval": 7})
        self.assertEqual(root.removal_interval, 7)
        with self.assertRaises(exceptions.UserError):
            root.write({"name": "trunk"})


@tagged("post_install", "-at_install")
class TestXmlIds(JobRunnerCase):
    OCA_XML_IDS = (
        "queue_job.channel_root",
        "queue_job.group_queue_job_manager",
        "queue_job.privilege_queue_job",
        "queue_job.queue_job_comp_rule",
        "queue_job.mt_job_failed",
        "queue_job.action_queue_job",
        "queue_job.action_queue_job_channel",
        "queue_job.action_queue_job_function",
        "queue_job.action_requeue_job",
        "queue_job.action_set_jobs_done",
        "queue_job.action_set_jobs_cancelled",
        "queue_job.menu_queue_job_root",
        "queue_job.menu_queue",
        "queue_job.menu_queue_job",
        "queue_job.menu_queue_job_channel",
        "queue_job.menu_queue_job_function",
        "queue_job.view_queue_job_form",
        "queue_job.view_queue_job_tree",
        "queue_job.view_queue_job_search",
        "queue_job.view_queue_job_pivot",
        "queue_job.view_queue_job_graph",
        "queue_job.view_queue_job_channel_form",
        "queue_job.view_queue_job_channel_tree",
        "queue_job.view_queue_job_channel_search",
        "queue_job.view_queue_job_function_form",
        "queue_job.view_queue_job_function_tree",
        "queue_job.view_queue_job_function_search",
    )

    def test_oca_xml_ids_exist(self):
        for xml_id in self.OCA_XML_IDS:
            with self.subTest(xml_id=xml_id):
                self.assertTrue(self.env.ref(xml_id, raise_if_not_found=False))

    def test_views_inheriting_oca_ids_apply(self):
        arch = self.Job.get_views([(False, "form")])["views"]["form"]["arch"]
        for field in ("date_cancelled", "channel_method_name", "dependencies"):
            self.assertIn(f'name="{field}"', arch)
        self.assertIn("Dependency Jobs", arch)
        channel_list = self.env["queue.job.channel"].get_views([(False, "list")])
        self.assertIn('name="job_function_ids"', channel_list["views"]["list"]["arch"])
        menu = self.env.ref("test_queue_job.menu_test_queue")
        self.assertEqual(menu.parent_id, self.env.ref("queue_job.menu_queue"))

    def test_jobs_of_other_companies_are_hidden(self):
        other_company = self.env["res.company"].create({"name": "qj other company"})
        manager = new_test_user(
            self.env, "qj_company_manager", groups=MANAGERS,
            company_id=other_company.id, company_ids=[Command.set(other_company.ids)],
        )
        job = self.job_of(self.record.with_delay().echo())
        self.assertEqual(job.company_id, self.env.company)
        self.assertFalse(self.Job.with_user(manager).search([("id", "=", job.id)]))
        self.assertTrue(self.Job.search([("id", "=", job.id)]))
