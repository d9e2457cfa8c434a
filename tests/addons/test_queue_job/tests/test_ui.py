# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The Job Queue screens: buttons per state, and tours in a real browser."""

import base64
import logging
import os
import pathlib
from unittest.mock import patch

from lxml import etree

from odoo.tests import HttpCase, TransactionCase, tagged
from odoo.tests.common import ChromeBrowser, JsonRpcException
from odoo.tools import config
from odoo.tools.safe_eval import safe_eval

from odoo.addons.queue_job.delay import group
from odoo.addons.queue_job.job import STATES
from odoo.addons.queue_job.models.queue_job import (
    CANCEL_FROM,
    REQUEUE_FROM,
    RUN_NOW_FROM,
    SET_DONE_FROM,
    SET_FAILED_FROM,
)

_logger = logging.getLogger(__name__)

# Must match SCREENSHOT_MARK in static/tests/tours/queue_job_tours.js.
SCREENSHOT_MARK = "queue_job_screenshot:"


def screenshots_dir():
    """Where the tours' screenshots go: $QUEUE_JOB_SCREENSHOTS_DIR, else
    ``queue_job`` in Odoo's screenshots directory (--screenshots)."""
    return pathlib.Path(
        os.environ.get("QUEUE_JOB_SCREENSHOTS_DIR")
        or os.path.join(config["screenshots"], "queue_job")
    )


@tagged("post_install", "-at_install")
class TestJobFormButtons(TransactionCase):
    """Each form button shows exactly in the states its action acts on."""

    def button_states(self, name, pending_dependency_count=0):
        arch = etree.fromstring(self.env.ref("queue_job.view_queue_job_form").arch)
        (button,) = arch.xpath(f"//header/button[@name='{name}']")
        return {
            state
            for state, _label in STATES
            if not safe_eval(
                button.get("invisible", "False"),
                {"state": state, "pending_dependency_count": pending_dependency_count},
            )
        }

    def test_buttons_follow_the_actions_states(self):
        for name, states in (
            ("requeue", REQUEUE_FROM),
            ("button_done", SET_DONE_FROM),
            ("button_failed", SET_FAILED_FROM),
            ("button_cancelled", CANCEL_FROM),
            ("run_now", RUN_NOW_FROM),
        ):
            with self.subTest(button=name):
                self.assertEqual(self.button_states(name), set(states))

    def test_run_now_hidden_while_waiting_for_dependencies(self):
        self.assertEqual(self.button_states("run_now", pending_dependency_count=1), set())

    def test_same_graph_action_lists_the_whole_graph(self):
        record = self.env["test.queue.job"].create({"name": "graph"})
        members = [record.delayable().record_call(tag) for tag in ("a", "b", "cb")]
        group(*members[:2]).on_done(members[2]).delay()
        lone = self.env["queue.job"].browse(record.with_delay().record_call("lone").id)
        job = self.env["queue.job"].browse(members[0]._generated_job.id)
        self.assertEqual((job.graph_jobs_count, lone.graph_jobs_count), (3, 0))
        action = job.open_graph_jobs()
        graph_uuid = action["context"]["search_default_graph_uuid"]
        search_view = etree.fromstring(self.env.ref("queue_job.view_queue_job_search").arch)
        (field,) = search_view.xpath("//field[@name='graph_uuid']")
        domain = safe_eval(field.get("filter_domain"), {"self": graph_uuid})
        self.assertEqual(len(self.env["queue.job"].search(domain)), 3)


