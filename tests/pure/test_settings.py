# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The runner's settings: the environment first, then Odoo's configuration file."""

import doctest

from queue_job.core import settings


def test_doctests():
    results = doctest.testmod(settings)
    assert results.attempted and not results.failed


def test_runner_db_params_prefer_the_environment_param_by_param(tmp_path):
    config_file = tmp_path / "odoo.conf"
    config_file.write_text(
        "[options]\ndb_host = pgbouncer\n"
        "[queue_job]\njobrunner_db_host = db.internal\njobrunner_db_port = 5433\n"
    )
    environ = {"ODOO_QUEUE_JOB_JOBRUNNER_DB_PORT": "6432", "ODOO_QUEUE_JOB_JOBRUNNER_DB_USER": ""}
    assert settings.runner_db_params(str(config_file), environ) == {
        "host": "db.internal",
        "port": "6432",
    }


def test_runner_db_params_take_nothing_else(tmp_path):
    config_file = tmp_path / "odoo.conf"
    config_file.write_text("[queue_job]\njobrunner_db_name = other\njobrunner_db_sslmode = off\n")
    environ = {"ODOO_QUEUE_JOB_JOBRUNNER_DB_NAME": "other"}
    assert settings.runner_db_params(str(config_file), environ) == {}
    assert settings.runner_db_params(None, {}) == {}
