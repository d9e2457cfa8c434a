# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Fixtures for the tests that need PostgreSQL but not Odoo.

The addon's core (``core/``: ``schema``, ``transitions``, ``claim``,
``channels``, ...) and the runner (``jobrunner.runner``) import nothing from
Odoo. They are imported here as the package ``queue_job`` without running
the addon's ``__init__`` (which loads the Odoo models).

``QUEUE_JOB_TABLES`` is the part of the ORM's ``queue_job`` table these
modules use; ``test_queue_job``'s ``test_pure_schema`` checks it against the
table Odoo creates, so the two cannot drift apart.
"""

import os
import sys
import types
import uuid

import psycopg2
import pytest

ADDON_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if "queue_job" not in sys.modules:
    package = types.ModuleType("queue_job")
    package.__path__ = [ADDON_DIR]
    sys.modules["queue_job"] = package

from queue_job.core import schema  # noqa: E402

QUEUE_JOB_TABLES = """
CREATE TABLE queue_job (
    id serial PRIMARY KEY,
    uuid varchar NOT NULL,
    graph_uuid varchar,
    name varchar,
    model_name varchar,
    method_name varchar,
    state varchar NOT NULL,
    priority integer,
    eta timestamp,
    retry integer,
    max_retries integer,
    channel varchar,
    identity_key varchar,
    result text,
    exc_name varchar,
    exc_message text,
    exc_info text,
    date_created timestamp,
    date_enqueued timestamp,
    date_started timestamp,
    date_done timestamp,
    exec_time double precision,
    pending_dependency_count integer,
    timeout double precision
);
CREATE TABLE queue_job_channel (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    complete_name varchar,
    capacity integer,
    sequential boolean,
    rate_limit integer,
    paused boolean
);
CREATE TABLE queue_job_dependency (
    job_id integer NOT NULL REFERENCES queue_job(id) ON DELETE CASCADE,
    dependency_id integer NOT NULL REFERENCES queue_job(id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, dependency_id)
);
-- Indexes of the ORM's (index=True) that a plan could take instead of ours.
CREATE INDEX queue_job__state_index ON queue_job (state);
CREATE INDEX queue_job__channel_index ON queue_job (channel);
"""


def _admin_dsn(dbname="postgres"):
    return os.environ.get("QUEUE_JOB_TEST_DSN_TEMPLATE", "dbname={dbname}").format(
        dbname=dbname
    )


def create_database():
    """Create a fresh database with the queue_job tables; return its DSN."""
    name = f"queue_job_pure_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(_admin_dsn())
    admin.autocommit = True
    with admin.cursor() as cr:
        cr.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    conn = psycopg2.connect(_admin_dsn(name))
    with conn, conn.cursor() as cr:
        cr.execute(QUEUE_JOB_TABLES)
        schema.ensure(cr)
    conn.close()
    return _admin_dsn(name)


def drop_database(dsn):
    name = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    admin = psycopg2.connect(_admin_dsn())
    admin.autocommit = True
    with admin.cursor() as cr:
        cr.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def database():
    """A fresh database with the queue_job tables, dropped at the end."""
    dsn = create_database()
    yield dsn
    drop_database(dsn)


@pytest.fixture
def connect(database):
    """Open connections to the test database; all are closed after the test."""
    opened = []

    def _connect():
        conn = psycopg2.connect(database)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        conn.close()


@pytest.fixture
def conn(connect):
    """A connection on an emptied queue_job table."""
    conn = connect()
    with conn, conn.cursor() as cr:
        cr.execute(
            "TRUNCATE queue_job, queue_job_dependency, queue_job_throttle, queue_job_rate_start,"
            " queue_job_channel RESTART IDENTITY"
        )
    return conn
