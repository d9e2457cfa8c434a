# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
from odoo import api, exceptions, fields, models, tools


class QueueJobChannel(models.Model):
    """A channel of the tree under ``root``; jobs run within its capacity.

    Capacities are the jobrunner's configuration (``root:4,root.mail:1``),
    not data: every runner reads them at start.
    """

    _name = "queue.job.channel"
    _description = "Job Channels"
    _order = "complete_name"
    _rec_name = "complete_name"

    name = fields.Char(required=True)
    complete_name = fields.Char(compute="_compute_complete_name", store=True, readonly=True, recursive=True)
    parent_id = fields.Many2one("queue.job.channel", string="Parent Channel", ondelete="restrict")
    job_function_ids = fields.One2many("queue.job.function", "channel_id", string="Job Functions")
    removal_interval = fields.Integer(
        default=lambda self: self.env["queue.job"]._removal_interval,
        required=True,
        help="Days after which done and cancelled jobs of this channel are deleted",
    )

    _name_uniq = models.Constraint(
        "UNIQUE(complete_name)", "A channel with this name already exists"
    )

    @api.depends("name", "parent_id.complete_name")
    def _compute_complete_name(self):
        for channel in self:
            parent = channel.parent_id.complete_name
            channel.complete_name = f"{parent}.{channel.name}" if parent else channel.name

    @api.constrains("parent_id", "name")
    def _check_parent(self):
        for channel in self:
            if channel.name == "root" and channel.parent_id:
                raise exceptions.ValidationError(self.env._("The root channel has no parent"))
            if channel.name != "root" and not channel.parent_id:
                raise exceptions.ValidationError(
                    self.env._("Channel %s needs a parent channel", channel.name)
                )
            if "." in (channel.name or ""):
                raise exceptions.ValidationError(
                    self.env._("A channel name cannot contain a dot: %s", channel.name)
                )

    @api.model
    def channel_exists(self, complete_name):
        return complete_name in self._channel_names()

    @tools.ormcache()
    def _channel_names(self):
        self.env.cr.execute("SELECT complete_name FROM queue_job_channel")
        return frozenset(row[0] for row in self.env.cr.fetchall())

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        self.env.registry.clear_cache()
        return records

    def write(self, vals):
        if "name" in vals and any(channel.name == "root" for channel in self):
            raise exceptions.UserError(self.env._("The root channel cannot be renamed"))
        result = super().write(vals)
        self.env.registry.clear_cache()
        return result

    @api.ondelete(at_uninstall=False)
    def _unlink_except_root(self):
        if any(channel.name == "root" for channel in self):
            raise exceptions.UserError(self.env._("The root channel cannot be deleted"))

    def unlink(self):
        result = super().unlink()
        self.env.registry.clear_cache()
        return result
