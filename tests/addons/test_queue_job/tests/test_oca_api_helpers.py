# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""OCA's delay.py classes and tests/common.py helpers, as client addons use them."""

import gc
import types
import unittest

from odoo.tests import tagged

from odoo.addons.queue_job import delay
from odoo.addons.queue_job.delay import (
    Delayable,
    DelayableGraph,
    DelayableRecordset,
    Graph,
    chain,
    group,
)
from odoo.addons.queue_job.tests.common import (
    JobCounter,
    JobMixin,
    OdooDocTestCase,
    load_doctests,
    mock_with_delay,
    trap_jobs,
)

from .job_runner_case import JobRunnerCase


@tagged("post_install", "-at_install")
class TestDelayableGraph(JobRunnerCase):
    def delayable(self, tag):
        return self.record.delayable(description=tag).record_call(tag)

    def test_linked_delayables_share_one_graph(self):
        a, b, c, d = (self.delayable(tag) for tag in "abcd")
        self.assertIsInstance(a._graph, DelayableGraph)
        self.assertIsNot(a._graph, b._graph, "unlinked: a graph each")
        chain(a, group(b, c)).on_done(d)
        graph = a._graph
        self.assertTrue(all(node._graph is graph for node in (a, b, c, d)))
        self.assertEqual(graph.vertices(), {a, b, c, d})
        self.assertCountEqual(graph.edges(), [(a, b), (a, c), (b, d), (c, d)])
        self.assertEqual(graph.root_vertices(), {a})
        self.assertEqual(list(graph.topological_sort()), [a, b, c, d])
        self.assertEqual(sorted(graph.paths(a), key=len), [[a, b, d], [a, c, d]])

    def test_delay_stores_the_graph_in_topological_order(self):
        a, b, c = (self.delayable(tag) for tag in "abc")
        c.on_done(b)
        a.on_done(c)
        a.delay()
        ids = [node._generated_job.id for node in (a, c, b)]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(self.job_of(b._generated_job).dependency_job_ids.id, ids[1])

    def test_group_members_are_one_graph_without_edges(self):
        a, b = (self.delayable(tag) for tag in "ab")
        group(a, b)
        self.assertIs(a._graph, b._graph)
        self.assertFalse(a._graph.edges())
        a._graph.delay()
        self.assertEqual(a._generated_job.graph_uuid, b._generated_job.graph_uuid)

    def test_cycle_is_refused_before_anything_is_stored(self):
        a, b = (self.delayable(tag) for tag in "ab")
        a.on_done(b)
        b.on_done(a)
        counter = JobCounter(self.env)
        with self.assertRaisesRegex(ValueError, "cycle"):
            a.delay()
        self.assertEqual(counter.count_created(), 0)

    def test_a_delayable_never_delayed_is_warned_about(self):
        gc.collect()  # the garbage of other tests first
        with self.assertLogs("odoo.addons.queue_job.delay", "WARNING") as logs:
            forgotten = self.delayable("forgotten")
            del forgotten
            gc.collect()  # a delayable and its graph refer to each other
        self.assertIn("was prepared but never delayed", logs.output[0])
        with self.assertNoLogs("odoo.addons.queue_job.delay", "WARNING"):
            delayed = self.delayable("delayed")
            delayed.delay()
            split = self.record.delayable().record_call("split")
            split.split(1).delay()
            del delayed, split
            gc.collect()

    def test_generic_graph(self):
        graph = Graph()
        graph.add_edge(1, 2)
        graph.add_edge(1, 3)
        graph.add_edge(2, 3)
        graph.add_vertex(4)
        self.assertEqual(graph.vertices(), {1, 2, 3, 4})
        self.assertEqual(graph.root_vertices(), {1, 4})
        self.assertEqual(list(graph.topological_sort()), [1, 4, 2, 3])
        self.assertEqual(sorted(graph.paths(1)), [[1, 2, 3], [1, 3]])
        self.assertEqual(repr(graph), "1 → 2 → 3\n1 → 3\n4")

    def test_signatures(self):
        delayable = Delayable(self.record, priority=3, eta=None, max_retries=2,
                              description="d", channel="root", identity_key=None)
        self.assertEqual((delayable.priority, delayable.max_retries), (3, 2))
        with self.assertRaises(TypeError):
            Delayable(self.record, color="red")
        delayed = DelayableRecordset(self.record, priority=7, description="via class")
        self.assertEqual(delayed.recordset, self.record)
        job_ = delayed.echo(1)
        self.assertEqual((job_.priority, job_.description), (7, "via class"))
        self.assertIsInstance(self.record.with_delay(), DelayableRecordset)


    def test_delayable_recordset_exposes_its_delayable(self):
        # edi_queue_oca's tests read the job's properties from it.
        delayed = self.record.with_delay(priority=4, channel="root")
        self.assertEqual((delayed.delayable.priority, delayed.delayable.channel), (4, "root"))
        first = delayed.echo(1)
        self.assertIs(delayed.delayable._generated_job, first)
        second = delayed.echo(2)
        self.assertIs(delayed.delayable._generated_job, second)
        self.assertNotEqual(first.uuid, second.uuid, "each call is a job of its own")
        self.assertEqual((second.priority, second.args), (4, (2,)))

