# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Transaction isolation: the one place that sets it.

Odoo's cursors default to REPEATABLE READ; the statements of the claim, the
rescue, the release and the outcome of a job rely on READ COMMITTED when
several workers race.
"""

from psycopg2.extensions import TRANSACTION_STATUS_IDLE


def read_committed(cr):
    """Run the transaction ``cr`` starts next in READ COMMITTED.

    Odoo's cursors default to REPEATABLE READ, whose snapshot would hide the
    releases and claims that concurrent workers commit while this
    transaction waits for a row lock: it would fail with a serialization
    error instead of counting on the latest values. The functions of
    ``transitions`` and ``claim`` rely on READ COMMITTED when several workers race (the form
    buttons run in Odoo's requests, which retry on serialization errors).

    PostgreSQL only takes this as a transaction's first statement; a cursor
    already inside a transaction (an Odoo test's savepoint cursor) keeps its
    level. On an autocommit connection each statement is a transaction of
    the session's default level: the runner's executors set it on theirs.
    """
    connection = cr.connection
    if not connection.autocommit and connection.get_transaction_status() == TRANSACTION_STATUS_IDLE:
        cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")


def read_committed_session(cr):
    """Make READ COMMITTED the default of ``cr``'s session (the runner's
    executors: their claims run on an autocommit connection, each statement
    a transaction of the session's level; a job's transaction says its own)."""
    cr.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")
