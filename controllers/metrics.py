# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""``/queue_job/metrics``: the queue's metrics for Prometheus (``core/metrics.py``).

Disabled (404) until a token is configured: the ``metrics_token`` setting
(``ODOO_QUEUE_JOB_METRICS_TOKEN``, else ``metrics_token`` in the
``[queue_job]`` section of the configuration file), else the system
parameter ``queue_job.metrics_token``. A request must then send it as
``Authorization: Bearer <token>``; without it, or with another, 403.
"""

import hmac

from odoo import http
from odoo.http import request
from odoo.tools import config

from ..core import metrics, settings

#: The system parameter holding the token, when the setting does not.
TOKEN_PARAMETER = "queue_job.metrics_token"


class QueueJobMetrics(http.Controller):
    @http.route("/queue_job/metrics", type="http", auth="none", methods=["GET"], save_session=False)
    def metrics(self):
        if not request.db:
            return request.not_found()
        _source, token = settings.lookup("metrics_token", config["config"])
        token = token or request.env["ir.config_parameter"].sudo().get_param(TOKEN_PARAMETER)
        if not token:
            return request.not_found()
        scheme, _space, given = request.httprequest.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            return request.make_response("invalid or missing token\n", status=403)
        body = metrics.exposition(request.env.cr)
        return request.make_response(body, headers=[("Content-Type", metrics.CONTENT_TYPE)])
