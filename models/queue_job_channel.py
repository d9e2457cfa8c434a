# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
import re

from odoo import api, exceptions, fields, models, tools

from ..job import PENDING
from ..core.channels import ChannelsConfigError, configured_channels
from ..core.states import RUNNING_STATES


class QueueJobChannel(models.Model):
    """A channel of the tree under ``root``; jobs run within its capacity.

    Capacities are the jobrunner's configuration (``root:4,root.mail:1``),
    not data: every runner reads them at start.
    """

    _name = "queue.job.channel"
    _inherit = ["queue.job.config.mixin"]
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
    # Live figures, computed on read: they are the runner's configuration and
    # the jobs' states at this moment, not data to store.
    capacity = fields.Integer(
        compute="_compute_capacity",
        help="Jobs of this channel and its sub-channels that may run at once, "
        "from the jobrunner's channels setting (ODOO_QUEUE_JOB_CHANNELS or "
        "the channels key of the [queue_job] section of the Odoo configuration file)",
    )
    capacity_note = fields.Char(compute="_compute_capacity")
    running_job_count = fields.Integer(
        string="Running Jobs",
        compute="_compute_job_counts",
        help="Enqueued or started jobs of this channel and its sub-channels: "
        "the slots of its capacity in use",
    )
    pending_job_count = fields.Integer(
        string="Pending Jobs",
        compute="_compute_job_counts",
        help="Jobs of this channel and its sub-channels ready to run",
    )

    _name_uniq = models.Constraint(
        "UNIQUE(complete_name)", "A channel with this name already exists"
    )

    @api.depends("name", "parent_id.complete_name")
    def _compute_complete_name(self):
        for channel in self:
            parent = channel.parent_id.complete_name
            channel.complete_name = f"{parent}.{channel.name}" if parent else channel.name

    def _compute_capacity(self):
        try:
            channels = configured_channels(tools.config["config"])
        except ChannelsConfigError as err:
            self.capacity = 0
            self.capacity_note = str(err)
            return
        for channel in self:
            channel.capacity = channels.capacities.get(channel.complete_name, 0)
            if channel.capacity:
                channel.capacity_note = False
                continue
            # An unconfigured channel shares the slots of its nearest configured ancestor.
            shared = channels.channel_of(channel.complete_name)
            channel.capacity_note = self.env._(
                "Not configured: its jobs use the capacity of %(channel)s (%(capacity)s)",
                channel=shared,
                capacity=channels.capacities[shared],
            )

    def _compute_job_counts(self):
        for channel in self:
            if not channel.complete_name:  # a channel being created in a form
                channel.running_job_count = channel.pending_job_count = 0
                continue
            counts = dict(
                self.env["queue.job"]._read_group(
                    channel._jobs_domain() + [("state", "in", (*RUNNING_STATES, PENDING))],
                    ["state"],
                    ["__count"],
                )
            )
            channel.running_job_count = sum(counts.get(state, 0) for state in RUNNING_STATES)
            channel.pending_job_count = counts.get(PENDING, 0)

    def _jobs_domain(self):
        """Jobs of this channel and of its sub-channels."""
        self.ensure_one()
        # '=like' would read '_' and '%' of a channel name as wildcards.
        escaped = re.sub(r"([\\_%])", r"\\\1", self.complete_name)
        return ["|", ("channel", "=", self.complete_name), ("channel", "=like", escaped + ".%")]

    def _action_open_jobs(self, name, states):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": name,
            "res_model": "queue.job",
            "view_mode": "list,form",
            "domain": self._jobs_domain() + [("state", "in", states)],
        }

    def action_open_running_jobs(self):
        return self._action_open_jobs(
            self.env._("Running Jobs of %s", self.complete_name), list(RUNNING_STATES)
        )

    def action_open_pending_jobs(self):
        return self._action_open_jobs(
            self.env._("Pending Jobs of %s", self.complete_name), [PENDING]
        )

    @api.constrains("parent_id", "name")
    def _check_parent(self):
        for channel in self:
            if channel.name == "root" and channel.parent_id:
                raise exceptions.ValidationError(self.env._("The root channel has no parent"))
            if channel.name != "root" and not channel.parent_id:
                raise exceptions.ValidationError(
                    self.env._("Channel %s needs a parent channel", channel.name)
                )

    @api.model
    def channel_exists(self, complete_name):
        return complete_name in self._channel_names()

    @tools.ormcache()
    def _channel_names(self):
        self.env.cr.execute("SELECT complete_name FROM queue_job_channel")
        return frozenset(row[0] for row in self.env.cr.fetchall())

    def _same_record(self, vals):
        return self.search(
            [("name", "=", vals.get("name")), ("parent_id", "=", vals.get("parent_id", False))],
            limit=1,
        )

    def write(self, vals):
        renamed = "name" in vals and vals["name"] != "root"
        if renamed and any(channel.name == "root" for channel in self):
            raise exceptions.UserError(self.env._("The root channel cannot be renamed"))
        return super().write(vals)

    @api.ondelete(at_uninstall=False)
    def _unlink_except_root(self):
        if any(channel.name == "root" for channel in self):
            raise exceptions.UserError(self.env._("The root channel cannot be deleted"))
