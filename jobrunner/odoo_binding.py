# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The runner's Odoo side: databases and connections as Odoo is configured, jobs run by the ORM."""

import threading

import psycopg2

from odoo.modules.registry import Registry
from odoo.sql_db import Connection, ConnectionPool, connection_info_for
from odoo.tools import config

from ..core import settings
from ..core.channels import configured_channels
from ..execution import record_timeout, run_claimed
from . import databases
from .runner import Runner


class OdooBinding:
    """The :class:`~.runner.Binding` of a runner inside Odoo.

    ``db_params`` (see ``settings.runner_db_params``) override Odoo's
    connection parameters for every connection of the runner. Its executors'
    cursors come from pools of the runner's own, with those parameters: one
    per database, of Odoo's ``db_maxconn`` connections each, so that no
    database's executors take another's connections. (One pool of
    ``db_maxconn`` for all databases ran out once databases times executors
    outgrew it.) A database uses as many as its executors (root's capacity in
    force, said in the log), one more while the runner stops a job, and one
    per stopped job whose thread has not ended yet.
    """

    def __init__(self, db_params):
        self._db_params = db_params
        self._pools = {}  # database name -> ConnectionPool
        self._pools_lock = threading.Lock()

    def database_names(self):
        return databases.served_databases(self._connect, config["db_name"])

    def connection_params(self, db_name):
        return {**connection_info_for(db_name)[1], **self._db_params}

    def cursor(self, db_name):
        # Odoo's log lines name the database of their thread.
        threading.current_thread().dbname = db_name
        with self._pools_lock:
            pool = self._pools.get(db_name)
            if pool is None:
                pool = self._pools[db_name] = ConnectionPool(int(config["db_maxconn"]))
        return Connection(pool, db_name, self.connection_params(db_name)).cursor()

    def _connect(self, db_name):
        return psycopg2.connect(**self.connection_params(db_name))

    def run_job(self, db_name, cr, job):
        # In the job's transaction: reload what other processes changed.
        registry = Registry(db_name).check_signaling(cr)
        # The cursor serves one job after the other: the first environment of
        # this job makes it a new transaction (empty caches, current registry).
        cr.transaction = None
        try:
            run_claimed(cr, job)
        except Exception:
            registry.reset_changes()
            raise
        # Caches and models the job changed are reloaded by the other processes too.
        registry.signal_changes()

    def record_timeout(self, db_name, cr, job, seconds, stack):
        record_timeout(cr, job, seconds, stack)


def make_runner():
    """The runner as Odoo's configuration sets it up; raise ChannelsConfigError."""
    config_file = config["config"]
    channels = configured_channels(config_file)
    binding = OdooBinding(settings.runner_db_params(config_file))
    return Runner(binding, channels)