@tagged("post_install", "-at_install")
class TestTestHelpers(JobMixin, JobRunnerCase):
    def test_job_counter_and_perform_jobs(self):
        counter = self.job_counter()
        self.assertIsInstance(counter, JobCounter)
        existing = counter.count_existing()
        self.record.with_delay().record_call("counted")
        self.assertEqual(counter.count_created(), 1)
        self.assertEqual(counter.count_all(), existing + 1)
        self.assertEqual(counter.search_created().method_name, "record_call")
        self.perform_jobs(counter)
        self.assertEqual(self.log_tags(), ["counted"])

    def test_mixin_trap_jobs(self):
        with self.trap_jobs() as trap:
            self.record.with_delay().record_call("trapped")
            trap.assert_jobs_count(1, only=self.record.record_call)
            self.assertEqual(
                trap._filtered_enqueued_jobs(self.record.record_call), trap.enqueued_jobs
            )
            self.assertFalse(trap._filtered_enqueued_jobs(self.record.echo))

    def test_trap_jobs_ignores_the_no_delay_mode(self):
        with trap_jobs() as trap:
            self.record.with_context(queue_job__no_delay=True).with_delay().record_call("x")
        self.assertEqual(trap.jobs_count(), 1)
        self.assertFalse(self.log_tags())

    def test_mock_with_delay(self):
        counter = JobCounter(self.env)
        with mock_with_delay() as (delayable_cls, delayable):
            self.record.with_delay(priority=15).record_call("mocked", 2)
        self.assertEqual(counter.count_created(), 0, "nothing stored")
        args, kwargs = delayable_cls.call_args
        self.assertEqual(args, (self.record,))
        self.assertEqual(kwargs["priority"], 15)
        delayable.record_call.assert_called_once_with("mocked", 2)
        self.assertIsInstance(self.record.with_delay(), DelayableRecordset, "restored")

    def test_load_doctests(self):
        self.assertTrue(self.doctest_results(delay).wasSuccessful(), "delay.py's doctests pass")
        module = types.ModuleType("qj_doctest_module", ">>> 1 + 1\n3\n")
        self.assertFalse(self.doctest_results(module).wasSuccessful())

    def doctest_results(self, module):
        suite = load_doctests(module)(unittest.TestLoader(), unittest.TestSuite(), None)
        tests = list(suite)
        self.assertTrue(tests)
        for test in tests:
            self.assertIsInstance(test, OdooDocTestCase)
            self.assertEqual(test.test_tags, {"standard", "at_install", "queue_job", "doctest"})
        result = unittest.TestResult()
        for test in tests:
            unittest.TestCase.run(test, result)
        return result
