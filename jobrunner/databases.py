# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Which databases a runner serves: the configured ones, else all those with queue_job installed."""

from contextlib import closing

#: The database connected to for the list of databases, as Odoo does.
MAINTENANCE_DB = "postgres"


class UnknownDatabaseError(Exception):
    """A configured database does not exist; the message is one line."""


def served_databases(connect, configured=()):
    """Names of the databases to serve, in order.

    ``connect(name)`` opens a psycopg2 connection to database ``name``.
    ``configured`` are the names set in Odoo's ``db_name`` (``-d``): they must
    exist. Without them, every database of the current user is a candidate,
    as for Odoo's database list. Either way, only the databases where the
    queue_job module is installed are served. Connection errors propagate,
    so that an unreachable server is not taken for one with nothing to serve.
    """
    with closing(connect(MAINTENANCE_DB)) as conn, conn.cursor() as cr:
        cr.execute(
            """
            SELECT datname, datdba = (SELECT usesysid FROM pg_user WHERE usename = current_user)
              FROM pg_database
             WHERE datallowconn AND NOT datistemplate
            """
        )
        existing = dict(cr.fetchall())
    missing = [name for name in configured if name not in existing]
    if missing:
        raise UnknownDatabaseError(
            f"db_name (-d) names databases that do not exist: {', '.join(map(repr, missing))}"
        )
    candidates = configured or sorted(
        name for name, mine in existing.items() if mine and name != MAINTENANCE_DB
    )
    return [name for name in candidates if _has_queue_job(connect, name)]


def _has_queue_job(connect, name):
    with closing(connect(name)) as conn, conn.cursor() as cr:
        # A database that Odoo never initialised has no module table.
        cr.execute("SELECT to_regclass('ir_module_module') IS NOT NULL")
        if not cr.fetchone()[0]:
            return False
        cr.execute(
            "SELECT 1 FROM ir_module_module WHERE name = 'queue_job' AND state = 'installed'"
        )
        return cr.fetchone() is not None
