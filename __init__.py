# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
from . import controllers
from . import models
from . import wizards
from .core import schema

# OCA's shortcut
from .job import identity_exact  # noqa: F401


def post_load():
    """Start the jobrunner with the server when loaded server-wide (``--load``)."""
    from .jobrunner.server import install_server_hooks

    install_server_hooks()


def uninstall_hook(env):
    """Drop the database functions that the ORM does not know of."""
    schema.drop(env.cr)
