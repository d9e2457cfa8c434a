# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Time limits: where a job's comes from, and the outcome the runner records
when it stops a job past it (``execution.record_timeout``); Cancel of a
running job. The runner's side (stopping the code) is tested with real
runner processes in tests/pure/test_runner.py and tests/e2e."""

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import new_test_user, tagged

from odoo.addons.queue_job.delay import chain
from odoo.addons.queue_job.execution import record_timeout
from odoo.addons.queue_job.job import Job

from .job_runner_case import JobRunnerCase

JOB_TIMEOUT = "odoo.addons.queue_job.exception.JobTimeout"


@tagged("post_install", "-at_install")
class TestTimeoutSources(JobRunnerCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.function = cls.env["queue.job.function"].job_config(
            "<test.queue.job>.increment"
        ).job_function_id
        cls.function = cls.env["queue.job.function"].browse(cls.function)

    def stored_timeout(self, job_):
        self.env.flush_all()
        self.env.cr.execute("SELECT timeout FROM queue_job WHERE id = %s", (job_.id,))
        return self.env.cr.fetchone()[0]

    def test_the_job_s_own_limit_comes_first_then_its_function_s(self):
        self.assertIsNone(self.stored_timeout(self.record.with_delay().increment()))
        self.function.timeout = 30
        self.assertEqual(self.stored_timeout(self.record.with_delay().increment()), 30)
        self.assertEqual(self.stored_timeout(self.record.with_delay(timeout=2).increment()), 2)
        delayable = self.record.delayable().set(timeout=1.5).increment()
        delayable.delay()
        self.assertEqual(self.stored_timeout(delayable._generated_job), 1.5)
        job_ = Job(self.record.increment, timeout=4)
        job_.store()
        self.assertEqual(self.stored_timeout(job_), 4)
        # The properties of a chain's members are their own.
        first, second = (
            self.record.delayable(timeout=5).increment(),
            self.record.delayable().increment(),
        )
        chain(first, second).delay()
        self.assertEqual(self.stored_timeout(first._generated_job), 5)
        self.assertEqual(self.stored_timeout(second._generated_job), 30)

    def test_a_bad_limit_is_refused_where_it_is_given_and_nothing_is_stored(self):
        count = self.Job.search_count([])
        for bad in (-1, 0, "10", True, float("inf"), float("nan")):
            with self.subTest(timeout=bad):
                with self.assertRaisesRegex(ValueError, "timeout must be a positive number"):
                    self.record.with_delay(timeout=bad).increment()
                with self.assertRaisesRegex(ValueError, "timeout must be a positive number"):
                    self.record.delayable().set(timeout=bad).increment().delay()
        self.assertEqual(self.Job.search_count([]), count)
        with self.assertRaisesRegex(ValidationError, "Time limit of"):
            self.function.timeout = -5


@tagged("post_install", "-at_install")
class TestTimeoutOutcome(JobRunnerCase):
    def claim(self, record):
        """Start ``record`` as the claim does; return its row."""
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE queue_job j SET state = 'started', retry = retry + 1,"
            " date_started = now() AT TIME ZONE 'UTC' WHERE id = %s RETURNING *",
            (record.id,),
        )
        columns = [column.name for column in self.env.cr.description]
        return dict(zip(columns, self.env.cr.fetchone(), strict=True))

    def stop(self, record):
        record_timeout(self.env.cr, self.claim(record), 2, '  File "job.py", in sleep\n')
        self.env.invalidate_all()

    def test_a_job_past_its_limit_fails_with_job_timeout_and_its_dependents_too(self):
        first = self.record.delayable().fail_for_good()
        second = self.record.delayable().increment()
        chain(first, second).delay()
        first, second = (self.job_of(d._generated_job) for d in (first, second))
        self.stop(first)
        self.assertEqual(first.state, "failed")
        self.assertEqual(first.exc_name, JOB_TIMEOUT)
        self.assertEqual(first.exc_message, "Job ran past its time limit of 2 s and was stopped")
        self.assertIn("Stack of the job when it was stopped", first.exc_info)
        self.assertIn("in sleep", first.exc_info)
        self.assertEqual((second.state, second.exc_name), ("failed", "DependencyFailed"))

    def test_its_on_fail_method_is_called(self):
        job = self.job_of(self.record.with_delay().client_fail("x"))
        self.stop(job)
        self.assertEqual(job.state, "failed")
        self.assertEqual(self.log_tags(), ["on fail"])
        self.assertIn(JOB_TIMEOUT, self.Log.search([]).arguments)

    def test_with_a_retry_pattern_it_is_retried_while_it_has_tries_left(self):
        # retry_later's job function retries after 1 s (test data)
        job = self.job_of(self.record.with_delay(max_retries=2).retry_later())
        self.stop(job)
        self.assertEqual((job.state, job.exc_name, job.retry), ("pending", JOB_TIMEOUT, 1))
        self.assertEqual(self.seconds_to_eta(job), 1)
        self.stop(job)
        self.assertEqual((job.state, job.exc_name, job.retry), ("failed", JOB_TIMEOUT, 2))

    def test_a_job_that_ended_first_keeps_its_outcome(self):
        job = self.job_of(self.record.with_delay().increment())
        row = self.claim(job)
        # The job commits done before the runner records its timeout.
        self.env.cr.execute("UPDATE queue_job SET state = 'done' WHERE id = %s", (job.id,))
        record_timeout(self.env.cr, row, 2, "")
        self.env.invalidate_all()
        self.assertEqual((job.state, job.exc_name), ("done", False))


@tagged("post_install", "-at_install")
class TestCancelRunningJob(JobRunnerCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = new_test_user(
            cls.env, "qj_stop_manager", groups="base.group_user,queue_job.group_queue_job_manager"
        )
        cls.user = new_test_user(cls.env, "qj_stop_user", groups="base.group_user")

    def started_chain(self, user):
        first = self.record.with_user(user).delayable().increment()
        second = self.record.with_user(user).delayable().increment()
        chain(first, second).delay()
        first, second = (self.job_of(d._generated_job) for d in (first, second))
        self.env.flush_all()
        self.env.cr.execute("UPDATE queue_job SET state = 'started' WHERE id = %s", (first.id,))
        self.env.invalidate_all()
        return first, second

    def test_a_manager_cancels_a_started_job_and_its_dependents(self):
        first, second = self.started_chain(self.user)
        first.with_user(self.manager).button_cancelled()
        self.assertEqual(first.state, "cancelled")
        self.assertEqual((second.state, second.exc_name), ("cancelled", "DependencyCancelled"))

    def test_a_user_cannot_cancel_a_started_job_even_their_own(self):
        first, second = self.started_chain(self.user)
        with self.assertRaises(AccessError):
            first.with_user(self.user).button_cancelled()
        self.assertEqual((first.state, second.state), ("started", "wait_dependencies"))

    def test_a_manager_cannot_cancel_a_job_of_a_company_they_may_not_access(self):
        other = self.env["res.company"].create({"name": "qj stop other company"})
        first, _second = self.started_chain(self.user)
        first.sudo().with_context(_job_edit_sentinel=self.Job.EDIT_SENTINEL).write(
            {"company_id": other.id}
        )
        with self.assertRaises(AccessError):
            first.with_user(self.manager).button_cancelled()
        self.assertEqual(first.state, "started")
