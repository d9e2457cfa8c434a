# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Database errors told apart: the connection is gone, a concurrency failure, or an error of the job.

psycopg2 raises ``OperationalError`` (or a subclass) for all three: a
statement timeout (``QueryCanceled``), a full disk (``DiskFull``), a lock
not available, a serialization failure as well as a connection cut. Only a
lost connection means that the job's worker can record nothing: everything
else is the job's outcome.
"""

import psycopg2
from psycopg2 import errors

#: Failures of a transaction that ran into concurrent ones, which the job
#: could not help: running it again later succeeds. Odoo also retries a
#: request (and OCA a job) for a lock not available, but that one is the
#: job's own choice (``NOWAIT``, its ``lock_timeout``): an error of the job.
CONCURRENCY_ERRORS = (
    errors.SerializationFailure,
    errors.DeadlockDetected,
)

# SQLSTATEs that end the session: class 08 (connection exception), and the
# server shutting down or refusing connections (57P01 admin_shutdown,
# 57P02 crash_shutdown, 57P03 cannot_connect_now).
_SESSION_ENDED_CODES = ("57P01", "57P02", "57P03")


def connection_lost(err):
    """Whether ``err`` says that the database connection is gone.

    True when the connection of the cursor that raised it is closed, for an
    ``OperationalError`` or a bare ``DatabaseError`` without an SQLSTATE
    (libpq's own: "server closed the connection unexpectedly"), and for the SQLSTATEs of a connection or
    server shutdown. A statement timeout, a full disk, a lock timeout, an
    out-of-memory error carry their SQLSTATE over a live connection: they
    are errors of the job.
    """
    if not isinstance(err, psycopg2.Error):
        return False
    cursor = getattr(err, "cursor", None)
    if cursor is not None and cursor.connection.closed:
        return True
    if isinstance(err, psycopg2.InterfaceError):  # "connection already closed"
        return True
    code = err.pgcode
    if code is None:
        # After a crash of the server, libpq's "server closed the connection
        # unexpectedly" comes as a bare DatabaseError, the connection not yet
        # marked closed. Other classes without an SQLSTATE are psycopg2's
        # own refusals (a ProgrammingError: nothing to fetch, say): the job's.
        return type(err) is psycopg2.DatabaseError or (
            isinstance(err, psycopg2.OperationalError)
            and not isinstance(err, CONCURRENCY_ERRORS)
        )
    return code.startswith("08") or code in _SESSION_ENDED_CODES
