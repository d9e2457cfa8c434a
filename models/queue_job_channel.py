# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
import re

from odoo import api, exceptions, fields, models, tools

from ..job import PENDING
from ..core import claim
from ..core.channels import (
    ROOT,
    SOURCE_DATABASE,
    SOURCE_DEFAULT,
    SOURCE_ENVIRONMENT,
    SOURCE_FILE,
    ChannelsConfigError,
    configured_channels,
)
from ..core.states import RUNNING_STATES

#: The fields of a channel's record that the runners apply (``queue_job_channels``).
RUNNER_FIELDS = ("capacity", "sequential", "rate_limit", "paused")


class QueueJobChannel(models.Model):
    """A channel of the tree under ``root``; jobs run within its capacity.

    Its capacity, sequential and paused flags and rate limit apply on every
    runner of the database at once, unless the runners' channels setting
    (``root:4,root.mail:1``) names the channel: the setting overrides the
    record then (see ``core/channels.py``).
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
    # What the runners apply, unless their channels setting names the channel.
    capacity = fields.Integer(
        default=0,
        help="Jobs of this channel and its sub-channels that may run at once; 0: no limit "
        "of its own (its jobs count against the channels above it). Root's is the number "
        "of jobs run at once on this database. The runners apply a change within a second, "
        "unless their channels setting names this channel.",
    )
    sequential = fields.Boolean(
        help="Run the jobs one at a time, in order, and wait while one of them is failed "
        "(the capacity must be 1)",
    )
    rate_limit = fields.Integer(
        string="Rate Limit",
        default=0,
        help="Jobs of this channel and its sub-channels that may start in any 60 seconds, "
        "across all runners; 0: no limit",
    )
    paused = fields.Boolean(
        help="Start no job of this channel nor of its sub-channels; running jobs finish",
    )
    # Live figures, computed on read: they are the runners' setting merged
    # with the records, and the jobs' states at this moment, not data to store.
    capacity_in_force = fields.Integer(
        string="Capacity in Force",
        compute="_compute_in_force",
        help="The capacity the runners apply: the record's, or the one of the runners' "
        "channels setting (ODOO_QUEUE_JOB_CHANNELS or the channels key of the "
        "[queue_job] section of the Odoo configuration file) when it names this channel",
    )
    capacity_note = fields.Char(compute="_compute_in_force")
    setting_in_force = fields.Char(
        string="In Force",
        compute="_compute_in_force",
        help="The channel's values that the runners apply, in the syntax of the channels "
        "setting (name:capacity:options)",
    )
    setting_source = fields.Selection(
        [
            (SOURCE_DATABASE, "Database (this record)"),
            (SOURCE_ENVIRONMENT, "Environment (ODOO_QUEUE_JOB_CHANNELS)"),
            (SOURCE_FILE, "Configuration file ([queue_job] channels)"),
            (SOURCE_DEFAULT, "Default"),
        ],
        string="Source",
        compute="_compute_in_force",
        help="Where the values in force come from",
    )
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

    def init(self):
        # Root's record of a database updated from a version without
        # capacities: the default of the channels setting, root:1.
        self.env.cr.execute(
            "UPDATE queue_job_channel SET capacity = 1 WHERE complete_name = %s AND capacity = 0",
            (ROOT,),
        )

    @api.depends("name", "parent_id.complete_name")
    def _compute_complete_name(self):
        for channel in self:
            parent = channel.parent_id.complete_name
            channel.complete_name = f"{parent}.{channel.name}" if parent else channel.name

    @api.model
    def _channels_in_force(self):
        """The channels the runners apply: their setting merged with the
        records (``claim.channels_in_force``); raise ChannelsConfigError."""
        configured = configured_channels(tools.config["config"])
        self.flush_model(["complete_name", *RUNNER_FIELDS])
        return claim.channels_in_force(self.env.cr, configured)

    def _compute_in_force(self):
        try:
            in_force = self._channels_in_force()
        except ChannelsConfigError as err:
            self.capacity_in_force = 0
            self.capacity_note = str(err)
            self.setting_in_force = self.setting_source = False
            return
        for channel in self:
            entry = in_force.channels.get(channel.complete_name)
            channel.setting_in_force = entry and str(entry)
            channel.setting_source = entry and entry.source
            channel.capacity_in_force = (entry and entry.capacity) or 0
            if channel.capacity_in_force:
                channel.capacity_note = False
                continue
            # Without a capacity of its own, a channel's jobs use the slots of
            # its nearest ancestor that has one.
            shared = in_force.channel_of(channel.complete_name)
            channel.capacity_note = self.env._(
                "No capacity of its own: its jobs use the capacity of %(channel)s (%(capacity)s)",
                channel=shared,
                capacity=in_force.capacities[shared],
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

    @api.constrains("name", "capacity", "sequential", "rate_limit")
    def _check_capacity(self):
        for channel in self:
            if channel.capacity < 0 or channel.rate_limit < 0:
                raise exceptions.ValidationError(
                    self.env._(
                        "Channel %s: the capacity and the rate limit are 0 (no limit) or more",
                        channel.complete_name,
                    )
                )
            if channel.name == ROOT and channel.capacity < 1:
                raise exceptions.ValidationError(
                    self.env._(
                        "The root channel's capacity is the number of jobs run at once: "
                        "at least 1 (pause it to run none)"
                    )
                )
            if channel.sequential and channel.capacity != 1:
                raise exceptions.ValidationError(
                    self.env._(
                        "Channel %(channel)s is sequential: its capacity must be 1,"
                        " not %(capacity)s",
                        channel=channel.complete_name,
                        capacity=channel.capacity,
                    )
                )

    def action_pause(self):
        """Pause the channels: their jobs, and those of the channels under them, start no more."""
        self.paused = True

    def action_resume(self):
        """Resume the channels: the runners start their jobs again at once."""
        self.paused = False

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
