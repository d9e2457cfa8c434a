# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Job graphs: what each builder stores, and the order in which jobs then run."""

from odoo.tests import tagged

from odoo.addons.queue_job.delay import chain, group
from odoo.addons.queue_job.exception import ChannelNotFound

from .job_runner_case import JobRunnerCase


@tagged("post_install", "-at_install")
class TestGraphBuilders(JobRunnerCase):
    def delayable(self, tag, **properties):
        return self.record.delayable(description=tag, **properties).record_call(tag)

    def stored(self, *delayables):
        """{tag: queue.job} of the jobs generated for ``delayables``."""
        return {d.description: self.job_of(d._generated_job) for d in delayables}

    def assert_waits(self, jobs, name, *dependencies):
        job = jobs[name]
        expected = self.Job.browse([jobs[dep].id for dep in dependencies])
        self.assertEqual(job.dependency_job_ids, expected, f"{name} waits for")
        self.assertEqual(job.pending_dependency_count, len(dependencies))
        self.assertEqual(job.state, "wait_dependencies" if dependencies else "pending")

    def assert_one_graph(self, jobs):
        graph_uuids = {job.graph_uuid for job in jobs.values()}
        self.assertEqual(len(graph_uuids), 1)
        self.assertTrue(graph_uuids.pop())

    def test_single_delayable(self):
        delayable = self.delayable("a")
        job_ = delayable.delay()
        record = self.job_of(job_)
        self.assertEqual(record.state, "pending")
        self.assertFalse(record.graph_uuid, "a lone job belongs to no graph")
        self.drain()
        self.assertEqual(record.state, "done")
        self.assertEqual(self.log_tags(), ["a"])

    def test_chain(self):
        a, b, c = (self.delayable(tag) for tag in "abc")
        chain(a, b, c).delay()
        jobs = self.stored(a, b, c)
        self.assert_one_graph(jobs)
        self.assert_waits(jobs, "a")
        self.assert_waits(jobs, "b", "a")
        self.assert_waits(jobs, "c", "b")
        self.drain()
        self.assertEqual(self.log_tags(), ["a", "b", "c"])
        self.assertEqual({job.state for job in jobs.values()}, {"done"})

    def test_group_on_done_is_a_barrier(self):
        a, b, c, cb = (self.delayable(tag) for tag in ("a", "b", "c", "cb"))
        group(a, b, c).on_done(cb).delay()
        jobs = self.stored(a, b, c, cb)
        self.assert_one_graph(jobs)
        self.assert_waits(jobs, "cb", "a", "b", "c")
        for member in "ab":
            self.run_job(jobs[member])
            self.assertEqual(jobs["cb"].state, "wait_dependencies")
        self.assertEqual(jobs["cb"].pending_dependency_count, 1)
        self.run_job(jobs["c"])
        self.assertEqual(jobs["cb"].state, "pending")
        self.assertEqual(jobs["cb"].pending_dependency_count, 0)
        self.drain()
        self.assertEqual(self.log_tags(), ["a", "b", "c", "cb"])

    def test_chain_of_groups(self):
        a, b, c, d = (self.delayable(tag) for tag in "abcd")
        chain(group(a, b), group(c, d)).delay()
        jobs = self.stored(a, b, c, d)
        self.assert_waits(jobs, "c", "a", "b")
        self.assert_waits(jobs, "d", "a", "b")
        self.drain()
        tags = self.log_tags()
        self.assertEqual(set(tags[:2]), {"a", "b"})
        self.assertEqual(set(tags[2:]), {"c", "d"})

    def test_group_of_chains(self):
        a, b, c, cb = (self.delayable(tag) for tag in ("a", "b", "c", "cb"))
        group(chain(a, b), c).on_done(cb).delay()
        jobs = self.stored(a, b, c, cb)
        self.assert_waits(jobs, "b", "a")
        self.assert_waits(jobs, "cb", "b", "c")
        self.drain()
        tags = self.log_tags()
        self.assertLess(tags.index("a"), tags.index("b"))
        self.assertEqual(tags[-1], "cb")

    def test_chain_on_done_and_nested_on_done(self):
        a, b, c, d = (self.delayable(tag) for tag in "abcd")
        chain(a, b).on_done(c, d).delay()
        jobs = self.stored(a, b, c, d)
        self.assert_waits(jobs, "c", "b")
        self.assert_waits(jobs, "d", "b")
        x, y, z = (self.delayable(tag) for tag in "xyz")
        x.on_done(y.on_done(z)).delay()
        jobs = self.stored(x, y, z)
        self.assert_waits(jobs, "y", "x")
        self.assert_waits(jobs, "z", "y")

    def test_set_properties(self):
        a = self.delayable("a").set(priority=3, max_retries=2).set({"channel": "root.test"})
        b = self.delayable("b")
        a.on_done(b).delay()
        job = self.stored(a, b)["a"]
        self.assertEqual((job.priority, job.max_retries, job.channel), (3, 2, "root.test"))
        with self.assertRaises(ValueError):
            self.delayable("c").set(colour="blue")

    def test_split(self):
        records = self.env["test.queue.job"].create([{"name": f"r{i}"} for i in range(5)])
        parts = records.delayable(description="batch").record_call("split").split(2)
        parts.delay()
        jobs = self.Job.search([("method_name", "=", "record_call")], order="id")
        self.assertEqual(len(jobs), 3)
        self.assertEqual([len(job.record_ids) for job in jobs], [2, 2, 1])
        self.assertEqual(
            jobs.mapped("name"),
            ["batch (split 1/3)", "batch (split 2/3)", "batch (split 3/3)"],
        )
        self.assertEqual(set(jobs.mapped("state")), {"pending"}, "a split group runs in parallel")
        self.assertEqual(len(set(jobs.mapped("graph_uuid"))), 1)

    def test_split_as_chain(self):
        records = self.env["test.queue.job"].create([{"name": f"r{i}"} for i in range(4)])
        records.delayable().record_call("split").split(2, chain=True).delay()
        first, second = self.Job.search([("method_name", "=", "record_call")], order="id")
        self.assertEqual(second.dependency_job_ids, first)
        self.drain()
        self.assertEqual(len(self.log_tags()), 4)

    def test_graph_is_stored_whole_or_not_at_all(self):
        before = self.Job.search_count([])
        good = self.delayable("good")
        bad = self.record.delayable(channel="root.does_not_exist").record_call("bad")
        with self.assertRaises(ChannelNotFound):
            group(good, bad).delay()
        self.assertEqual(self.Job.search_count([]), before)

    def test_cycle_is_refused(self):
        before = self.Job.search_count([])
        a, b = self.delayable("a"), self.delayable("b")
        a.on_done(b)
        b.on_done(a)
        with self.assertRaisesRegex(ValueError, "cycle"):
            a.delay()
        self.assertEqual(self.Job.search_count([]), before)

    def test_misuse_is_refused_at_delay(self):
        with self.assertRaisesRegex(ValueError, "call a method"):
            self.record.delayable().delay()
        a = self.delayable("a")
        a.delay()
        with self.assertRaisesRegex(ValueError, "already delayed"):
            a.delay()
        with self.assertRaisesRegex(ValueError, "one call per delayable"):
            self.record.delayable().record_call("x").record_call("y")
        with self.assertRaises(AttributeError):
            self.record.delayable().no_such_method()

    def test_job_adopted_by_identity_releases_the_graph_when_it_runs(self):
        holder = self.record.with_delay(identity_key="shared").record_call("holder")
        first = self.delayable("first", identity_key="shared")
        then = self.delayable("then")
        chain(first, then).delay()
        jobs = self.stored(first, then)
        self.assertEqual(jobs["first"], self.job_of(holder), "the waiting job is adopted")
        self.assert_one_graph(jobs)
        self.assert_waits(jobs, "then", "first")
        self.run_job(jobs["first"])
        # Released by the run itself, not by the runner's periodic rescue.
        self.assertEqual(jobs["then"].state, "pending")
        self.assertEqual(self.log_tags(), ["holder"])

    def test_chain_of_keyed_jobs_delayed_twice_is_stored_once(self):
        # OCA clients (edi_queue_oca) give every job of a chain an identity key.
        for _attempt in range(2):
            first = self.delayable("first", identity_key="k-first")
            then = self.delayable("then", identity_key="k-then")
            chain(first, then).delay()
        jobs = self.stored(first, then)
        self.assertEqual(self.Job.search_count([]), 2, "the second chain adopts the first")
        self.assert_waits(jobs, "then", "first")
        self.drain()
        self.assertEqual(self.log_tags(), ["first", "then"])

    def test_dependent_adopting_a_waiting_job_makes_it_wait_for_the_graph(self):
        holder = self.record.with_delay(identity_key="shared").record_call("holder")
        first = self.delayable("first")
        then = self.delayable("then", identity_key="shared")
        chain(first, then).delay()
        jobs = self.stored(first, then)
        self.assertEqual(jobs["then"], self.job_of(holder), "the waiting job is adopted")
        self.assert_waits(jobs, "then", "first")
        self.drain()
        self.assertEqual(self.log_tags(), ["first", "holder"])
        self.assertEqual({job.state for job in jobs.values()}, {"done"})
