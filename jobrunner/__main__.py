# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""A process that runs jobs and nothing else.

``python -m odoo.addons.queue_job.jobrunner -c odoo.conf [odoo options]``
serves the databases of ``db_name`` (``-d``), else every database where
queue_job is installed, until SIGTERM or SIGINT. Exit status 2 (and one
line in the log) if the channels or the databases are misconfigured.
"""

import sys

from odoo.service import server
from odoo.tools import config

from .odoo_binding import make_runner
from .runner import run_until_signalled


def main():
    config.parse_config(sys.argv[1:], setup_logging=True)
    # Jobs run with the same modules loaded as in the server.
    server.load_server_wide_modules()
    return run_until_signalled(make_runner)


if __name__ == "__main__":
    sys.exit(main())
