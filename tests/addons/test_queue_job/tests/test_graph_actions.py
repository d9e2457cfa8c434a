# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The barrier and the failure cascade through the runner and through the buttons."""

from odoo.tests import tagged

from odoo.addons.queue_job.delay import chain, group

from .job_runner_case import JobRunnerCase


@tagged("post_install", "-at_install")
class TestGraphActions(JobRunnerCase):
    def make_group(self, size=2, method="record_call"):
        """``group(m1..mN).on_done(cb)``; returns (members, callback) as queue.job."""
        members = [
            getattr(self.record.delayable(description=f"m{i}"), method)(f"m{i}")
            for i in range(1, size + 1)
        ]
        callback = self.record.delayable(description="cb").record_call("cb")
        group(*members).on_done(callback).delay()
        records = self.Job.browse([d._generated_job.id for d in members])
        return records, self.job_of(callback._generated_job)

    def test_set_done_twice_counts_once(self):
        (m1, m2), cb = self.make_group()
        m1.button_done()
        self.assertEqual(cb.pending_dependency_count, 1)
        m1.button_done()
        self.assertEqual(m1.state, "done")
        self.assertEqual(cb.pending_dependency_count, 1, "a second Set Done counts nothing")
        self.assertEqual(cb.state, "wait_dependencies")
        m2.button_done()
        self.assertEqual((cb.state, cb.pending_dependency_count), ("pending", 0))

    def test_done_requeue_done_counts_once(self):
        (m1, m2), cb = self.make_group()
        self.run_job(m1)
        self.assertEqual(cb.pending_dependency_count, 1)
        m1.requeue()
        self.assertEqual(m1.state, "pending")
        self.run_job(m1)
        self.assertEqual(m1.state, "done")
        self.assertEqual(cb.pending_dependency_count, 1)
        self.assertEqual(cb.state, "wait_dependencies")

    def test_action_reports_skipped_jobs(self):
        (m1, m2), cb = self.make_group()
        result = (m1 | cb).button_failed()
        self.assertEqual(result["params"]["type"], "success")
        m1.requeue()
        result = (m1 | m2).requeue()
        self.assertEqual(result["params"]["type"], "warning", "pending jobs cannot be requeued")
        self.assertIn("2 job(s) skipped", result["params"]["message"])

    def test_set_failed_fails_callback_and_requeue_restores_it(self):
        (m1, m2), cb = self.make_group()
        self.run_job(m2)
        m1.button_failed()
        self.assertEqual(m1.state, "failed")
        self.assertEqual(cb.state, "failed")
        self.assertEqual(cb.exc_name, "DependencyFailed")
        self.assertIn(m1.uuid, cb.exc_message)
        m1.requeue()
        self.assertEqual(m1.state, "pending")
        self.assertEqual((cb.state, cb.pending_dependency_count), ("wait_dependencies", 1))
        self.drain()
        self.assertEqual(cb.state, "done")
        self.assertEqual(self.log_tags().count("cb"), 1)

    def test_cancel_cascades_as_cancelled(self):
        (m1, m2), cb = self.make_group()
        m1.button_cancelled()
        self.assertEqual((m1.state, cb.state), ("cancelled", "cancelled"))
        self.assertEqual(cb.exc_name, "DependencyCancelled")
        self.assertEqual(m2.state, "pending", "the other member still runs")

    def test_failure_cascades_through_three_levels(self):
        a, b, c, d, e = (
            self.record.delayable(description=t).record_call_or_fail(t) for t in "abcde"
        )
        # a -> b -> group(c, d) -> e
        chain(a, b, group(c, d), e).delay()
        jobs = {t: self.job_of(x._generated_job) for t, x in zip("abcde", (a, b, c, d, e))}
        self.run_job(jobs["a"])
        self.record.name = "broken"
        self.run_job(jobs["b"])
        self.assertEqual(jobs["b"].state, "failed")
        self.assertIn("FailedJobError", jobs["b"].exc_name)
        for name in "cde":
            self.assertEqual(jobs[name].state, "failed", name)
            self.assertEqual(jobs[name].exc_name, "DependencyFailed")
            self.assertIn(jobs["b"].uuid, jobs[name].exc_message, "names the cause")
        self.assertEqual(jobs["a"].state, "done", "upstream untouched")
        # Repair the record and requeue the failed job: the graph finishes.
        self.record.name = "repaired"
        jobs["b"].requeue()
        self.assertEqual(
            [jobs[n].state for n in "bcde"],
            ["pending", "wait_dependencies", "wait_dependencies", "wait_dependencies"],
        )
        self.assertEqual(jobs["e"].pending_dependency_count, 2)
        self.drain()
        self.assertEqual({jobs[n].state for n in "abcde"}, {"done"})
        self.assertEqual(self.log_tags(), ["a", "b", "c", "d", "e"])

    def test_run_now_releases_dependents(self):
        (m1, m2), cb = self.make_group()
        m1.run_now()
        self.assertEqual(m1.state, "done")
        self.assertEqual(m1.retry, 1)
        m2.run_now()
        self.assertEqual(cb.state, "pending")
        self.assertEqual(self.log_tags(), ["m1", "m2"])
        cb.run_now()
        self.assertEqual(cb.state, "done")

    def test_run_now_failure_fails_dependents_and_keeps_no_writes(self):
        (m1, m2), cb = self.make_group(method="fail")
        m1.run_now()
        self.assertEqual(m1.state, "failed")
        self.assertIn("ValueError", m1.exc_name)
        self.assertEqual(self.record.name, "test record", "the failed job's write is rolled back")
        self.assertEqual(cb.state, "failed")

    def test_run_now_skips_waiting_jobs(self):
        (m1, m2), cb = self.make_group()
        result = cb.run_now()
        self.assertEqual(cb.state, "wait_dependencies")
        self.assertIn("skipped", result["params"]["message"])

    def test_actions_are_set_based(self):
        """The number of queries does not grow with the number of dependents."""

        def queries(action, size):
            members, _cb = self.make_group(size=size)
            self.env.flush_all()
            self.env.invalidate_all()
            start = self.env.cr.sql_log_count
            getattr(members, action)()
            return self.env.cr.sql_log_count - start

        for action in ("button_done", "button_failed", "button_cancelled"):
            self.assertEqual(queries(action, 3), queries(action, 30), action)

    def test_done_releases_with_fresh_cache(self):
        (m1, m2), cb = self.make_group()
        self.assertEqual(cb.state, "wait_dependencies")  # now in cache
        (m1 | m2).button_done()
        self.assertEqual(cb.state, "pending", "the ORM cache follows the SQL transition")
