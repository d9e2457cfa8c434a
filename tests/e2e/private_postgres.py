# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""A PostgreSQL cluster of a test's own, in a temporary directory, that it may restart.

The shared cluster serves other tests at the same time: a test that restarts
or kills its server needs one of its own. This one listens on a Unix socket
in its directory only (no TCP), so its port names the socket file and cannot
collide with another server's.

PostgreSQL refuses to run as root: as root, the cluster belongs to the
``postgres`` system user (which the Debian package creates) and its
superuser role is named after the current user, who connects through the
socket without a password, as on the shared cluster.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile

PORT = 5491


def _bindir():
    """The directory of initdb and pg_ctl: pg_config's, else the newest Debian one."""
    try:
        bindir = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        bindir = ""
    candidates = [bindir] if bindir else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    raise RuntimeError("cannot find initdb: install PostgreSQL's server binaries")


class PrivateCluster:
    """``initdb`` in a temporary directory; :meth:`start`, :meth:`restart`, :meth:`destroy`."""

    def __init__(self):
        self.bindir = _bindir()
        self.directory = tempfile.mkdtemp(prefix="queue_job_pg_")
        self.data = os.path.join(self.directory, "data")
        self.log = os.path.join(self.directory, "postgres.log")
        self.port = PORT
        self.role = pwd.getpwuid(os.getuid()).pw_name
        # As root, the server runs as postgres, which must own its directory.
        self._as_owner = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        if self._as_owner:
            shutil.chown(self.directory, user="postgres")
        self._run(
            "initdb", "-D", self.data, "-U", self.role, "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )

    @property
    def host(self):
        """The socket directory, as libpq's and Odoo's ``host``."""
        return self.directory

    def dsn(self, dbname):
        return f"host={self.host} port={self.port} dbname={dbname}"

    def start(self):
        self._pg_ctl("start")

    def restart(self, mode="immediate"):
        """Restart the server; ``immediate`` ends every session at once, as a crash would."""
        self._pg_ctl("restart", "-m", mode)

    def destroy(self):
        """Stop the server (if it runs) and delete the cluster."""
        subprocess.run(
            [*self._as_owner, os.path.join(self.bindir, "pg_ctl"), "-D", self.data,
             "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.directory, ignore_errors=True)

    def _pg_ctl(self, action, *args):
        self._run(
            "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", *args,
            "-o", f"-p {self.port} -k {self.directory} -c listen_addresses=''",
            action,
        )

    def _run(self, program, *args):
        result = subprocess.run(
            [*self._as_owner, os.path.join(self.bindir, program), *args],
            capture_output=True, text=True,
        )
        if result.returncode:
            raise RuntimeError(f"{program} {' '.join(args)} failed: {result.stderr.strip()}")
