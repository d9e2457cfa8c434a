# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
import json
import logging
import re
from collections import namedtuple

import psycopg2

from odoo import api, exceptions, fields, models, tools
from odoo.exceptions import ConcurrencyError
from odoo.tools import mute_logger

_logger = logging.getLogger(__name__)

JOB_FUNCTION_NAME = re.compile(r"^<([0-9a-z_.]+)>\.([0-9a-zA-Z_]+)$")

JobConfig = namedtuple(
    "JobConfig",
    "channel retry_pattern related_action_enable related_action_func_name "
    "related_action_kwargs job_function_id allow_commit on_fail_method_name timeout",
)


def _is_seconds(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _valid_retry_seconds(seconds):
    """Seconds (an integer >= 0), or a range ``[min, max]`` of them."""
    if isinstance(seconds, (list, tuple)):
        return len(seconds) == 2 and all(map(_is_seconds, seconds)) and seconds[0] <= seconds[1]
    return _is_seconds(seconds)


def _json_text(value):
    return json.dumps(value, indent=2) if value else False


class QueueJobFunction(models.Model):
    """How the jobs of one ``model.method`` run: channel, retries, related action.

    One record per delayed method, created the first time it is delayed, or
    declared in XML data (OCA's format).
    """

    _name = "queue.job.function"
    _inherit = ["queue.job.config.mixin"]
    _description = "Job Functions"
    _order = "name"

    # Data declares a function by its name (``<res.partner>.export``) or by
    # its model and method: either gives the others.
    name = fields.Char(compute="_compute_name", inverse="_inverse_name", store=True, index=True)
    model_id = fields.Many2one("ir.model", string="Model", ondelete="cascade")
    method = fields.Char()
    channel_id = fields.Many2one(
        "queue.job.channel",
        string="Channel",
        required=True,
        default=lambda self: self.env.ref("queue_job.channel_root"),
    )
    channel = fields.Char(related="channel_id.complete_name", store=True, readonly=True)
    retry_pattern = fields.Json(
        help="Seconds to wait before a retry, from a number of tries on: "
        "{1: 10, 5: 60, 10: [300, 600]} waits 10 s from the 1st try, 60 s from the 5th, "
        "between 300 and 600 s (at random) from the 10th",
    )
    related_action = fields.Json(
        help='The "Related Action" button of the job: '
        '{"enable": false} hides it; {"func_name": "method_of_queue_job", '
        '"kwargs": {...}} calls another method than the default, which opens '
        "the job's records",
    )
    on_fail_method = fields.Char(
        help="A method of the model, called on the job's records with the "
        "job's exc_name, exc_message and exc_info when the job fails for good "
        "(not when it is to be retried)",
    )
    allow_commit = fields.Boolean(
        help="Allow the job to commit its transaction itself. Without it a job "
        "is all or nothing: a failed try leaves nothing behind",
    )
    timeout = fields.Float(
        string="Time Limit (s)",
        help="Seconds a job of this function may run before the runner stops it "
        "(failed with JobTimeout, or retried per the retry pattern). 0: the limit of "
        "its channel, if any; with_delay(timeout=...) overrides it",
    )

    # The form edits the two JSON settings as text.
    edit_retry_pattern = fields.Text(
        string="Retry Pattern (JSON)",
        compute="_compute_edit_settings",
        inverse="_inverse_edit_retry_pattern",
        help='Seconds to wait before a retry, from a number of tries on, e.g. '
        '{"1": 10, "5": 60, "10": [300, 600]} (a range: picked at random). '
        "Empty: retry after 10 minutes",
    )
    edit_related_action = fields.Text(
        string="Related Action (JSON)",
        compute="_compute_edit_settings",
        inverse="_inverse_edit_related_action",
        help='Empty: the button opens the records of the job. {"enable": false} '
        'hides it; {"func_name": "method_of_queue_job", "kwargs": {...}} calls '
        "that method of the job instead",
    )

    _name_uniq = models.Constraint("UNIQUE(name)", "A job function with this name already exists")

    @staticmethod
    def job_function_name(model_name, method_name):
        return f"<{model_name}>.{method_name}"

    @api.depends("model_id.model", "method")
    def _compute_name(self):
        for function in self:
            if function.model_id and function.method:
                function.name = self.job_function_name(function.model_id.model, function.method)
            else:
                function.name = False

    def _inverse_name(self):
        for function in self:
            match = JOB_FUNCTION_NAME.match(function.name or "")
            if not match:
                raise exceptions.ValidationError(
                    self.env._(
                        "Invalid job function name %s: expected <model.name>.method",
                        function.name,
                    )
                )
            model_name, method = match.groups()
            model = self.env["ir.model"].sudo().search([("model", "=", model_name)], limit=1)
            if not model:
                raise exceptions.ValidationError(
                    self.env._("Job function %(name)s: no model %(model)s",
                               name=function.name, model=model_name)
                )
            function.write({"model_id": model.id, "method": method})

    @api.constrains("model_id", "method")
    def _check_model_and_method(self):
        if any(not (function.model_id and function.method) for function in self):
            raise exceptions.ValidationError(
                self.env._("A job function needs a model and a method, or a name <model>.method")
            )

    def _same_record(self, vals):
        name = vals.get("name")
        if not name and vals.get("model_id") and vals.get("method"):
            model = self.env["ir.model"].browse(vals["model_id"]).model
            name = self.job_function_name(model, vals["method"])
        return self.search([("name", "=", name)], limit=1) if name else self.browse()

    @api.depends("retry_pattern", "related_action")
    def _compute_edit_settings(self):
        for function in self:
            function.edit_retry_pattern = _json_text(function.retry_pattern)
            function.edit_related_action = _json_text(function.related_action)

    def _inverse_edit_retry_pattern(self):
        for function in self:
            function.retry_pattern = function._parse_json_setting(
                function.edit_retry_pattern, self.env._("Retry pattern")
            )

    def _inverse_edit_related_action(self):
        for function in self:
            function.related_action = function._parse_json_setting(
                function.edit_related_action, self.env._("Related action")
            )

    def _parse_json_setting(self, text, label):
        if not (text or "").strip():
            return False
        try:
            return json.loads(text)
        except ValueError as err:
            raise exceptions.ValidationError(
                self.env._("%(setting)s is not valid JSON: %(error)s", setting=label, error=err)
            ) from None

    @api.constrains("retry_pattern")
    def _check_retry_pattern(self):
        for function in self:
            pattern = function.retry_pattern
            if pattern in (None, False, {}):
                continue
            try:
                valid = isinstance(pattern, dict) and all(
                    int(tries) > 0 and _valid_retry_seconds(seconds)
                    for tries, seconds in pattern.items()
                )
            except ValueError:
                valid = False
            if not valid:
                raise exceptions.ValidationError(
                    self.env._(
                        "Retry pattern of %(name)s must map tries (integers > 0) to "
                        "seconds (integers >= 0) or to a range of seconds to pick "
                        "from at random ([min, max]), e.g. {1: 10, 5: [60, 120]}; "
                        "got %(pattern)s",
                        name=function.name,
                        pattern=pattern,
                    )
                )

    @api.constrains("timeout")
    def _check_timeout(self):
        for function in self.filtered(lambda function: function.timeout < 0):
            raise exceptions.ValidationError(
                self.env._(
                    "Time limit of %(name)s must be a number of seconds >= 0 (0: none), "
                    "not %(timeout)s",
                    name=function.name,
                    timeout=function.timeout,
                )
            )

    @api.constrains("model_id", "on_fail_method")
    def _check_on_fail_method(self):
        for function in self.filtered("on_fail_method"):
            model = self.env.get(function.model_id.model)
            if model is None or not callable(getattr(model, function.on_fail_method, None)):
                raise exceptions.ValidationError(
                    self.env._(
                        "On-fail method of %(name)s: %(model)s has no method %(method)s",
                        name=function.name,
                        model=function.model_id.model,
                        method=function.on_fail_method,
                    )
                )

    @api.constrains("related_action")
    def _check_related_action(self):
        allowed = {"enable", "func_name", "kwargs"}
        for function in self:
            action = function.related_action or {}
            if not isinstance(action, dict) or set(action) - allowed:
                raise exceptions.ValidationError(
                    self.env._(
                        "Related action of %(name)s accepts the keys %(keys)s only",
                        name=function.name,
                        keys=", ".join(sorted(allowed)),
                    )
                )

    def job_config(self, name):
        """The :class:`JobConfig` of function ``name``, created on first use."""
        config = self._job_config(name)
        if config is None:
            self._create_on_first_use(name)
            config = self._job_config(name)
        if config is None:
            # Created by a concurrent transaction that our snapshot cannot
            # see yet: Odoo retries the whole transaction on this error.
            raise ConcurrencyError(f"Job function {name} was created concurrently")
        return config

    @tools.ormcache("name")
    def _job_config(self, name):
        function = self.sudo().search([("name", "=", name)], limit=1)
        if not function:
            return None
        related_action = function.related_action or {}
        return JobConfig(
            channel=function.channel,
            retry_pattern={
                int(tries): tuple(seconds) if isinstance(seconds, list) else seconds
                for tries, seconds in (function.retry_pattern or {}).items()
            },
            related_action_enable=related_action.get("enable", True),
            related_action_func_name=related_action.get("func_name"),
            related_action_kwargs=related_action.get("kwargs", {}),
            job_function_id=function.id,
            allow_commit=function.allow_commit,
            on_fail_method_name=function.on_fail_method or None,
            timeout=function.timeout or None,
        )

    def _create_on_first_use(self, name):
        model_name, method = JOB_FUNCTION_NAME.match(name).groups()
        # A concurrent transaction may create the same function: the unique
        # constraint decides, and the loser uses the winner's record.
        try:
            with mute_logger("odoo.sql_db"), self.env.cr.savepoint():
                self.sudo().create(
                    {"model_id": self.env["ir.model"]._get_id(model_name), "method": method}
                )
        except psycopg2.IntegrityError:
            _logger.debug("job function %s created concurrently", name)
