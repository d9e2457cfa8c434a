# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The jobrunner: run the jobs of one or more databases in executor threads.

For each database it serves, a runner keeps

* one connection that listens on ``queue_job`` (the ``queue_job_notify``
  trigger notifies it when a job may have become runnable), on which it also
  rescues orphans (``claim.py``) and reads the next eta (or end of a
  throttle delay);
* as many executor threads as root's capacity in force (the setting's, or
  root's record), grown or shrunk when the channel records change. Once
  woken, an executor
  claims a job, runs it, releases it, and claims again until nothing is
  claimable; then it sleeps. Each executor keeps its connection (the
  binding's cursor) from one job to the next.

The thread that calls :meth:`Runner.run` is the dispatcher: it waits on every
LISTEN connection at once, until a notification or the nearest deadline
(next eta, next orphan rescue, next database discovery, next reconnection),
and then wakes *one* executor of the database concerned. An executor that
claims a job wakes one more, so a burst of jobs fans out over the executors
while a notification that brings no work costs one claim attempt per runner.

Channel capacities hold across runner processes because claims are
serialised in the database, not here: a runner may have more executors than
it gets slots. The claim reads the channel records itself; the runner reads
the channels in force (``claim.channels_in_force``) when it connects and
when they change (a notification ``channels``), to size its executors and
compute its wake-ups.

A job is stopped when it runs past its time limit (its own ``timeout``, its
job function's, else its channel's ``timeout=`` option), or when it is
cancelled while it runs (a ``stop`` notification; also checked at each
rescue). The dispatcher then terminates the server process of the job's
connection (its transaction is rolled back, whatever it does next on the
database fails), records a timeout as the job's outcome (``Binding.record_timeout``),
raises :class:`_JobStopped` in the job's thread, and starts another executor
in place of that thread, which is abandoned: it records nothing more and
claims no more; Python code cannot be killed, so a thread in a long C call
(``time.sleep``) ends only when that call returns. ``readme/DEVELOP.md``
says why threads and not a process per job.

Odoo is not imported here: a :class:`Binding` gives the runner its databases,
cursors, and the run of a job. ``odoo_binding.py`` is Odoo's; the pure
tests use one on plain psycopg2.

Over 400 lines: the dispatcher, its per-database state and the executors
share one set of deadlines and one shutdown, which split modules would
have to pass back and forth.
"""

import contextlib
import ctypes
import logging
import math
import select
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Protocol

import psycopg2

from ..core import claim, database_errors, isolation, schema
from ..core.channels import ChannelsConfigError
from ..core.schema import CHANNELS_PAYLOAD, ETA_PAYLOAD, NOTIFY_CHANNEL, STOP_PAYLOAD
from .databases import UnknownDatabaseError

_logger = logging.getLogger(__name__)

#: Seconds between two orphan rescues of a database: the recovery time of a
#: job whose worker died, counted from the moment PostgreSQL sees its session
#: end (at once for a killed process; for a vanished host, after the server's
#: TCP keepalive gives up).
RESCUE_INTERVAL = 5.0
#: Seconds between two looks for databases to serve (new ones, dropped ones).
DISCOVERY_INTERVAL = 30.0
#: Wait before retrying an unreachable server: doubles from the first value
#: up to the second.
RECONNECT_DELAY, RECONNECT_DELAY_MAX = 1.0, 10.0
#: Seconds that running jobs get to finish once the runner is asked to stop.
STOP_GRACE_PERIOD = 30.0

#: The runner cannot start as configured: say why in one line and exit.
CONFIGURATION_ERRORS = (ChannelsConfigError, UnknownDatabaseError)


class Binding(Protocol):
    """What a runner needs from its host."""

    def database_names(self):
        """Names of the databases to serve now (see ``databases.served_databases``)."""

    def connection_params(self, db_name):
        """Keyword arguments of ``psycopg2.connect()`` for the LISTEN connection."""

    def cursor(self, db_name):
        """A cursor on a connection of its own, that an executor keeps.

        It has ``rollback``, ``close``, and ``connection``: its psycopg2
        connection, on which the executor claims and unlocks jobs.
        """

    def run_job(self, db_name, cr, job):
        """Run ``job`` (the claimed row, a dict) on ``cr``, and commit its outcome.

        Raise only when the database connection fails.
        """

    def record_timeout(self, db_name, cr, job, seconds, stack):
        """Record that ``job`` (the claimed row) ran past its limit of ``seconds``.

        On ``cr``, in the transaction that took the job over (the caller
        commits), only if the job is still ``started``: failed with
        ``JobTimeout``, or retried per its retry pattern. ``stack`` is the
        job's Python stack when it was stopped, as text.
        """


class OutdatedSchemaError(Exception):
    """The database has queue_job's objects of another version; the message is one line."""


def _one_line(exc):
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class _Backoff:
    """Delays between attempts at something that keeps failing."""

    def __init__(self):
        self.failures = 0

    def next_delay(self):
        self.failures += 1
        return min(RECONNECT_DELAY * 2 ** min(self.failures - 1, 10), RECONNECT_DELAY_MAX)

    def reset(self):
        self.failures = 0


class _JobStopped(BaseException):
    """Raised in the thread of a stopped job: it ends, and records nothing.

    A BaseException, so that a job's ``except Exception`` does not swallow it.
    """


class _Executors:
    """The executor threads of one database, and the wake-ups owed to them.

    Executors are numbered from 0 to the size less one. Each has its
    session; a stopped job's session is abandoned with its thread, and a new
    executor takes its number (:meth:`replace`).
    """

    def __init__(self, db_name, size, new_session):
        self._db_name = db_name
        self._size = 0
        self._new_session = new_session
        self._wakeups = 0
        self._stopping = False
        self._condition = threading.Condition()
        self._sessions = {}  # number -> session of the executor that claims jobs
        self._ended = []  # threads that ended for a smaller size, to join
        self.resize(size)

    def resize(self, size):
        """Run ``size`` executors: start the missing ones; those numbered
        ``size`` or more end after the job they run."""
        with self._condition:
            self._size = size
            self._wakeups = min(self._wakeups, size)
            for number in range(size):
                if number not in self._sessions:
                    self._start_executor(number)
            self._condition.notify_all()

    @property
    def size(self):
        return self._size

    def _start_executor(self, number):
        session = self._new_session()
        session.thread = threading.Thread(
            target=self._loop,
            args=(number, session),
            name=f"queue_job {self._db_name} executor {number}",
            daemon=True,
        )
        self._sessions[number] = session
        session.thread.start()

    def replace(self, session):
        """Start an executor in place of ``session``'s, whose thread is abandoned."""
        with self._condition:
            for number, running in list(self._sessions.items()):
                if running is session:
                    del self._sessions[number]
                    if not self._stopping and number < self._size:
                        self._start_executor(number)
        self.wake()  # a slot is free

    def sessions(self):
        """The sessions of the executors that claim jobs."""
        with self._condition:
            return list(self._sessions.values())

    def wake(self):
        """Have one more executor look for a job: an idle one, or the next to be idle.

        A wake-up is kept until an executor takes it, so that one arriving
        while every executor is busy is not lost.
        """
        with self._condition:
            if self._wakeups < self._size:
                self._wakeups += 1
                self._condition.notify()

    def stop(self):
        """Claim no more; each executor ends after the job it runs."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()

    def join(self, deadline):
        """Wait for the executors until ``deadline`` (monotonic, or ``math.inf``:
        until they end); return how many still run.

        Abandoned threads are not waited for: their jobs are over.
        """
        with self._condition:
            threads = [*(session.thread for session in self._sessions.values()), *self._ended]
        for thread in threads:
            thread.join(None if deadline == math.inf else max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in threads)

    def _may_claim(self, number, session):
        """Whether executor ``number`` (the calling thread, with ``session``)
        goes on; called under the lock.

        One numbered ``size`` or more leaves the count (a new one may take
        its number later); an abandoned one has left it already.
        """
        if self._stopping or self._sessions.get(number) is not session:
            return False
        if number < self._size:
            return True
        self._ended.append(self._sessions.pop(number).thread)
        return False

    def _next_wakeup(self, number, session):
        with self._condition:
            while self._may_claim(number, session):
                if self._wakeups:
                    self._wakeups -= 1
                    return True
                self._condition.wait()
            return False

    def _still_claiming(self, number, session):
        with self._condition:
            return self._may_claim(number, session)

    def _loop(self, number, session):
        try:
            while self._next_wakeup(number, session):
                try:
                    while self._still_claiming(number, session) and session.run_one():
                        pass
                except Exception as exc:
                    if database_errors.connection_lost(exc):
                        # The dispatcher reconnects and wakes us; rescue requeues the job.
                        _logger.warning(
                            "database %s: executor lost its connection: %s",
                            self._db_name,
                            _one_line(exc),
                        )
                    else:
                        _logger.exception("database %s: executor error", self._db_name)
                    session.close()
        except _JobStopped:
            _logger.warning(
                "database %s: the abandoned thread of stopped job %s ended",
                self._db_name,
                session.stopped_job_id,
            )
        finally:
            session.close()


class _Session:
    """The connection of one executor, opened when first needed and kept between jobs.

    Claims and unlocks run on it in autocommit, each a transaction of its
    own without a BEGIN and a COMMIT round trip; jobs run on it in
    transactions. It holds the liveness lock of the job it runs, which the
    death of the process (or of the connection) releases.
    """

    def __init__(self, database):
        self._database = database
        self._cr = None  # the binding's cursor
        self.thread = None  # the executor's, set by _Executors
        self.pid = None  # of the server process of the connection
        # What the dispatcher reads and the executor writes, under _guard:
        self.job = None  # the claimed row of the job it runs
        self.deadline = math.inf  # monotonic time the job must end by
        self.timeout = None  # its time limit, in seconds
        self.stopped_job_id = None  # set once the dispatcher stops the job
        self._guard = threading.Lock()

    def run_one(self):
        """Claim a job and run it; False when nothing was claimable."""
        database = self._database
        try:
            job = self._claim()
        except psycopg2.Error as exc:
            if not database_errors.connection_lost(exc):
                raise
            # A kept connection dies with the server (a restart, say) while
            # the executor sleeps, and fails at its first use: claim on a new one.
            self.close()
            job = self._claim()
        if job is None:
            return False
        self._begin(job)
        database.executors.wake()  # more may be claimable: let a peer look
        try:
            database.binding.run_job(database.name, self._cr, job)
        finally:
            self._end()
            # Its outcome committed, the job is no longer the rescue's
            # business; if run_job raised, it stays started and unlocked,
            # and the rescue requeues it. (A connection given back to a pool
            # would keep the lock until the pool lends it again.)
            self._cr.rollback()
            with _autocommit_cursor(self._cr) as cr:
                if not claim.drop_liveness_lock(cr, job["id"]):
                    _logger.warning(
                        "database %s: job %s had lost its liveness lock", database.name, job["id"]
                    )
        return True

    def _claim(self):
        database = self._database
        if self._cr is None:
            self._cr = database.binding.cursor(database.name)
            with _autocommit_cursor(self._cr) as cr:
                # Claims must be READ COMMITTED (see queue_job_claim in
                # core/schema.py); the jobs' transactions say their own level.
                isolation.read_committed_session(cr)
                self.pid = claim.backend_pid(cr)
        with _autocommit_cursor(self._cr) as cr:
            return claim.claim_job(cr, database.configured)

    def _begin(self, job):
        database = self._database
        timeout = job.get("timeout") or database.channels.timeout_of(job["channel"])
        with self._guard:
            self.job = job
            self.timeout = timeout
            self.deadline = time.monotonic() + timeout if timeout else math.inf
        if timeout and timeout < RESCUE_INTERVAL:
            # The dispatcher's wait may end after this deadline: have it
            # recompute (it wakes at least every RESCUE_INTERVAL).
            database.wake_dispatcher()

    def _end(self):
        with self._guard:
            self.job, self.timeout, self.deadline = None, None, math.inf
            if self.stopped_job_id is not None:
                raise _JobStopped

    # -- dispatcher side -------------------------------------------------

    def abandon(self, job_id):
        """Take the run of ``job_id`` from this executor, if it still runs it.

        Its thread will record nothing more and claim no more. Return the
        job's Python stack (text), or None if the job had ended.
        """
        with self._guard:
            if self.job is None or self.job["id"] != job_id or self.stopped_job_id is not None:
                return None
            self.stopped_job_id = job_id
            frame = sys._current_frames().get(self.thread.ident)
            return "".join(traceback.format_stack(frame)) if frame else ""

    def interrupt(self):
        """Raise :class:`_JobStopped` in the abandoned thread, if its job still runs.

        It lands between two bytecodes: a thread in a C call (a sleep, say)
        gets it when the call returns.
        """
        with self._guard:
            if self.job is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self.thread.ident), ctypes.py_object(_JobStopped)
                )

    def close(self):
        if self._cr is not None:
            cr, self._cr = self._cr, None
            with contextlib.suppress(psycopg2.Error):
                cr.close()


@contextlib.contextmanager
def _autocommit_cursor(cr):
    """A plain psycopg2 cursor on the connection of ``cr``, in autocommit.

    Autocommit is only set on the client: psycopg2 then sends no BEGIN and no
    COMMIT. Plain, because this is the runner's SQL, not the ORM's: Odoo's
    cursor would log as an error the claim that finds a connection dead.
    """
    connection = cr.connection
    connection.autocommit = True
    try:
        with connection.cursor() as plain:
            yield plain
    finally:
        connection.autocommit = False


class _DatabaseDispatcher:
    """What the dispatcher keeps of one database it serves: its LISTEN
    connection, its deadlines, its executors."""

    def __init__(self, name, binding, channels, wake_dispatcher):
        self.name = name
        self.binding = binding
        #: The runner's channels setting, which the claim merges with the records.
        self.configured = channels
        #: The channels in force, as last read.
        self.channels = channels
        #: Have the dispatcher compute its deadlines again (from any thread).
        self.wake_dispatcher = wake_dispatcher
        self._connection = None
        self._backoff = _Backoff()
        self._reconnect_at = 0.0
        self._rescue_at = 0.0
        self._released_after = 0  # where the next release of orphaned edges starts
        self._eta_at = math.inf
        self.executors = _Executors(name, channels.root_capacity, lambda: _Session(self))

    # -- dispatcher side -------------------------------------------------

    @property
    def listening(self):
        return self._connection is not None

    def fileno(self):
        return self._connection.fileno()

    def deadline(self):
        """When :meth:`serve` has something to do, if no notification comes first."""
        if self._connection is None:
            return self._reconnect_at
        if self._connection.notifies:  # received while a query ran
            return 0.0
        return min(self._rescue_at, self._eta_at, self._job_deadline())

    def _job_deadline(self):
        return min((session.deadline for session in self.executors.sessions()), default=math.inf)

    def serve(self, now, readable):
        """Do what is due: reconnect, take notifications, rescue, wake an executor."""
        try:
            if self._connection is None:
                if now < self._reconnect_at:
                    return
                self._connect(now)
            if readable:
                self._connection.poll()
            notifies = self._connection.notifies
            # The next eta (or end of a throttle delay) is read again when it
            # is reached, when a job with a future eta was notified (or a
            # throttled channel started a job), and after each rescue.
            eta_changed = now >= self._eta_at or any(n.payload == ETA_PAYLOAD for n in notifies)
            due = bool(notifies) or now >= min(self._rescue_at, self._eta_at)
            cancelled = any(n.payload == STOP_PAYLOAD for n in notifies)
            if any(n.payload == CHANNELS_PAYLOAD for n in notifies):
                self._read_channels()
                eta_changed = True
            notifies.clear()
            if now >= self._job_deadline():
                self._stop_overdue_jobs(now)
            if now >= self._rescue_at:
                self._rescue()
                self._rescue_at = now + RESCUE_INTERVAL
                eta_changed = cancelled = True  # a stop notification may have been missed
            if cancelled:
                self._stop_cancelled_jobs()
            if due:
                self.executors.wake()
            if eta_changed:
                self._eta_at = self._next_eta()
        except Exception as exc:  # noqa: BLE001 - one database must not stop the others
            self._disconnect(now, exc)
            return
        if self._backoff.failures:
            _logger.info("database %s: connected again", self.name)
            self._backoff.reset()

    def _connect(self, now):
        connection = psycopg2.connect(**self.binding.connection_params(self.name))
        try:
            with connection.cursor() as cr:
                if not schema.is_current(cr):
                    raise OutdatedSchemaError(
                        "queue_job's database objects are not those of this version:"
                        f" update the module (odoo -u queue_job -d {self.name})"
                    )
                cr.execute(f"LISTEN {NOTIFY_CHANNEL}")
            connection.commit()
        except Exception:
            connection.close()
            raise
        self._connection = connection
        self._read_channels(connecting=True)
        # Jobs may have been orphaned while we were away (or before we started).
        self._rescue_at = now

    def _disconnect(self, now, exc):
        was_listening = self._connection is not None
        if was_listening:
            self._connection.close()
            self._connection = None
        self._eta_at = math.inf
        self._reconnect_at = now + self._backoff.next_delay()
        if self._backoff.failures > 1:
            return  # said once, at the first failure
        if isinstance(exc, OutdatedSchemaError):
            _logger.warning("database %s: %s; waiting for it", self.name, exc)
        elif database_errors.connection_lost(exc):
            _logger.warning(
                "database %s: %s: %s; retrying until it is back",
                self.name,
                "lost the connection" if was_listening else "cannot connect",
                _one_line(exc),
            )
        else:
            _logger.exception("database %s: unexpected error; retrying", self.name)

    def _read_channels(self, connecting=False):
        """Read the channels in force; size the executors on root's capacity."""
        with self._connection.cursor() as cr:
            channels = claim.channels_in_force(cr, self.configured)
        self._connection.commit()
        if connecting or str(channels) != str(self.channels):
            _logger.info(
                "database %s: channels in force: %s: up to %d connections"
                " (%d executors, 1 to listen)",
                self.name,
                channels,
                channels.root_capacity + 1,
                channels.root_capacity,
            )
        self.channels = channels
        self.executors.resize(channels.root_capacity)

    def _rescue(self):
        with self._connection.cursor() as cr:
            requeued, failed = claim.rescue_orphans(cr)
        self._connection.commit()
        with self._connection.cursor() as cr:
            self._released_after = claim.release_orphaned_edges(cr, self._released_after)
        self._connection.commit()
        if requeued:
            _logger.warning(
                "database %s: requeued job(s) %s, whose worker died", self.name, requeued
            )
        if failed:
            _logger.warning(
                "database %s: failed job(s) %s, whose worker died on their last try",
                self.name,
                failed,
            )

    def _stop_overdue_jobs(self, now):
        for session in self.executors.sessions():
            job, timeout = session.job, session.timeout
            if job is not None and now >= session.deadline:
                self._stop(session, job, f"it ran past its time limit of {timeout:g} s", timeout)

    def _stop_cancelled_jobs(self):
        running = {}  # job id -> (session, job)
        for session in self.executors.sessions():
            job = session.job
            if job is not None:
                running[job["id"]] = (session, job)
        if not running:
            return
        with self._connection.cursor() as cr:
            cancelled = claim.cancelled_among(cr, list(running))
        self._connection.commit()
        for job_id in cancelled:
            self._stop(*running[job_id], "it was cancelled")

    def _stop(self, session, job, why, timeout=None):
        """Stop ``job``, which ``session`` runs: terminate its connection, record
        a timeout, interrupt and replace its thread (see the module's docstring)."""
        stack = session.abandon(job["id"])
        if stack is None:
            return  # it ended meanwhile
        _logger.warning(
            "database %s: stopping job %s (%s): %s; its thread is abandoned",
            self.name,
            job["id"],
            job["uuid"],
            why,
        )
        try:
            self._take_over(session.pid, job, timeout, stack)
        except Exception:  # noqa: BLE001 - the rescue requeues a job left started
            _logger.exception("database %s: could not stop job %s cleanly", self.name, job["id"])
        finally:
            session.interrupt()
            self.executors.replace(session)

    def _take_over(self, pid, job, timeout, stack):
        """End server process ``pid``, which runs ``job``, and record its timeout
        (if ``timeout``), on a connection of the dispatcher's own."""
        cr = self.binding.cursor(self.name)
        try:
            claim.take_over(cr, job["id"], pid)
            if timeout is not None:
                self.binding.record_timeout(self.name, cr, job, timeout, stack)
            cr.commit()
        finally:
            with contextlib.closing(cr):
                cr.rollback()
                with _autocommit_cursor(cr) as plain:
                    claim.drop_liveness_lock(plain, job["id"])

    def _next_eta(self):
        with self._connection.cursor() as cr:
            seconds = claim.seconds_until_next_eta(cr, self.channels)
        self._connection.commit()
        # Counted from the answer, not from before the query: a claim a hair
        # early finds the job not yet due while the next read finds its eta
        # past, and nothing would wake us until the next rescue.
        return math.inf if seconds is None else time.monotonic() + seconds

    def stop(self):
        """Claim no more and stop listening; running jobs go on."""
        self.executors.stop()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def join(self, deadline):
        """Wait for running jobs until ``deadline``; return how many still run."""
        return self.executors.join(deadline)


class Runner:
    """Serve the job queues of the databases that ``binding`` names, with ``channels``."""

    def __init__(self, binding, channels):
        self._binding = binding
        self._channels = channels
        self._databases = {}  # name -> _DatabaseDispatcher, served now
        self._retired = []  # _DatabaseDispatcher no longer served, whose last jobs may run
        self._discover_at = 0.0
        self._discovery_backoff = _Backoff()
        self._discovered = False
        self._stop_requested = threading.Event()
        self._grace_period = STOP_GRACE_PERIOD
        # stop() may come from a signal handler or another thread while the
        # dispatcher waits: it writes to this pair to interrupt the wait.
        self._wakeup_receiver, self._wakeup_sender = socket.socketpair()
        for end in (self._wakeup_receiver, self._wakeup_sender):
            end.setblocking(False)

    def stop(self, grace_period=STOP_GRACE_PERIOD):
        """Ask :meth:`run` to return; safe from a signal handler and from any thread.

        It claims no more, then gives running jobs ``grace_period`` seconds
        to finish; None waits for them to finish, however long they take.
        """
        self._grace_period = math.inf if grace_period is None else grace_period
        self._stop_requested.set()
        self._wake()

    def _wake(self):
        """Interrupt the dispatcher's wait; safe from a signal handler and from any thread."""
        # OSError: a wake-up is already pending, or run() has returned.
        with contextlib.suppress(OSError):
            self._wakeup_sender.send(b"\0")

    def run(self):
        """Serve until :meth:`stop`, then give running jobs its grace period to finish.

        Wait for an unreachable server rather than fail. Raise
        UnknownDatabaseError if a configured database does not exist when
        the runner starts.
        """
        try:
            while not self._stop_requested.is_set():
                now = time.monotonic()
                if now >= self._discover_at:
                    self._discover(now)
                readable = self._wait()
                now = time.monotonic()
                for database in list(self._databases.values()):
                    database.serve(now, database in readable)
            if self._grace_period == math.inf:
                _logger.info("stopping: claiming no more, running jobs finish first")
            else:
                _logger.info(
                    "stopping: running jobs get up to %ss to finish", self._grace_period
                )
        finally:
            self._shut_down()

    def _wait(self):
        """Wait for stop(), a notification or the next deadline; return the databases with data."""
        deadline = min(
            [self._discover_at, *(database.deadline() for database in self._databases.values())]
        )
        poller = select.poll()
        poller.register(self._wakeup_receiver, select.POLLIN)
        by_fd = {}
        for database in self._databases.values():
            if database.listening:
                by_fd[database.fileno()] = database
                poller.register(database.fileno(), select.POLLIN)
        # Rounded up: waking a hair early would find nothing due and spin.
        timeout_ms = math.ceil(max(0.0, deadline - time.monotonic()) * 1000)
        events = poller.poll(timeout_ms)
        if any(fd == self._wakeup_receiver.fileno() for fd, _ in events):
            self._wakeup_receiver.recv(64)
        return {by_fd[fd] for fd, _ in events if fd in by_fd}

    def _discover(self, now):
        try:
            names = self._binding.database_names()
        except UnknownDatabaseError as exc:
            if not self._discovered:
                raise
            _logger.warning("%s; serving the other databases", exc)
            self._discover_at = now + DISCOVERY_INTERVAL
            return
        except psycopg2.Error as exc:  # the server is down, or one database is unreadable
            self._discover_at = now + self._discovery_backoff.next_delay()
            if self._discovery_backoff.failures == 1:
                _logger.warning(
                    "cannot list the databases to serve (%s); trying again", _one_line(exc)
                )
            return
        self._discovery_backoff.reset()
        self._discover_at = now + DISCOVERY_INTERVAL
        if not names and not self._discovered:
            _logger.info(
                "no database has queue_job installed yet; looking again every %ss",
                DISCOVERY_INTERVAL,
            )
        self._discovered = True
        for name in names:
            if name not in self._databases:
                _logger.info("serving database %s with channels %s", name, self._channels)
                self._databases[name] = _DatabaseDispatcher(
                    name, self._binding, self._channels, self._wake
                )
        for name in set(self._databases) - set(names):
            _logger.info("database %s: no longer served", name)
            database = self._databases.pop(name)
            database.stop()
            self._retired.append(database)
        self._retired = [database for database in self._retired if database.join(now)]

    def _shut_down(self):
        databases = [*self._databases.values(), *self._retired]
        for database in databases:
            database.stop()
        deadline = time.monotonic() + self._grace_period
        still_running = sum(database.join(deadline) for database in databases)
        if still_running:
            _logger.warning(
                "%d job(s) still running after %ss: leaving them to be requeued "
                "by another runner, or by this one when it starts again",
                still_running,
                self._grace_period,
            )
        self._wakeup_receiver.close()
        self._wakeup_sender.close()


def run_until_signalled(make_runner):
    """Host a runner in this process's main thread until SIGTERM or SIGINT.

    ``make_runner()`` builds the runner. Return the exit status: 0 after a
    stop, 2 (after logging why, in one line) on a configuration error.
    """
    try:
        runner = make_runner()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda _signum, _frame: runner.stop())
        runner.run()
    except CONFIGURATION_ERRORS as exc:
        log_configuration_error(exc)
        return 2
    return 0


def log_configuration_error(exc):
    """Say, in one line, why the runner does not run."""
    _logger.error("queue_job jobrunner not started: %s", exc)
