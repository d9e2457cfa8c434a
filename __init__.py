# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
from . import models
from . import wizards


def post_load():
    """Start the jobrunner with the server when loaded server-wide (``--load``)."""
    from .jobrunner.server import install_server_hooks

    install_server_hooks()
