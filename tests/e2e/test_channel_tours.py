# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Channels changed in the browser, applied by the server's runner: tours in Chromium.

``dev/test`` runs these with the other end-to-end tests (``test_odoo_runner.py``
says how). The tours are test_queue_job's; their screenshots go to
``$QUEUE_JOB_SCREENSHOTS_DIR``, else ``queue_job_e2e_screenshots`` in the
temporary directory, and stay there.
"""

import os
import shutil
import signal
import tempfile
import time

import psycopg2
import pytest
from browser import Chromium
from odoo_process import PORT, OdooServer, odoo_shell

DB = os.environ.get("QUEUE_JOB_E2E_DB")
ADDONS = os.environ.get("QUEUE_JOB_E2E_ADDONS")
BASE_URL = f"http://127.0.0.1:{PORT}"
#: The path of Job Queue > Configuration > Channels (its action's).
CHANNELS = "/odoo/queue-job-channels"

pytestmark = [
    pytest.mark.skipif(not DB, reason="needs QUEUE_JOB_E2E_DB (run by dev/test)"),
    pytest.mark.skipif(not shutil.which("chromium"), reason="needs chromium"),
]


def sql(query, params=None):
    with psycopg2.connect(dbname=DB) as conn, conn.cursor() as cr:
        cr.execute(query, params)
        return cr.fetchall() if cr.description else None


def create_channels(**capacities):
    odoo_shell(
        "root = env.ref('queue_job.channel_root')\n"
        f"for name, capacity in {capacities!r}.items():\n"
        "    env['queue.job.channel'].create({'name': name, 'parent_id': root.id,"
        " 'capacity': capacity})\n"
        # No onboarding tour in the way of ours.
        "env.ref('base.user_admin').tour_enabled = False\n",
        DB, ADDONS,
    )


def delay(channel, method, count):
    """Delay ``count`` calls of ``method``, each on a record of its own (no write conflicts)."""
    odoo_shell(
        f"for _ in range({count}):\n"
        "    record = env['test.queue.job'].create({'name': 'tour'})\n"
        f"    record.with_delay(channel='root.{channel}').{method}\n",
        DB, ADDONS,
    )


def started(channel):
    return sql(
        "SELECT count(*) FROM queue_job WHERE channel = %s AND state = 'started'",
        (f"root.{channel}",),
    )[0][0]


def states(channel):
    return dict(
        sql(
            "SELECT state, count(*) FROM queue_job WHERE channel = %s GROUP BY 1",
            (f"root.{channel}",),
        )
    )


def wait_for(predicate, timeout, message):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


@pytest.fixture
def server(tmp_path):
    # root from the environment; the tours' channels from their records.
    server = OdooServer(tmp_path / "odoo.log", DB, ADDONS, {"ODOO_QUEUE_JOB_CHANNELS": "root:4"})
    server.start()
    yield server
    server.kill(signal.SIGKILL)  # its sleeping jobs are deleted below
    sql("DELETE FROM queue_job WHERE channel LIKE 'root.tour\\_%%'")
    sql("DELETE FROM queue_job_channel WHERE complete_name LIKE 'root.tour\\_%%'")


@pytest.fixture
def chromium(tmp_path):
    screenshots = os.environ.get("QUEUE_JOB_SCREENSHOTS_DIR") or os.path.join(
        tempfile.gettempdir(), "queue_job_e2e_screenshots"
    )
    browser = Chromium(tmp_path / "chromium", screenshots)
    yield browser
    browser.close()


def test_capacity_raised_from_1_to_3_in_the_form_starts_three_jobs_at_once(server, chromium):
    create_channels(tour_capacity=1)
    delay("tour_capacity", "sleep(60)", 5)
    wait_for(lambda: started("tour_capacity") == 1, 10, "the first job did not start")
    chromium.log_in(BASE_URL, "admin", "admin")
    assert chromium.run_tour(BASE_URL, CHANNELS, "queue_job_channel_capacity") == ["capacity_saved"]
    wait_for(lambda: started("tour_capacity") == 3, 2, "capacity 3 not applied")
    # The two new jobs started together, on the change's notification.
    [(spread,)] = sql(
        "SELECT EXTRACT(EPOCH FROM max(date_started) - min(date_started)) FROM ("
        " SELECT date_started FROM queue_job"
        " WHERE channel = 'root.tour_capacity' AND state = 'started'"
        " ORDER BY date_started DESC LIMIT 2) AS latest"
    )
    assert spread < 0.5
    assert chromium.run_tour(BASE_URL, CHANNELS, "queue_job_channel_running") == ["three_running"]
    assert started("tour_capacity") == 3, "no fourth"


def test_paused_channel_keeps_its_jobs_pending_while_another_runs(server, chromium):
    create_channels(tour_paused=2, tour_other=2)
    chromium.log_in(BASE_URL, "admin", "admin")
    assert chromium.run_tour(BASE_URL, CHANNELS, "queue_job_channel_pause") == ["paused_list"]
    delay("tour_paused", "increment(1)", 2)
    delay("tour_other", "increment(1)", 2)
    wait_for(lambda: states("tour_other") == {"done": 2}, 5, "the other channel did not run")
    time.sleep(1)
    assert states("tour_paused") == {"pending": 2}
    screenshots = chromium.run_tour(BASE_URL, CHANNELS, "queue_job_channel_resume")
    assert screenshots == ["paused_jobs_pending"]
    wait_for(lambda: states("tour_paused") == {"done": 2}, 2, "not resumed at once")
