# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Real Odoo processes for the end-to-end tests: ``odoo shell`` and the server with its runner."""

import os
import signal
import subprocess
import time

PORT = os.environ.get("QUEUE_JOB_E2E_HTTP_PORT", "8189")


def odoo_shell(code, db, addons):
    """Run ``code`` in ``odoo shell`` on ``db``, then commit; return its stdout."""
    result = subprocess.run(
        ["odoo", "shell", f"--addons-path={addons}", "-d", db, "--no-http", "--log-level=warn"],
        input=code + "\nenv.cr.commit()\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


class OdooServer:
    """``odoo --load=base,web,queue_job``, the documented way to run the jobrunner."""

    def __init__(self, log_path, db, addons, environ=()):
        self.log_path = log_path
        self.db = db
        self.addons = addons
        self.environ = dict(environ)
        self.process = None

    def start(self):
        self.log = open(self.log_path, "a")
        env = {**os.environ, "ODOO_QUEUE_JOB_CHANNELS": "root:2", **self.environ}
        self.process = subprocess.Popen(
            ["odoo", f"--addons-path={self.addons}", "-d", self.db, "--load=base,web,queue_job",
             f"--http-port={PORT}", "--log-level=info"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with open(self.log_path) as log:
                if f"serving database {self.db}" in log.read():
                    return
            assert self.process.poll() is None, "the server exited"
            time.sleep(0.2)
        raise AssertionError("the jobrunner did not start within 90s")

    def kill(self, sig=signal.SIGTERM):
        self.process.send_signal(sig)
        self.process.wait(timeout=60)
        self.log.close()
