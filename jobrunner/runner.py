# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The jobrunner: run the jobs of one or more databases in executor threads.

For each database it serves, a runner keeps

* one connection that listens on ``queue_job`` (the ``queue_job_notify``
  trigger notifies it when a job may have become runnable), on which it also
  rescues orphans (``claim.py``) and reads the next eta (or end of a
  throttle delay);
* as many executor threads as root's capacity. Once woken, an executor
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
it gets slots.

Odoo is not imported here: a :class:`Binding` gives the runner its databases,
cursors, and the run of a job. ``odoo_binding.py`` is Odoo's; the pure
tests use one on plain psycopg2.

Over 400 lines: the dispatcher, its per-database state and the executors
share one set of deadlines and one shutdown, which split modules would
have to pass back and forth.
"""

import contextlib
import logging
import math
import select
import signal
import socket
import threading
import time
from typing import Protocol

import psycopg2

from ..core import claim, isolation, schema
from ..core.channels import ChannelsConfigError
from ..core.schema import ETA_PAYLOAD, NOTIFY_CHANNEL
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

#: The database connection is unusable: reconnect, without a traceback.
CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)
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


class _Executors:
    """The executor threads of one database, and the wake-ups owed to them."""

    def __init__(self, db_name, size, new_session):
        self._db_name = db_name
        self._size = size
        self._new_session = new_session
        self._wakeups = 0
        self._stopping = False
        self._condition = threading.Condition()
        self._threads = [
            threading.Thread(
                target=self._loop, name=f"queue_job {db_name} executor {number}", daemon=True
            )
            for number in range(size)
        ]
        for thread in self._threads:
            thread.start()

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
        """Wait for the executors until ``deadline`` (monotonic); return how many still run."""
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in self._threads)

    def _next_wakeup(self):
        with self._condition:
            while not self._wakeups and not self._stopping:
                self._condition.wait()
            if self._stopping:
                return False
            self._wakeups -= 1
            return True

    def _loop(self):
        session = self._new_session()
        try:
            while self._next_wakeup():
                try:
                    while not self._stopping and session.run_one():
                        pass
                except CONNECTION_ERRORS as exc:
                    # The dispatcher reconnects and wakes us; rescue requeues the job.
                    _logger.warning(
                        "database %s: executor lost its connection: %s",
                        self._db_name,
                        _one_line(exc),
                    )
                    session.close()
                except Exception:
                    _logger.exception("database %s: executor error", self._db_name)
                    session.close()
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

    def run_one(self):
        """Claim a job and run it; False when nothing was claimable."""
        database = self._database
        try:
            job = self._claim()
        except CONNECTION_ERRORS:
            # A kept connection dies with the server (a restart, say) while
            # the executor sleeps, and fails at its first use: claim on a new one.
            self.close()
            job = self._claim()
        if job is None:
            return False
        database.executors.wake()  # more may be claimable: let a peer look
        try:
            database.binding.run_job(database.name, self._cr, job)
        finally:
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
        with _autocommit_cursor(self._cr) as cr:
            return claim.claim_job(cr, database.channels)

    def close(self):
        if self._cr is not None:
            cr, self._cr = self._cr, None
            with contextlib.suppress(*CONNECTION_ERRORS):
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

    def __init__(self, name, binding, channels):
        self.name = name
        self.binding = binding
        self.channels = channels
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
        return min(self._rescue_at, self._eta_at)

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
            notifies.clear()
            if now >= self._rescue_at:
                self._rescue()
                self._rescue_at = now + RESCUE_INTERVAL
                eta_changed = True
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
        elif isinstance(exc, CONNECTION_ERRORS):
            _logger.warning(
                "database %s: %s: %s; retrying until it is back",
                self.name,
                "lost the connection" if was_listening else "cannot connect",
                _one_line(exc),
            )
        else:
            _logger.exception("database %s: unexpected error; retrying", self.name)

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
        # stop() may come from a signal handler or another thread while the
        # dispatcher waits: it writes to this pair to interrupt the wait.
        self._wakeup_receiver, self._wakeup_sender = socket.socketpair()
        for end in (self._wakeup_receiver, self._wakeup_sender):
            end.setblocking(False)

    def stop(self):
        """Ask :meth:`run` to return; safe from a signal handler and from any thread."""
        self._stop_requested.set()
        # OSError: a wake-up is already pending, or run() has returned.
        with contextlib.suppress(OSError):
            self._wakeup_sender.send(b"\0")

    def run(self):
        """Serve until :meth:`stop`, then give running jobs STOP_GRACE_PERIOD to finish.

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
            _logger.info("stopping: running jobs get up to %ss to finish", STOP_GRACE_PERIOD)
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
                _logger.info(
                    "serving database %s with channels %s", name, self._channels
                )
                self._databases[name] = _DatabaseDispatcher(name, self._binding, self._channels)
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
        deadline = time.monotonic() + STOP_GRACE_PERIOD
        still_running = sum(database.join(deadline) for database in databases)
        if still_running:
            _logger.warning(
                "%d job(s) still running after %ss: leaving them to be requeued "
                "by another runner, or by this one when it starts again",
                still_running,
                STOP_GRACE_PERIOD,
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
