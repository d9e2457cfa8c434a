# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The runner's settings, under OCA queue_job's names.

A setting ``key`` comes from the environment variable ``ODOO_QUEUE_JOB_<KEY>``,
else from ``key`` in the ``[queue_job]`` section of Odoo's configuration file:

>>> lookup("channels", None, {"ODOO_QUEUE_JOB_CHANNELS": "root:4"})
('ODOO_QUEUE_JOB_CHANNELS', 'root:4')
>>> lookup("channels", None, {})
(None, None)

The runner connects to PostgreSQL as Odoo does (its ``db_*`` settings),
except for the parameters set by ``jobrunner_db_host``, ``_port``, ``_user``
and ``_password``: its LISTEN connection, its claims and the liveness locks
of its jobs need sessions of their own, which a transaction pooler such as
PgBouncer in front of Odoo's connections does not give.

>>> runner_db_params(None, {"ODOO_QUEUE_JOB_JOBRUNNER_DB_HOST": "db.internal"})
{'host': 'db.internal'}
"""

import configparser
import os

SECTION = "queue_job"

#: The connection parameters the runner may take from its own settings.
DB_PARAMS = ("host", "port", "user", "password")


def lookup(key, config_file=None, environ=os.environ):
    """(where the setting ``key`` was found, its value), or (None, None) when it is unset."""
    environ_key = environ_key_of(key)
    if environ.get(environ_key):
        return environ_key, environ[environ_key]
    if config_file:
        parser = configparser.RawConfigParser()
        parser.read(config_file)
        value = parser.get(SECTION, key, fallback=None)
        if value:
            return f"{config_file} [{SECTION}] {key}", value
    return None, None


def environ_key_of(key):
    """The environment variable of the setting ``key``."""
    return f"ODOO_QUEUE_JOB_{key.upper()}"


def runner_db_params(config_file=None, environ=os.environ):
    """The connection parameters that the ``jobrunner_db_*`` settings set."""
    params = {}
    for param in DB_PARAMS:
        _source, value = lookup(f"jobrunner_db_{param}", config_file, environ)
        if value:
            params[param] = value
    return params
