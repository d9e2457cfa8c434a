# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The benchmark's databases and Odoo processes, for one queue_job implementation each.

Every database is named ``bench_<pid>_<label>_<purpose>`` (two runs at the
same time do not drop each other's databases) and copied from a
template where the addon is installed once (``CREATE DATABASE ... TEMPLATE``
takes a second; an install takes twenty). Every process is started in a
session of its own, so that stopping it stops its workers too.
"""

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import timezone

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_ADDONS = os.path.join(HERE, "addons")
IN_ODOO = os.path.join(HERE, "in_odoo.py")
ODOO_SERVER = os.path.join(HERE, "odoo_server.py")
PYTHON = sys.executable  # Odoo's python: bench/run starts this module with it

CHANNELS = "root:4"
HTTP_WORKERS = 4  # one HTTP worker per slot of root: OCA runs each job in an HTTP request
PORT_RANGE = range(8380, 8400)
STOP_TIMEOUT = 40  # seconds a server gets to stop on SIGTERM before SIGKILL
SETUP_TIMEOUT = 600  # seconds for an install or an in_odoo command

_running_servers = []


@functools.cache
def log_dir():
    """Where the servers and installs write their logs (kept after the run, for a look)."""
    return tempfile.mkdtemp(prefix="bench_queue_job_logs.")


def epoch(naive_utc):
    """Seconds since the epoch of a naive UTC datetime, as Odoo stores them."""
    return naive_utc.replace(tzinfo=timezone.utc).timestamp()


def _connect(db):
    # Autocommit: each poll must see what the server committed since the last one.
    connection = psycopg2.connect(dbname=db)
    connection.autocommit = True
    return closing(connection)


def query(db, sql, params=None):
    with _connect(db) as connection, connection.cursor() as cr:
        cr.execute(sql, params)
        return cr.fetchall()


def execute(db, sql, params=None):
    with _connect(db) as connection, connection.cursor() as cr:
        cr.execute(sql, params)


def connection(db):
    """An autocommit connection to ``db``, closed on leaving the ``with`` block."""
    return _connect(db)


def wait_until(db, sql, params, timeout, interval=0.05):
    """Poll ``sql`` (one row: done, failed) until done; False on a failure or after ``timeout``."""
    deadline = time.monotonic() + timeout
    with _connect(db) as connection, connection.cursor() as cr:
        while time.monotonic() < deadline:
            cr.execute(sql, params)
            done, failed = cr.fetchone()
            if done:
                return True
            if failed:
                return False
            time.sleep(interval)
    return False


def _cpu_seconds_of(pid):
    """User + system CPU seconds of process ``pid``, and its session id."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces: fields are counted after its ')'.
        fields = stat.read().rsplit(")", 1)[1].split()
    session, utime, stime = int(fields[3]), int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK"), session


def cpu_seconds(cr, session):
    """CPU seconds used so far by the processes of ``session`` (Odoo's) and by the
    PostgreSQL backends of ``cr``'s database (but ``cr``'s own): (odoo, postgresql).

    Reads /proc: the backends must run on this machine.
    """
    cr.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )
    backends = {pid for (pid,) in cr.fetchall()}
    odoo = postgresql = 0.0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            seconds, process_session = _cpu_seconds_of(name)
        except (OSError, IndexError):
            continue  # gone meanwhile
        if process_session == session:
            odoo += seconds
        elif int(name) in backends:
            postgresql += seconds
    return odoo, postgresql


def free_ports(count):
    """``count`` consecutive free TCP ports of PORT_RANGE (HTTP, then gevent)."""
    for first in PORT_RANGE[: len(PORT_RANGE) - count + 1]:
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return list(range(first, first + count))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} free consecutive ports in {PORT_RANGE}")


def _stop_process_group(process):
    """SIGTERM the session of ``process``, then SIGKILL what is left of it."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_TIMEOUT)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # workers that outlived their master
    except ProcessLookupError:
        pass
    process.wait()


def stop_all_servers():
    while _running_servers:
        _stop_process_group(_running_servers.pop())


class _Server:
    def __init__(self, command, env, log_path):
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _running_servers.append(self.process)

    @property
    def pid(self):
        """The server's pid, which is also its session id."""
        return self.process.pid

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        if self.process in _running_servers:
            _running_servers.remove(self.process)
            _stop_process_group(self.process)


class Implementation:
    """One queue_job addon: its addons path and the databases made for it."""

    def __init__(self, label, addons_dir, prefix="bench"):
        if not os.path.isfile(os.path.join(addons_dir, "queue_job", "__manifest__.py")):
            raise SystemExit(f"{addons_dir}: no queue_job addon in this directory")
        self.label = label
        self.prefix = prefix
        self.addons_path = f"{os.path.abspath(addons_dir)},{BENCH_ADDONS}"
        self.template = self._database_name("template")
        self.databases = []

    def _database_name(self, purpose):
        return f"{self.prefix}_{os.getpid()}_{self.label}_{purpose}"

    def _log(self, name):
        return os.path.join(log_dir(), f"{self.label}_{name}.log")

    def make_template(self):
        _drop(self.template)
        self.databases.append(self.template)
        command = [
            PYTHON,
            ODOO_SERVER,
            "--addons-path",
            self.addons_path,
            "-d",
            self.template,
            "-i",
            "queue_job,queue_job_bench",
            "--stop-after-init",
            "--no-http",
            "--log-level",
            "warn",
        ]
        with open(self._log("install"), "ab") as log:
            subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, check=True, timeout=SETUP_TIMEOUT
            )

    def fresh_database(self, purpose):
        name = self._database_name(purpose)
        _drop(name)
        self.databases.append(name)
        execute("postgres", f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def drop_database(self, name):
        self.databases.remove(name)
        _drop(name)

    def drop_databases(self):
        while self.databases:
            _drop(self.databases.pop())

    def in_odoo(self, db, command, *args):
        """Run ``in_odoo.py COMMAND ARGS`` on ``db``; return the JSON it prints."""
        completed = subprocess.run(
            [PYTHON, IN_ODOO, self.addons_path, db, command, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT,
        )
        if completed.returncode:
            raise RuntimeError(
                f"[{self.label}] in_odoo.py {command} failed:\n{completed.stderr[-3000:]}"
            )
        return json.loads(completed.stdout.strip().splitlines()[-1])

    def server_command(self, db, http_port, gevent_port):
        """The same server for every implementation: prefork, queue_job loaded server-wide."""
        options = {
            "--addons-path": self.addons_path,
            "-d": db,
            "--db-filter": f"^{db}$",
            "--load": "base,web,queue_job",
            "--workers": str(HTTP_WORKERS),
            "--max-cron-threads": "0",
            "--http-interface": "127.0.0.1",
            "--http-port": str(http_port),
            "--gevent-port": str(gevent_port),
            "--log-level": "warn",
        }
        return [PYTHON, ODOO_SERVER, *(word for option in options.items() for word in option)]

    def server(self, db, channels=CHANNELS):
        """A running server on ``db`` (a context manager that stops it)."""
        # Ports are picked now, not once per run: another run may hold some meanwhile.
        http_port, gevent_port = free_ports(2)
        env = dict(
            os.environ,
            ODOO_QUEUE_JOB_CHANNELS=channels,
            # OCA's runner calls the HTTP workers on this port.
            ODOO_QUEUE_JOB_PORT=str(http_port),
        )
        command = self.server_command(db, http_port, gevent_port)
        return _Server(command, env, self._log(f"server_{db}"))


def _drop(name):
    # FORCE: a server that was killed may leave a backend behind for a moment.
    execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
