# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Running a stored job: outcomes, retries, user and context, stored arguments."""

import ast
from datetime import date, datetime, timedelta

from odoo import fields
from odoo.tests import new_test_user, tagged

from odoo.addons.queue_job.job import CONCURRENCY_RETRY_INTERVAL, RETRY_INTERVAL

from .job_runner_case import JobRunnerCase


@tagged("post_install", "-at_install")
class TestExecution(JobRunnerCase):
    def delay(self, method, *args, **properties):
        return self.job_of(getattr(self.record.with_delay(**properties), method)(*args))

    def test_done_with_result_and_timings(self):
        job = self.delay("increment", 3)
        self.run_job(job)
        self.assertEqual(job.state, "done")
        self.assertEqual(job.result, "[3]")
        self.assertEqual(self.record.counter, 3)
        self.assertTrue(job.date_started <= job.date_done)
        self.assertGreaterEqual(job.exec_time, 0)
        self.assertEqual(job.retry, 1, "the retry counter counts tries")

    def test_failure_keeps_traceback_and_rolls_back_the_job(self):
        job = self.delay("fail", "kaboom")
        self.run_job(job)
        self.assertEqual(job.state, "failed")
        self.assertEqual(job.exc_name, "builtins.ValueError")
        self.assertEqual(job.exc_message, "kaboom")
        self.assertIn("Traceback", job.exc_info)
        self.assertIn("raise ValueError(message)", job.exc_info)
        self.assertEqual(self.record.name, "test record", "the job's own write is rolled back")

    def test_job_whose_model_is_gone_fails_at_once(self):
        job = self.delay("increment", 1)
        self.env.cr.execute(
            "UPDATE queue_job SET model_name = 'gone.model',"
            " records = jsonb_set(records, '{model}', '\"gone.model\"') WHERE id = %s",
            (job.id,),
        )
        job.invalidate_recordset()
        self.run_job(job)
        self.assertEqual(job.state, "failed")
        self.assertIn("gone.model", job.exc_message)
        self.assertEqual(job.retry, 1, "one try, not a retry loop")

    def test_retry_follows_the_pattern_then_fails(self):
        # test_queue_job's data: retry_later has pattern {1: 1, 3: 5}
        job = self.delay("retry_later", "later", max_retries=3)
        delays = []
        for _try in range(3):
            self.run_job(job)
            if job.state == "pending":
                delays.append(self.seconds_to_eta(job))
                self.assertEqual(self.record.name, "test record")
                self.assertEqual(job.exc_message, "later")
        self.assertEqual(delays, [1, 1])
        self.assertEqual(job.state, "failed")
        self.assertEqual(job.retry, 3)
        self.assertIn("Max. retries (3) reached", job.exc_message)

    def test_retry_pattern_from_the_third_try(self):
        job = self.delay("retry_later", "later", max_retries=0)
        for _try in range(3):
            self.run_job(job)
        self.assertEqual(self.seconds_to_eta(job), 5)
        self.assertEqual(job.state, "pending", "max_retries=0 retries forever")

    def test_retry_with_explicit_seconds_and_ignore_retry(self):
        job = self.job_of(
            self.record.with_delay(max_retries=1).retry_later("x", seconds=120, ignore_retry=True)
        )
        self.run_job(job)
        self.assertEqual(job.state, "pending", "an ignored try does not exhaust retries")
        self.assertEqual(job.retry, 0)
        self.assertGreater(job.eta, fields.Datetime.now() + timedelta(seconds=100))

    def test_failed_job_error_fails_at_once(self):
        job = self.delay("fail_for_good", "fatal", max_retries=10)
        self.run_job(job)
        self.assertEqual(job.state, "failed")
        self.assertEqual(job.retry, 1)

    def test_a_database_error_retries_per_the_pattern_under_its_own_name(self):
        # A statement timeout is an OperationalError, as a lost connection
        # is: it is the job's outcome, not left started for the rescue.
        job = self.delay("exceed_statement_timeout", max_retries=2)
        self.run_job(job)
        self.assertEqual((job.state, job.retry), ("pending", 1))
        self.assertEqual(job.exc_name, "psycopg2.errors.QueryCanceled")
        self.assertEqual(self.seconds_to_eta(job), RETRY_INTERVAL)
        self.assertEqual(self.record.name, "test record", "the job's own write is rolled back")

    def test_a_database_error_out_of_tries_fails_with_its_own_name(self):
        job = self.delay("exceed_statement_timeout", max_retries=1)
        self.run_job(job)
        self.assertEqual(job.state, "failed")
        self.assertEqual(job.exc_name, "psycopg2.errors.QueryCanceled")
        self.assertIn("statement timeout", job.exc_message)
        self.assertIn("QueryCanceled", job.exc_info)
        self.assertEqual(self.record.name, "test record", "the job's own write is rolled back")

    def test_serialization_failures_retry_without_using_tries(self):
        job = self.delay("fail_to_serialize", 3, max_retries=1)
        for _failure in range(3):
            self.run_job(job)
            self.assertEqual(
                (job.state, job.retry, job.exc_name),
                ("pending", 0, "psycopg2.errors.SerializationFailure"),
            )
            self.assertEqual(self.seconds_to_eta(job), CONCURRENCY_RETRY_INTERVAL)
            self.assertEqual(self.record.name, "test record")
        self.run_job(job)
        self.assertEqual((job.state, job.retry, job.result), ("done", 1, "4"))

    def test_nothing_to_do_is_done_with_message(self):
        job = self.delay("nothing_to_do", "already handled")
        self.run_job(job)
        self.assertEqual((job.state, job.result), ("done", "already handled"))

    def test_commit_is_forbidden_unless_allowed(self):
        job = self.delay("commit_inside")
        self.run_job(job)
        self.assertEqual(job.state, "failed")
        self.assertIn("commit is forbidden", job.exc_message)
        self.env.ref("test_queue_job.job_function_commit_inside").allow_commit = True
        job2 = self.delay("commit_inside")
        self.run_job(job2)
        self.assertEqual(job2.state, "done")

    def test_runs_as_the_enqueuing_user_in_their_context(self):
        user = new_test_user(self.env, "qj_runner_user", groups="base.group_user")
        record = self.record.with_user(user).with_context(lang="en_US", not_kept=1)
        job = self.job_of(record.with_delay().record_call("as user"))
        self.assertEqual(job.user_id, user)
        self.assertEqual(job.company_id, user.company_id)
        self.run_job(job)
        log = self.Log.search([("tag", "=", "as user")])
        self.assertEqual(log.run_as_uid, user.id)
        self.assertEqual(log.run_lang, "en_US")
        self.assertEqual(log.job_uuid, job.uuid)
        self.assertNotIn("not_kept", job.sudo().records["context"])

    def test_arguments_come_back_as_the_same_objects(self):
        partners = self.env["res.partner"].search([], limit=2)
        args = (
            self.record,
            partners,
            date(2026, 1, 2),
            datetime(2026, 1, 2, 3, 4, 5),
            {"nested": [1, 2.5, None, True, "é", (3, 4)]},
        )
        job = self.job_of(self.record.with_delay().echo(*args, when=date(2026, 5, 6)))
        self.run_job(job)
        expected = (
            self.record,
            partners,
            date(2026, 1, 2),
            datetime(2026, 1, 2, 3, 4, 5),
            {"nested": [1, 2.5, None, True, "é", [3, 4]]},
        )
        self.assertEqual(job.result, str((expected, {"when": date(2026, 5, 6)})))


    def test_a_dict_shaped_like_records_comes_back_as_the_dict(self):
        """Not as the records, user and superuser flag it names."""
        forged = {"_type": "odoo_recordset", "model": "res.users", "ids": [1],
                  "uid": 1, "su": True, "context": {}}
        wrapped = {"_type": "dict", "value": {"a": 1}}
        user = new_test_user(self.env, "qj_forger", groups="base.group_user")
        job_ = self.record.with_user(user).with_delay().echo(forged, wrapped, key=forged)
        job = self.job_of(job_)
        self.run_job(job)
        self.assertEqual(job.state, "done")
        # The result is the repr of what echo() received (jsonb sorts the keys).
        self.assertEqual(ast.literal_eval(job.result), ((forged, wrapped), {"key": forged}))
        # As stored: wrapped, so that OCA's tagged dicts keep their meaning.
        self.assertEqual(job.sudo().args[0], {"_type": "dict", "value": forged})


