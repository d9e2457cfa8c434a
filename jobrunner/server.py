# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The runner inside Odoo's server, when queue_job is loaded server-wide.

With ``--load=base,web,queue_job`` (``server_wide_modules``), the threaded
server runs the runner in a thread of its own process; the prefork server
(``--workers``) in a worker process dedicated to it, which it respawns if it
dies. Never with ``--stop-after-init`` (installs, updates, tests) nor in
``odoo shell``: these start the server with ``stop=True``.
"""

import logging
import resource
import select
import threading

from odoo.service import server
from odoo.tools import config

from .odoo_binding import make_runner
from .runner import CONFIGURATION_ERRORS, STOP_GRACE_PERIOD, log_configuration_error

_logger = logging.getLogger(__name__)


def install_server_hooks():
    """Make Odoo's servers start and stop the runner; the addon's post_load calls it.

    Does nothing when queue_job is loaded as one of a database's modules:
    only a server-wide load asks for a runner, and it happens before the
    server is created.
    """
    if "queue_job" not in config["server_wide_modules"]:
        return
    _hook_threaded_server()
    _hook_prefork_server()


class _RunnerThread(threading.Thread):
    """A runner in a thread of the current process."""

    def __init__(self, runner):
        super().__init__(name="queue_job jobrunner", daemon=True)
        self.runner = runner

    def run(self):
        try:
            self.runner.run()
        except CONFIGURATION_ERRORS as exc:
            log_configuration_error(exc)

    def stop(self, grace_period=STOP_GRACE_PERIOD):
        """Stop claiming; return when running jobs are over (or their grace
        period is: None waits for them)."""
        self.runner.stop(grace_period)
        self.join()


def _start_runner_thread():
    """Start the configured runner in a thread; None (said in the log) if misconfigured."""
    try:
        thread = _RunnerThread(make_runner())
    except CONFIGURATION_ERRORS as exc:
        log_configuration_error(exc)
        return None
    _logger.info("starting the queue_job jobrunner")
    thread.start()
    return thread


def _hook_threaded_server():
    original_start = server.ThreadedServer.start
    original_stop = server.ThreadedServer.stop

    def start(self, stop=False):
        original_start(self, stop=stop)
        running = not stop and not config["stop_after_init"]
        self.queue_job_runner = _start_runner_thread() if running else None

    def stop(self):
        # Before Odoo's own stop, which closes every database connection.
        if self.queue_job_runner:
            self.queue_job_runner.stop()
        original_stop(self)

    server.ThreadedServer.start = start
    server.ThreadedServer.stop = stop


class RunnerWorker(server.Worker):
    """The prefork server's worker process that runs the jobrunner.

    Odoo's limits, made for one request at a time, and what they do here:
    ``limit_time_real`` (the parent's watchdog) and ``limit_time_cpu`` do not
    apply, a job takes the time it takes; ``limit_request`` is never
    reached, there are no requests. ``limit_memory_soft`` (or a parent gone)
    makes the worker claim no more and end once its running jobs are over,
    however long they take; the server then starts a new one. A stop of the
    server (SIGINT) gives running jobs the runner's grace period.
    ``limit_memory_hard`` is the address space of the whole process, all
    executors together: a job that hits it fails with ``MemoryError``.
    """

    def __init__(self, multi):
        super().__init__(multi)
        self.watchdog_timeout = None  # a job takes the time it takes
        self.runner_started = False
        self.runner_thread = None
        # Asked to stop by the server (SIGINT), rather than ending at a limit.
        self.stopped_by_server = False

    def signal_handler(self, sig, frame):
        self.stopped_by_server = True
        super().signal_handler(sig, frame)

    def check_limits(self):
        super().check_limits()
        # limit_time_cpu is a budget per request; here jobs run for as long
        # as the process lives.
        _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))

    def sleep(self):
        # The worker loop sleeps before its first process_work(): start the
        # runner without waiting a beat (4 s).
        if not self.runner_started:
            return
        # Wake on signals only: there are no HTTP requests to accept.
        select.select([self.wakeup_fd_r], [], [], self.multi.beat)
        server.empty_pipe(self.wakeup_fd_r)

    def process_work(self):
        # Started here, in the work thread, which blocks the signals: the
        # runner's threads inherit that, and signals reach the main thread.
        if not self.runner_started:
            self.runner_started = True
            self.runner_thread = _start_runner_thread()

    def stop(self):
        if self.runner_thread:
            self.runner_thread.stop(STOP_GRACE_PERIOD if self.stopped_by_server else None)


def _hook_prefork_server():
    original_init = server.PreforkServer.__init__
    original_process_spawn = server.PreforkServer.process_spawn
    original_worker_pop = server.PreforkServer.worker_pop

    def __init__(self, app):
        original_init(self, app)
        self.queue_job_runner_workers = {}

    def process_spawn(self):
        original_process_spawn(self)
        if not self.queue_job_runner_workers:
            self.worker_spawn(RunnerWorker, self.queue_job_runner_workers)

    def worker_pop(self, pid):
        self.queue_job_runner_workers.pop(pid, None)
        original_worker_pop(self, pid)

    server.PreforkServer.__init__ = __init__
    server.PreforkServer.process_spawn = process_spawn
    server.PreforkServer.worker_pop = worker_pop