class TourScreenshots:
    """For HttpCase: tours whose screenshot steps the test run keeps."""

    def start_tour_with_screenshots(self, tour, expected, url="/odoo"):
        """Run ``tour`` from ``url``; save a PNG for each screenshot step, check
        ``expected`` were."""
        directory = screenshots_dir()
        directory.mkdir(parents=True, exist_ok=True)
        written = []

        def save(name, future):
            path = directory / f"{tour}_{name}.png"
            path.write_bytes(base64.b64decode(future.result()["data"]))
            written.append(name)

        handle_console = ChromeBrowser._handle_console

        def handle_console_with_screenshots(browser, type, args=None, **kwargs):  # noqa: A002
            value = str((args or [{}])[0].get("value", ""))
            if type == "log" and value.startswith(SCREENSHOT_MARK):
                name = value[len(SCREENSHOT_MARK):]
                future = browser._websocket_send("Page.captureScreenshot", with_future=True)
                future.add_done_callback(lambda done: save(name, done))
            return handle_console(browser, type, args=args, **kwargs)

        _logger.info("Screenshots of tour %s go to %s", tour, directory)
        with patch.object(ChromeBrowser, "_handle_console", handle_console_with_screenshots):
            self.start_tour(url, tour, login="admin")
        self.assertEqual(sorted(written), sorted(expected), "screenshots taken")


@tagged("post_install", "-at_install")
class TestJobQueueTours(TourScreenshots, HttpCase):
    """Open the Job Queue as a manager and act on a member of a group."""

    def setUp(self):
        super().setUp()
        admin = self.env.ref("base.user_admin")
        record = self.env["test.queue.job"].with_user(admin).create({"name": "tour record"})
        self.member_a, self.member_b, self.callback = (
            record.delayable(description=f"QJ tour {name}").record_call(name)
            for name in ("member a", "member b", "callback")
        )
        group(self.member_a, self.member_b).on_done(self.callback).delay()

    def job(self, delayable):
        job = self.env["queue.job"].browse(delayable._generated_job.id)
        job.invalidate_recordset()
        return job

    def test_set_done_on_failed_member_releases_callback(self):
        self.job(self.member_b)._set_done()
        self.job(self.member_a)._set_failed()
        self.assertEqual(self.job(self.callback).state, "failed", "the failure cascaded")
        self.start_tour_with_screenshots(
            "queue_job_set_done_releases_callback",
            ["failed_jobs_list", "failed_member_form", "member_set_done_form"],
        )
        self.assertEqual(self.job(self.member_a).state, "done")
        callback = self.job(self.callback)
        self.assertEqual(callback.state, "pending")
        self.assertEqual(callback.pending_dependency_count, 0)

    def test_set_failed_on_member_fails_callback(self):
        self.start_tour_with_screenshots(
            "queue_job_set_failed_fails_callback", ["member_set_failed_form"]
        )
        self.assertEqual(self.job(self.member_a).state, "failed")
        self.assertEqual(self.job(self.member_b).state, "pending", "the other member runs on")
        callback = self.job(self.callback)
        self.assertEqual(callback.state, "failed")
        self.assertEqual(callback.exc_name, "DependencyFailed")

    def test_list_action_wizard_skips_what_it_cannot_move(self):
        self.job(self.member_b)._set_done()
        self.start_tour_with_screenshots(
            "queue_job_list_action_wizard", ["wizard", "list_after_action"]
        )
        self.assertEqual(
            [self.job(d).state for d in (self.member_a, self.member_b, self.callback)],
            ["failed", "done", "failed"],
        )

    def test_rpc_writes_a_job_state_only_through_the_transitions(self):
        self.authenticate("admin", "admin")
        job = self.job(self.member_a)
        for method, args in (
            ("write", [[job.id], {"method_name": "unlink"}]),
            ("write", [[job.id], {"pending_dependency_count": 0}]),
            ("create", [{"uuid": "forged", "state": "pending"}]),
            ("_set_done", [[job.id]]),
        ):
            with self.subTest(method=method, args=args), self.assertRaises(JsonRpcException):
                self.make_jsonrpc_request(
                    f"/web/dataset/call_kw/queue.job/{method}",
                    {"model": "queue.job", "method": method, "args": args, "kwargs": {}},
                )
        self.assertEqual(self.job(self.member_a).state, "pending")
        # A manager's write of a state (OCA allows it) is a Set Done.
        self.make_jsonrpc_request(
            "/web/dataset/call_kw/queue.job/write",
            {"model": "queue.job", "method": "write",
             "args": [[job.id], {"state": "done"}], "kwargs": {}},
        )
        self.assertEqual(self.job(self.member_a).state, "done")
        callback = self.job(self.callback)
        self.assertEqual(callback.pending_dependency_count, 1, "member a released the callback")
