# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Which databases a runner serves."""

import uuid
from contextlib import closing

import psycopg2
import pytest
from psycopg2.extensions import make_dsn

from queue_job.jobrunner.databases import UnknownDatabaseError, served_databases


@pytest.fixture(scope="module")
def odoo_databases(database):
    """Two databases as Odoo leaves them, one with queue_job installed; dropped after."""
    names = {state: f"queue_job_pure_{state}_{uuid.uuid4().hex[:8]}" for state in ("on", "off")}
    with closing(connect_to(database, "postgres")) as admin:
        admin.autocommit = True
        with admin.cursor() as cr:
            for name in names.values():
                cr.execute(f'CREATE DATABASE "{name}"')
        for state, name in names.items():
            with closing(connect_to(database, name)) as conn, conn, conn.cursor() as cr:
                cr.execute("CREATE TABLE ir_module_module (name varchar, state varchar)")
                cr.execute(
                    "INSERT INTO ir_module_module VALUES ('base', 'installed'), ('queue_job', %s)",
                    ("installed" if state == "on" else "uninstalled",),
                )
        yield names
        with admin.cursor() as cr:
            for name in names.values():
                cr.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def connect_to(server_dsn, db_name):
    return psycopg2.connect(make_dsn(server_dsn, dbname=db_name))


def test_configured_databases_are_served_if_queue_job_is_installed(database, odoo_databases):
    configured = [odoo_databases["off"], "postgres", odoo_databases["on"]]
    served = served_databases(lambda name: connect_to(database, name), configured)
    assert served == [odoo_databases["on"]]


def test_without_configuration_every_database_with_queue_job_is_served(database, odoo_databases):
    def connect(name):
        # Other tests create and drop databases meanwhile: see them all as
        # the maintenance database, which is no Odoo database.
        return connect_to(database, name if name in odoo_databases.values() else "postgres")

    served = served_databases(connect)
    assert odoo_databases["on"] in served
    assert odoo_databases["off"] not in served
    assert "postgres" not in served


def test_a_configured_database_must_exist(database, odoo_databases):
    configured = [odoo_databases["on"], "no_such_database_1", "no_such_database_2"]
    with pytest.raises(UnknownDatabaseError) as error:
        served_databases(lambda name: connect_to(database, name), configured)
    assert str(error.value) == (
        "db_name (-d) names databases that do not exist: 'no_such_database_1', 'no_such_database_2'"
    )
