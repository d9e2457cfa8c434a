# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""What it costs per job to be able to stop a job: threads (ours) or worker processes.

    python bench/stop_cost.py ADDONS_PATH DATABASE [JOBS]

Run with Odoo's python on a database where queue_job is installed. The
registry is loaded first, as in a runner. It prints, per job:

* ``thread``: what our runner adds to each job to be able to stop it: the
  executor records the job, its time limit and deadline under a lock before
  running it and clears them after (``_Session._begin``/``_end``); the
  server process id of its connection is read once per connection, not per
  job;
* ``fork``: a process per job that the runner could kill: fork the runner
  (the registry loaded, copied on write), open a database connection in the
  child, run one statement, exit, reap;
* ``pipe``: a worker process per executor instead, kept from job to job:
  hand it the job and get its outcome back over a pipe (a round trip); a
  stopped job then costs a fork and a new connection, as above, once.

and the ratio of each to ``thread``; then the resident memory of this process
with the registry loaded: what each worker process would come to hold as it
writes the pages it shares with the runner (Python's reference counts write
to most of them). Nothing asserts: it prints.
"""

import multiprocessing
import os
import sys
import time
import types

import psycopg2

from odoo.modules.registry import Registry
from odoo.sql_db import connection_info_for
from odoo.tools import config


def per_job(function, count):
    start = time.perf_counter()
    for _ in range(count):
        function()
    return (time.perf_counter() - start) / count


def main(addons_path, db_name, jobs="200"):
    count = int(jobs)
    config.parse_config(["--addons-path", addons_path, "-d", db_name, "--log-level", "warn"])
    Registry(db_name)  # loaded, as in a runner that ran a job
    from odoo.addons.queue_job.core.channels import Channels
    from odoo.addons.queue_job.jobrunner.runner import _Session

    dsn = connection_info_for(db_name)[1]

    # -- thread: our bookkeeping around each job
    database = types.SimpleNamespace(
        channels=Channels.parse("root:4,root.mail:2:timeout=60"), wake_dispatcher=lambda: None
    )
    session = _Session(database)
    job = {"id": 1, "uuid": "u", "channel": "root.mail.bulk", "timeout": None}

    def thread_job():
        session._begin(job)
        session._end()

    thread = per_job(thread_job, count * 1000)

    # -- fork: a process per job, with a connection of its own
    def fork_job():
        pid = os.fork()
        if pid == 0:
            try:
                connection = psycopg2.connect(**dsn)
                with connection.cursor() as cr:
                    cr.execute("SELECT pg_backend_pid()")
                connection.close()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)

    fork = per_job(fork_job, count)

    # -- pipe: a kept worker process per executor, a round trip per job
    parent_end, child_end = multiprocessing.Pipe()
    pid = os.fork()
    if pid == 0:
        parent_end.close()
        while (message := child_end.recv()) is not None:
            child_end.send(("done", message["id"]))
        os._exit(0)
    child_end.close()

    def pipe_job():
        parent_end.send(job)
        parent_end.recv()

    pipe = per_job(pipe_job, count * 10)
    parent_end.send(None)
    os.waitpid(pid, 0)

    with open("/proc/self/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    print(f"jobs: {count} forks, {count * 10} round trips, {count * 1000} thread jobs")
    for name, seconds in (("thread", thread), ("fork", fork), ("pipe", pipe)):
        print(f"{name:>6}: {seconds * 1e6:10.1f} µs per job, {seconds / thread:8.0f} x thread")
    print(f"resident memory with the registry loaded: {rss_kb / 1024:.0f} MB")


if __name__ == "__main__":
    main(*sys.argv[1:])
