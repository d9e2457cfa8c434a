# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Job Queue > Overview (channels, jobs per minute) and the picture of a job's graph."""

import datetime
import os
from unittest.mock import patch

from odoo.exceptions import AccessError
from odoo.tests import HttpCase, TransactionCase, new_test_user, tagged

from odoo.addons.queue_job.delay import group

from .test_ui import TourScreenshots


def ended_ago(job, minutes):
    """Make ``job`` look ended ``minutes`` ago."""
    job.env.cr.execute(
        "UPDATE queue_job SET date_done = (now() AT TIME ZONE 'UTC') - make_interval(mins => %s)"
        " WHERE id = %s",
        (minutes, job.id),
    )
    job.invalidate_recordset()


@tagged("post_install", "-at_install")
class TestChannelOverview(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        channels = cls.env["queue.job.channel"]
        cls.channel = channels.create(
            {"name": "overview", "parent_id": cls.env.ref("queue_job.channel_root").id}
        )
        cls.sub_channel = channels.create({"name": "sub", "parent_id": cls.channel.id})
        cls.record = cls.env["test.queue.job"].create({"name": "overview"})

    def delay(self, channel, count=1):
        return self.env["queue.job"].browse(
            [
                self.record.with_delay(channel=channel.complete_name).record_call("job").id
                for _index in range(count)
            ]
        )

    def overview(self, channel):
        self.env.flush_all()
        overview = self.env["queue.job.channel.overview"]
        overview.invalidate_model()
        return overview.search([("channel_id", "=", channel.id)])

    def test_counts_by_state_with_sub_channels(self):
        pending = self.delay(self.channel, 3)
        sub_jobs = self.delay(self.sub_channel, 4)
        pending[0].write({"state": "started"})
        sub_jobs[0]._set_failed()
        sub_jobs[1]._set_done()
        sub_jobs[2]._set_failed()
        ended_ago(sub_jobs[2], 90)  # failed, but not in the last hour
        member, callback = (self.record.delayable().record_call(tag) for tag in ("a", "cb"))
        member.set(channel=self.sub_channel.complete_name)
        callback.set(channel=self.sub_channel.complete_name)
        group(member).on_done(callback).delay()

        row = self.overview(self.channel)
        self.assertEqual(row.name, "root.overview")
        self.assertEqual(
            [row.running_count, row.pending_count, row.waiting_count, row.failed_count],
            [1, 2 + 1 + 1, 1, 2],
            "the channel counts its sub-channel's jobs",
        )
        self.assertEqual([row.done_last_hour_count, row.failed_last_hour_count], [1, 1])
        self.assertEqual(row.oldest_pending_date, pending[1].date_created)
        self.assertTrue(row.oldest_pending_age)
        sub_row = self.overview(self.sub_channel)
        self.assertEqual(
            [sub_row.running_count, sub_row.pending_count, sub_row.waiting_count,
             sub_row.failed_count],
            [0, 2, 1, 2],
        )
        empty = self.env["queue.job.channel"].create(
            {"name": "empty", "parent_id": self.channel.id}
        )
        self.assertEqual(self.overview(empty).pending_count, 0, "a configured channel has a row")

    def test_each_count_opens_the_jobs_it_counts(self):
        jobs = self.delay(self.channel, 2) | self.delay(self.sub_channel, 3)
        jobs[0]._set_failed()
        jobs[2]._set_failed()
        jobs[3]._set_done()
        jobs[1].write({"state": "started"})
        row = self.overview(self.channel)
        Job = self.env["queue.job"]
        for action, expected, count in (
            (row.action_open_failed_jobs(), jobs[0] | jobs[2], row.failed_count),
            (row.action_open_running_jobs(), jobs[1], row.running_count),
            (row.action_open_pending_jobs(), jobs[4], row.pending_count),
            (row.action_open_done_last_hour_jobs(), jobs[3], row.done_last_hour_count),
            (row.action_open_failed_last_hour_jobs(), jobs[0] | jobs[2], row.failed_last_hour_count),
        ):
            with self.subTest(action=action["name"]):
                self.assertEqual(action["res_model"], "queue.job")
                self.assertEqual(Job.search(action["domain"]), expected)
                self.assertEqual(len(expected), count)

    def test_capacity_and_paused_come_from_the_channels_setting(self):
        setting = "root:4,root.overview:2:paused"
        with patch.dict(os.environ, {"ODOO_QUEUE_JOB_CHANNELS": setting}):
            row, sub_row = self.overview(self.channel), self.overview(self.sub_channel)
            self.assertEqual([row.capacity, row.paused], [2, True])
            self.assertEqual([sub_row.capacity, sub_row.paused], [0, False])

    def test_capacity_and_paused_of_a_channel_record(self):
        """A channel that the setting does not name: its record's values."""
        self.sub_channel.write({"capacity": 3, "paused": True})
        with patch.dict(os.environ, {"ODOO_QUEUE_JOB_CHANNELS": "root:4"}):
            sub_row = self.overview(self.sub_channel)
            self.assertEqual([sub_row.capacity, sub_row.paused], [3, True])

    def test_managers_only(self):
        user = new_test_user(self.env, login="overview_user", groups="base.group_user")
        with self.assertRaises(AccessError):
            self.env["queue.job.channel.overview"].with_user(user).search([])
        with self.assertRaises(AccessError):
            self.env["queue.job.throughput"].with_user(user).search([])


@tagged("post_install", "-at_install")
class TestJobsPerMinute(TransactionCase):
    def test_done_and_failed_per_minute_over_24_hours(self):
        record = self.env["test.queue.job"].create({"name": "throughput"})
        jobs = self.env["queue.job"].browse(
            [record.with_delay().record_call(str(index)).id for index in range(5)]
        )
        (jobs - jobs[2])._set_done()
        jobs[2]._set_failed()
        # Minutes of the read's time (its transaction's), as the graph counts them.
        for job, minutes in zip(jobs, (0, 0, 0, 10, 25 * 60)):
            ended_ago(job, minutes)
        self.env.cr.execute("SELECT date_trunc('minute', now() AT TIME ZONE 'UTC')")
        now = self.env.cr.fetchone()[0]
        Throughput = self.env["queue.job.throughput"]
        self.assertEqual(Throughput.search_count([]), 24 * 60 * 2, "every minute, both states")

        def counts(minute):
            rows = Throughput.search([("date_minute", "=", minute)])
            return {row.state: row.job_count for row in rows}

        # The jobs of other tests may have ended in the same minutes.
        this_minute = counts(now)
        self.assertGreaterEqual(this_minute["done"], 2)
        self.assertGreaterEqual(this_minute["failed"], 1)
        self.assertGreaterEqual(counts(now - datetime.timedelta(minutes=10))["done"], 1)
        earliest = Throughput.search([], order="date_minute", limit=1).date_minute
        self.assertEqual(earliest, now - datetime.timedelta(minutes=24 * 60 - 1))

        # Grouped by minute, the minutes are the user's.
        groups = Throughput.with_context(tz="Asia/Kolkata")._read_group(
            [("state", "=", "done"), ("date_minute", "=", now)], ["minute"], ["job_count:sum"]
        )
        local = now + datetime.timedelta(hours=5, minutes=30)
        self.assertEqual(groups, [(local.strftime("%Y-%m-%d %H:%M"), this_minute["done"])])


@tagged("post_install", "-at_install")
class TestJobGraphPicture(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.record = cls.env["test.queue.job"].create({"name": "graph picture"})

    def delay_group(self, size):
        members = [
            self.record.delayable(description=f"member {index}").record_call(str(index))
            for index in range(size)
        ]
        callback = self.record.delayable(description="callback").record_call("callback")
        group(*members).on_done(callback).delay()
        return self.env["queue.job"].browse(
            [member._generated_job.id for member in members]
        ), self.env["queue.job"].browse(callback._generated_job.id)

    def test_small_group_one_node_per_job(self):
        members, callback = self.delay_group(3)
        members[0]._set_done()
        members[1]._set_failed()
        picture = callback.get_job_graph()
        nodes = picture["nodes"]
        self.assertEqual(len(nodes), 4)
        by_job = {node["job_ids"][0]: index for index, node in enumerate(nodes)}
        self.assertEqual(
            picture["edges"], sorted([by_job[member.id], by_job[callback.id]] for member in members)
        )
        self.assertEqual(
            [nodes[by_job[job.id]]["states"] for job in (*members, callback)],
            [{"done": 1}, {"failed": 1}, {"pending": 1}, {"failed": 1}],
        )
        self.assertEqual(
            [node["job_ids"] for node in nodes if node["current"]], [callback.ids]
        )
        self.assertEqual(nodes[by_job[members[0].id]]["label"], "member 0")

    def test_large_group_collapses_into_one_node_with_counts(self):
        members, callback = self.delay_group(500)
        members[:7]._set_done()
        members[7:9]._set_failed()
        picture = callback.get_job_graph()
        self.assertEqual(len(picture["nodes"]), 2)
        current, collapsed = sorted(picture["nodes"], key=lambda node: not node["current"])
        self.assertEqual(current["job_ids"], callback.ids)
        self.assertEqual(sorted(collapsed["job_ids"]), sorted(members.ids))
        self.assertEqual(collapsed["states"], {"done": 7, "failed": 2, "pending": 491})
        self.assertEqual(collapsed["label"], "500 jobs")
        index = picture["nodes"].index
        self.assertEqual(picture["edges"], [[index(collapsed), index(current)]])

        # Seen from a member: the member alone, the 499 others, the callback.
        picture = members[20].get_job_graph()
        sizes = sorted(
            (len(node["job_ids"]), node["current"]) for node in picture["nodes"]
        )
        self.assertEqual(sizes, [(1, False), (1, True), (499, False)])
        self.assertEqual(len(picture["edges"]), 2)

    def test_only_the_jobs_the_user_may_read(self):
        user = new_test_user(self.env, login="graph_user", groups="base.group_user")
        members, callback = self.delay_group(3)
        self.env.cr.execute(
            "UPDATE queue_job SET user_id = %s WHERE id = ANY(%s)",
            (user.id, [members[0].id, callback.id]),
        )
        self.env.invalidate_all()
        picture = callback.with_user(user).get_job_graph()
        self.assertEqual(
            sorted(node["job_ids"][0] for node in picture["nodes"]),
            sorted([members[0].id, callback.id]),
        )
        self.assertEqual(len(picture["edges"]), 1)
        with self.assertRaises(AccessError):
            members[1].with_user(user).get_job_graph()

    def test_a_job_without_graph_is_alone(self):
        job = self.env["queue.job"].browse(self.record.with_delay().record_call("lone").id)
        self.assertEqual(
            job.get_job_graph(),
            {"nodes": [{"job_ids": job.ids, "label": job.name, "states": {"pending": 1},
                        "current": True}], "edges": []},
        )


@tagged("post_install", "-at_install")
class TestOverviewAndGraphTours(TourScreenshots, HttpCase):
    def setUp(self):
        super().setUp()
        admin = self.env.ref("base.user_admin")
        self.channel = self.env["queue.job.channel"].create(
            {"name": "qj_tour", "parent_id": self.env.ref("queue_job.channel_root").id}
        )
        record = self.env["test.queue.job"].with_user(admin).create({"name": "tour record"})
        delayables = [
            record.delayable(channel="root.qj_tour", description=f"QJ graph {name}").record_call(
                name
            )
            for name in ("member a", "member b", "member c", "callback")
        ]
        group(*delayables[:3]).on_done(delayables[3]).delay()
        self.members = self.env["queue.job"].browse(
            [delayable._generated_job.id for delayable in delayables[:3]]
        )
        self.callback = self.env["queue.job"].browse(delayables[3]._generated_job.id)
        lone = self.env["queue.job"].browse(
            record.with_delay(channel="root.qj_tour", description="QJ lone").record_call("x").id
        )
        self.failed = lone | self.members[2]

    def test_overview_failed_count_opens_the_failed_jobs(self):
        self.failed._set_failed()
        self.start_tour_with_screenshots(
            "queue_job_overview_failed_jobs", ["overview", "failed_jobs"],
            url="/odoo/queue-job-overview",
        )

    def test_graph_of_a_callback_colours_its_members(self):
        self.members[0]._set_done()
        self.members[1].write({"state": "started"})
        self.start_tour_with_screenshots(
            "queue_job_graph_picture", ["callback_graph", "member_form"],
            url=f"/odoo/queue-jobs/{self.callback.id}",
        )

    def test_jobs_per_minute_graph(self):
        self.failed._set_failed()
        self.members[0]._set_done()
        self.start_tour_with_screenshots(
            "queue_job_jobs_per_minute", ["jobs_per_minute"], url="/odoo/queue-job-throughput"
        )

    def test_graph_of_a_large_group_collapses_it(self):
        record = self.env["test.queue.job"].create({"name": "large group"})
        members = [record.delayable().record_call(str(index)) for index in range(500)]
        callback = record.delayable(description="QJ large callback").record_call("callback")
        group(*members).on_done(callback).delay()
        jobs = self.env["queue.job"].browse([member._generated_job.id for member in members])
        jobs[:40]._set_done()
        jobs[40:45]._set_failed()
        self.start_tour_with_screenshots(
            "queue_job_graph_picture_large_group", ["large_group_graph"],
            url=f"/odoo/queue-jobs/{callback._generated_job.id}",
        )