@tagged("post_install", "-at_install")
class TestRunNowMatchesTheRunner(JobRunnerCase):
    """Run Now records what the jobrunner records: both go through execution.run."""

    def outcomes(self, method, *args, **properties):
        """(state, result, retry, exc_message, seconds to eta, record name) of
        a job run by the runner and of the same job run by Run Now."""
        found = []
        for run in (self.run_job, lambda job: job.run_now()):
            self.record.name = "test record"
            job = self.job_of(getattr(self.record.with_delay(**properties), method)(*args))
            run(job)
            self.env.invalidate_all()
            eta = self.seconds_to_eta(job) if job.eta else None
            found.append(
                (job.state, job.result, job.retry, job.exc_message, eta, self.record.name)
            )
        return found

    def test_a_retryable_error_retries(self):
        runner, run_now = self.outcomes("retry_later", "later", max_retries=3)
        self.assertEqual(runner, ("pending", False, 1, "later", 1, "test record"))
        self.assertEqual(run_now, runner)

    def test_a_retryable_error_out_of_tries_fails(self):
        runner, run_now = self.outcomes("retry_later", "later", max_retries=1)
        self.assertEqual(runner[:3], ("failed", False, 1))
        self.assertIn("Max. retries (1) reached", runner[3])
        self.assertEqual(run_now, runner)

    def test_a_database_error_fails_with_its_name(self):
        runner, run_now = self.outcomes("exceed_statement_timeout", max_retries=1)
        self.assertEqual(runner[:3], ("failed", False, 1))
        self.assertIn("statement timeout", runner[3])
        self.assertEqual(runner[5], "test record")
        self.assertEqual(run_now, runner)

    def test_a_serialization_failure_retries_and_gives_the_try_back(self):
        runner, run_now = self.outcomes("fail_to_serialize", 1, max_retries=1)
        self.assertEqual(runner[:3], ("pending", False, 0))
        self.assertIn("could not serialize access", runner[3])
        self.assertEqual(runner[4:], (CONCURRENCY_RETRY_INTERVAL, "test record"))
        self.assertEqual(run_now, runner)

    def test_nothing_to_do_without_message_stores_the_default_result(self):
        runner, run_now = self.outcomes("nothing_to_do", "")
        self.assertEqual(runner[:3], ("done", "Nothing to do: job set to done", 1))
        self.assertEqual(run_now, runner)


