# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""trap_jobs(): what it counts and matches, that it stores nothing, and the
order in which it performs what it trapped."""

import os
from unittest import mock

from odoo.tests import TransactionCase, new_test_user, tagged

from odoo.addons.queue_job.delay import chain, group
from odoo.addons.queue_job.exception import ChannelNotFound
from odoo.addons.queue_job.job import identity_exact
from odoo.addons.queue_job.tests.common import JobCall, trap_jobs


@tagged("post_install", "-at_install")
class TestTrapJobs(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Model = cls.env["test.queue.job"]
        cls.record = cls.Model.create({"name": "trapped"})
        cls.other = cls.Model.create({"name": "other"})

    def log_tags(self):
        """Tags of the runs of record_call on this test's records, in order."""
        records = self.record | self.other
        logs = self.env["test.queue.job.log"].search([("record_id", "in", records.ids)])
        return logs.mapped("tag")

    def job_count_in_database(self):
        self.env.flush_all()
        self.env.cr.execute("SELECT count(*) FROM queue_job")
        return self.env.cr.fetchone()[0]

    def test_counts_per_method_and_records(self):
        with trap_jobs() as trap:
            self.record.with_delay().record_call("a")
            self.record.with_delay().increment(2)
            self.record.with_delay().record_call("b")
            self.assertEqual(trap.jobs_count(), 3)
            self.assertEqual(trap.jobs_count(only=self.record.record_call), 2)
            self.assertEqual(trap.jobs_count(only=self.record.increment), 1)
            self.assertEqual(trap.jobs_count(only=self.record.echo), 0)
            self.assertEqual(
                trap.jobs_count(only=self.other.record_call), 0, "other records"
            )
            self.assertEqual(
                trap.jobs_count(only=self.Model.browse(self.record.id).record_call),
                2,
                "the same records in another recordset object",
            )
            trap.assert_jobs_count(3)
            trap.assert_jobs_count(2, only=self.record.record_call)
            wrong_counts = (
                (2, None),
                (3, self.record.record_call),
                (0, self.record.increment),
            )
            for expected, only in wrong_counts:
                with self.subTest(expected=expected, only=only), self.assertRaises(AssertionError):
                    trap.assert_jobs_count(expected, only=only)

    def test_nothing_is_stored_nor_run(self):
        before = self.job_count_in_database()
        with trap_jobs() as trap:
            self.record.with_delay().increment(5)
            chain(
                self.record.delayable().record_call("a"),
                group(self.record.delayable().record_call("b"), self.other.delayable().increment()),
            ).delay()
            self.assertEqual(self.job_count_in_database(), before)
        trap.assert_jobs_count(4)
        self.assertEqual(self.job_count_in_database(), before)
        self.assertEqual(self.record.counter, 0)
        self.assertEqual(self.log_tags(), [])
        self.record.with_delay().increment()
        self.assertEqual(
            self.job_count_in_database(), before + 1, "jobs are stored again after the block"
        )

    def test_assert_enqueued_job_exact_match_and_each_mismatch(self):
        properties = {
            "priority": 5,
            "eta": 60,
            "max_retries": 2,
            "description": "Call a",
            "channel": "root.test",
            "identity_key": identity_exact,
        }
        with trap_jobs() as trap:
            self.record.with_delay(**properties).record_call("a", 1, key="v")
        trap.assert_enqueued_job(
            self.record.record_call, args=("a", 1), kwargs={"key": "v"}, properties=properties
        )
        trap.assert_enqueued_job(
            self.Model.browse(self.record.id).record_call,
            args=("a", 1),
            kwargs={"key": "v"},
            properties={"priority": 5},
        )
        mismatches = {
            "method": {"method": self.record.echo},
            "records": {"method": self.other.record_call},
            "missing arg": {"args": ("a",)},
            "other arg": {"args": ("a", 2)},
            "extra arg": {"args": ("a", 1, 2)},
            "other kwarg": {"kwargs": {"key": "w"}},
            "missing kwargs": {"kwargs": {}},
            "priority": {"properties": {"priority": 6}},
            "eta": {"properties": {"eta": 61}},
            "max_retries": {"properties": {"max_retries": 3}},
            "description": {"properties": {"description": "Call b"}},
            "channel": {"properties": {"channel": "root"}},
            "identity_key": {"properties": {"identity_key": "a key"}},
            "unknown property": {"properties": {"priorty": 5}},
        }
        for name, change in mismatches.items():
            call = {
                "method": self.record.record_call,
                "args": ("a", 1),
                "kwargs": {"key": "v"},
                "properties": properties,
                **change,
            }
            with self.subTest(mismatch=name):
                with self.assertRaises(AssertionError) as caught:
                    trap.assert_enqueued_job(**call)
                self.assertIn("record_call('a', 1, key='v')", str(caught.exception))

    def test_properties_not_set_are_none(self):
        with trap_jobs() as trap:
            self.record.with_delay().record_call("a")
        trap.assert_enqueued_job(
            self.record.record_call, args=("a",), properties={"priority": None, "channel": None}
        )
        with self.assertRaises(AssertionError):
            trap.assert_enqueued_job(
                self.record.record_call, args=("a",), properties={"priority": 10}
            )

    def test_calls(self):
        with trap_jobs() as trap:
            self.record.with_delay(priority=3).record_call("a", key=1)
        expected = JobCall(
            self.Model.browse(self.record.id).record_call,
            ("a",),
            {"key": 1},
            {
                "priority": 3,
                "eta": None,
                "max_retries": None,
                "description": None,
                "channel": None,
                "identity_key": None,
                "timeout": None,
            },
        )
        self.assertEqual(trap.calls, [expected])
        self.assertFalse(trap.calls[0] != expected)
        self.assertNotEqual(trap.calls[0], expected._replace(args=("b",)))

    def test_split_jobs_are_trapped_with_their_description(self):
        records = self.record | self.other
        with trap_jobs() as trap:
            records.delayable(priority=4).record_call("x").split(1).delay()
        trap.assert_jobs_count(2)
        for index, record in enumerate(records, start=1):
            trap.assert_enqueued_job(
                record.record_call,
                args=("x",),
                properties={"priority": 4, "description": f"record_call (split {index}/2)"},
            )

    def test_chain_runs_in_order_whatever_the_priorities(self):
        with trap_jobs() as trap:
            chain(
                self.record.delayable(priority=30).record_call("a"),
                self.record.delayable(priority=20).record_call("b"),
                self.record.delayable(priority=10).record_call("c"),
            ).delay()
            self.assertEqual(self.log_tags(), [])
            trap.perform_enqueued_jobs()
        self.assertEqual(self.log_tags(), ["a", "b", "c"])
        self.assertEqual(trap.enqueued_jobs, [], "performed jobs leave the trap")

    def test_group_callback_runs_after_all_members(self):
        a = self.record.delayable(priority=20).record_call("a")
        b = self.other.delayable(priority=20).record_call("b")
        callback = self.record.delayable(priority=0).record_call("cb")
        with trap_jobs() as trap:
            group(a, b).on_done(callback).delay()
            job_a, job_b, job_cb = (d._generated_job for d in (a, b, callback))
            self.assertEqual(job_cb.depends_on, {job_a, job_b})
            self.assertEqual(job_cb.state, "wait_dependencies")
            self.assertEqual(job_a.state, "pending")
            graph_uuids = {job_a.graph_uuid, job_b.graph_uuid, job_cb.graph_uuid}
            self.assertEqual(len(graph_uuids), 1)
            self.assertTrue(graph_uuids.pop())
            trap.perform_enqueued_jobs()
        self.assertEqual(self.log_tags(), ["a", "b", "cb"])
        self.assertEqual({job_a.state, job_b.state, job_cb.state}, {"done"})

    def test_independent_jobs_run_by_priority_then_delay_order(self):
        with trap_jobs() as trap:
            self.record.with_delay(priority=30).record_call("late")
            self.record.with_delay(priority=5).record_call("early")
            self.record.with_delay(priority=30).record_call("late, delayed after")
            trap.perform_enqueued_jobs()
        self.assertEqual(self.log_tags(), ["early", "late", "late, delayed after"])

    def test_performed_as_the_runner_would(self):
        user = new_test_user(self.env, login="trap_jobs_user")
        with trap_jobs() as trap:
            echo = self.record.with_delay().echo((1, 2), day="mon")
            call = self.record.with_user(user).with_delay().record_call("as user")
            trap.perform_enqueued_jobs()
        self.assertEqual(echo.result, (([1, 2],), {"day": "mon"}), "tuples come back as lists")
        self.assertEqual(call.result, "as user")
        log = self.record.log_ids
        self.assertEqual(log.run_as_uid, user.id)
        self.assertEqual(log.job_uuid, call.uuid)

    def test_identity_key_merges_into_the_trapped_job(self):
        with trap_jobs() as trap:
            first = self.record.with_delay(identity_key=identity_exact).increment(1)
            same = self.record.with_delay(identity_key=identity_exact).increment(1)
            self.record.with_delay(identity_key=identity_exact).increment(2)
            self.assertEqual(same.uuid, first.uuid)
            trap.assert_jobs_count(2)
            self.assertEqual(len(trap.calls), 3)
            trap.perform_enqueued_jobs()
            self.assertEqual(self.record.counter, 3)
            again = self.record.with_delay(identity_key=identity_exact).increment(1)
            self.assertNotEqual(again.uuid, first.uuid, "the first one is no longer waiting")
            trap.assert_jobs_count(1)

    def test_dependent_of_a_merged_job_waits_for_its_holder(self):
        with trap_jobs() as trap:
            holder = self.record.with_delay(identity_key="k", priority=50).record_call("holder")
            merged = self.record.delayable(identity_key="k").record_call("merged")
            merged.on_done(self.record.delayable(priority=0).record_call("after")).delay()
            self.assertEqual(merged._generated_job.uuid, holder.uuid)
            trap.perform_enqueued_jobs()
        self.assertEqual(self.log_tags(), ["holder", "after"])

    def test_error_propagates_and_dependents_stay_trapped(self):
        with trap_jobs() as trap:
            self.record.with_delay(priority=1).record_call("first")
            chain(
                self.record.delayable(priority=2).fail("boom"),
                self.record.delayable().record_call("after failure"),
            ).delay()
            self.record.with_delay(priority=3).record_call("unrelated")
            with self.assertRaisesRegex(ValueError, "boom"):
                trap.perform_enqueued_jobs()
            self.assertEqual(self.log_tags(), ["first"])
            self.assertEqual(trap.jobs_count(), 2)
            trap.perform_enqueued_jobs()
            self.assertEqual(self.log_tags(), ["first", "unrelated"])
            trap.assert_jobs_count(1, only=self.record.record_call)

    def test_validated_as_in_production(self):
        with trap_jobs() as trap:
            with self.assertRaises(ValueError):
                self.record.with_delay(priority=-1).record_call("a")
            with self.assertRaises(ChannelNotFound):
                self.record.with_delay(channel="root.nowhere").record_call("a")
            with self.assertRaises(ValueError):
                # a graph is kept whole or not at all
                self.record.delayable().record_call("a").on_done(
                    self.record.delayable(priority=-1).record_call("b")
                ).delay()
        self.assertEqual(trap.jobs_count(), 0)
        self.assertEqual(trap.calls, [])

    def test_no_delay_mode_is_off_inside_the_trap(self):
        with trap_jobs() as trap, mock.patch.dict(os.environ, {"QUEUE_JOB__NO_DELAY": "1"}):
            self.record.with_context(queue_job__no_delay=True).with_delay().record_call("a")
            self.assertEqual(self.log_tags(), [], "trapped, not run")
            trap.assert_jobs_count(1)
            trap.perform_enqueued_jobs()
        self.assertEqual(self.log_tags(), ["a"])
