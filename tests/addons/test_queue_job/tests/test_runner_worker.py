# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The prefork server's runner worker under Odoo's limits."""

import os
import resource
import signal
from unittest.mock import Mock, patch

from odoo.tests import TransactionCase, tagged
from odoo.tools import config

from odoo.addons.queue_job.jobrunner.runner import STOP_GRACE_PERIOD
from odoo.addons.queue_job.jobrunner.server import RunnerWorker


class _PreforkServer:
    """What a worker reads of the prefork server that spawns it."""

    timeout = 120  # limit_time_real
    limit_request = 10
    beat = 4

    def pipe_new(self):
        return os.pipe()


@tagged("post_install", "-at_install")
class TestRunnerWorker(TransactionCase):
    def worker(self):
        worker = RunnerWorker(_PreforkServer())
        self.addCleanup(worker.close)
        # As in the forked worker: this process is its own, its parent the server.
        worker.pid, worker.ppid = os.getpid(), os.getppid()
        worker.runner_thread = Mock()
        return worker

    def check_limits(self, worker, **limits):
        """Run the worker's check of ``limits`` (Odoo's settings); leave this
        process's own limits as they were."""
        rlimits = {
            rlimit: resource.getrlimit(rlimit) for rlimit in (resource.RLIMIT_CPU, resource.RLIMIT_AS)
        }
        try:
            with patch.dict(config._runtime_options, {"limit_memory_hard": 0, **limits}):
                worker.check_limits()
        finally:
            for rlimit, value in rlimits.items():
                resource.setrlimit(rlimit, value)

    def test_no_watchdog_and_no_request_limit(self):
        worker = self.worker()
        self.assertIsNone(worker.watchdog_timeout, "limit_time_real does not apply")
        self.check_limits(worker, limit_memory_soft=0)
        self.assertTrue(worker.alive)

    def test_the_soft_memory_limit_lets_running_jobs_finish(self):
        worker = self.worker()
        self.check_limits(worker, limit_memory_soft=1)
        self.assertFalse(worker.alive, "the worker ends")
        worker.stop()
        worker.runner_thread.stop.assert_called_once_with(None)

    def test_a_server_stop_gives_running_jobs_the_grace_period(self):
        worker = self.worker()
        self.check_limits(worker, limit_memory_soft=0)
        worker.signal_handler(signal.SIGINT, None)
        worker.stop()
        worker.runner_thread.stop.assert_called_once_with(STOP_GRACE_PERIOD)