@tagged("post_install", "-at_install")
class TestEnqueue(JobRunnerCase):
    def test_options_are_stored(self):
        eta = datetime(2030, 1, 1, 12, 0)
        job = self.job_of(
            self.record.with_delay(
                priority=3, eta=eta, max_retries=7, channel="root.test", description="Hello"
            ).record_call("x")
        )
        self.assertEqual(
            (job.priority, job.eta, job.max_retries, job.channel, job.name, job.state),
            (3, eta, 7, "root.test", "Hello", "pending"),
        )
        self.assertEqual(job.model_name, "test.queue.job")
        self.assertEqual(job.method_name, "record_call")
        self.assertEqual(job.record_ids, [self.record.id])
        self.assertEqual(job.job_function_id.name, "<test.queue.job>.record_call")

    def test_eta_as_seconds_or_timedelta(self):
        before = fields.Datetime.now()
        in_a_minute = self.job_of(self.record.with_delay(eta=60).record_call("x"))
        in_an_hour = self.job_of(self.record.with_delay(eta=timedelta(hours=1)).record_call("y"))
        self.assertAlmostEqual((in_a_minute.eta - before).total_seconds(), 60, delta=5)
        self.assertAlmostEqual((in_an_hour.eta - before).total_seconds(), 3600, delta=5)

    def test_job_function_created_on_first_use_with_root_channel(self):
        Function = self.env["queue.job.function"]
        self.assertFalse(Function.search([("name", "=", "<test.queue.job>.increment")]))
        job = self.job_of(self.record.with_delay().increment())
        function = Function.search([("name", "=", "<test.queue.job>.increment")])
        self.assertEqual(job.job_function_id, function)
        self.assertEqual(function.channel, "root")

    def test_channel_of_the_job_function(self):
        job = self.job_of(self.record.with_delay().retry_later())
        self.assertEqual(job.channel, "root.test")

    def test_identity_key_returns_the_waiting_job(self):
        first = self.record.with_delay(identity_key="k1").record_call("a")
        second = self.record.with_delay(identity_key="k1").record_call("b")
        self.assertEqual(first.id, second.id)
        self.assertEqual(first.uuid, second.uuid)
        self.assertEqual(self.Job.search_count([("identity_key", "=", "k1")]), 1)
        self.run_job(self.job_of(first))
        third = self.record.with_delay(identity_key="k1").record_call("c")
        self.assertNotEqual(third.id, first.id, "a done job does not hold its key")

    def test_bad_input_raises_at_the_call_site_and_stores_nothing(self):
        before = self.Job.search_count([])
        cases = [
            ({"priority": -1}, ("x",), ValueError),
            ({"max_retries": -1}, ("x",), ValueError),
            ({"eta": "tomorrow"}, ("x",), ValueError),
            ({"channel": "root.unknown"}, ("x",), Exception),
            ({}, ("nul\x00byte",), TypeError),
            ({}, (object(),), TypeError),
            ({}, ({1: "non-string key"},), TypeError),
        ]
        for properties, args, error in cases:
            with self.subTest(properties=properties, args=args), self.assertRaises(error):
                self.record.with_delay(**properties).record_call(*args)
        with self.assertRaises(AttributeError):
            self.record.with_delay().no_such_method()
        self.assertEqual(self.Job.search_count([]), before)

    def test_job_of_a_rolled_back_transaction_is_not_stored(self):
        before = self.Job.search_count([])
        try:
            with self.env.cr.savepoint():
                self.record.with_delay().record_call("rolled back")
                raise RuntimeError("caller fails")
        except RuntimeError:
            pass
        self.assertEqual(self.Job.search_count([]), before)
