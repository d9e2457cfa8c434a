# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Helpers for code that delays jobs (OCA's ``utils`` module)."""

import logging
import os

from odoo import tools

_logger = logging.getLogger(__name__)


def must_run_without_delay(env):
    """True when jobs run inline instead of being stored (OCA's switches).

    ``QUEUE_JOB__NO_DELAY`` in the environment, or the ``queue_job__no_delay``
    context key.
    """
    if os.environ.get("QUEUE_JOB__NO_DELAY"):
        _logger.warning("QUEUE_JOB__NO_DELAY is set: jobs run inline, none is stored")
        return True
    if env.context.get("queue_job__no_delay"):
        if not tools.config["test_enable"]:
            _logger.info("queue_job__no_delay is in the context: the job runs inline")
        return True
    return False
