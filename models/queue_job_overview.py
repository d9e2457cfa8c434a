# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Job Queue > Overview: the state of each channel, and jobs ended per minute.

Two read-only models on SQL views, recomputed on every read by grouped
queries over indexed columns (``state``, ``channel``, ``date_done``): see
readme/DEVELOP.md for what they cost on a million jobs.
"""

import datetime

import babel.dates

from odoo import api, fields, models
from odoo.tools import SQL
from odoo.tools.misc import babel_locale_parse, get_lang

from ..core import schema
from ..core.channels import ChannelsConfigError
from ..core.states import DONE, FAILED, PENDING, RUNNING_STATES, WAIT_DEPENDENCIES

#: The states counted per channel; the ends counted in the last hour and per minute.
_COUNTED_STATES = (*RUNNING_STATES, PENDING, WAIT_DEPENDENCIES, FAILED)
_ENDED_STATES = (DONE, FAILED)
#: The time of the read, in UTC as Odoo stores datetimes. Not
#: ``schema.NOW_UTC``: ``clock_timestamp()`` is volatile, and a comparison
#: with it cannot use the index on ``date_done``; ``now()`` is stable.
_READ_TIME_UTC = "(now() AT TIME ZONE 'UTC')"


class QueueJobChannelOverview(models.Model):
    """One row per channel: its jobs by state, those of its sub-channels included
    (as its capacity counts them), and its configured capacity."""

    _name = "queue.job.channel.overview"
    _description = "Job Channel Overview"
    _auto = False
    _order = "name"

    channel_id = fields.Many2one("queue.job.channel", string="Channel", readonly=True)
    name = fields.Char(string="Channel Name", readonly=True)
    running_count = fields.Integer(string="Running", readonly=True)
    pending_count = fields.Integer(string="Pending", readonly=True)
    waiting_count = fields.Integer(
        string="Waiting", readonly=True, help="Jobs waiting for their dependencies"
    )
    failed_count = fields.Integer(string="Failed", readonly=True)
    done_last_hour_count = fields.Integer(string="Done in the Last Hour", readonly=True)
    failed_last_hour_count = fields.Integer(string="Failed in the Last Hour", readonly=True)
    oldest_pending_date = fields.Datetime(
        string="Oldest Pending Since", readonly=True,
        help="When the oldest pending job of the channel was created",
    )
    oldest_pending_age = fields.Char(
        string="Oldest Pending", compute="_compute_oldest_pending_age",
        help="How long the oldest pending job of the channel has been waiting",
    )
    capacity = fields.Integer(
        compute="_compute_capacity",
        help="Jobs of the channel and its sub-channels that may run at once; "
        "0: no limit of its own (it shares the capacity of its parent)",
    )
    paused = fields.Boolean(compute="_compute_capacity", help="The channel starts no job")

    @property
    def _table_query(self):
        # Jobs are counted per job channel, over the partial and state
        # indexes, then summed up the tree: a channel counts those of its
        # sub-channels, as its capacity does (``schema.under``).
        return SQL(
            f"""
            WITH by_channel AS (
                SELECT j.channel,
                       count(*) FILTER (WHERE j.state IN %(running)s) AS running,
                       count(*) FILTER (WHERE j.state = %(pending)s) AS pending,
                       count(*) FILTER (WHERE j.state = %(waiting)s) AS waiting,
                       count(*) FILTER (WHERE j.state = %(failed)s) AS failed,
                       0 AS done_last_hour, 0 AS failed_last_hour,
                       min(j.date_created) FILTER (WHERE j.state = %(pending)s) AS oldest_pending
                  FROM queue_job j
                 WHERE j.state IN %(counted)s
                 GROUP BY j.channel
                UNION ALL
                SELECT j.channel, 0, 0, 0, 0,
                       count(*) FILTER (WHERE j.state = %(done)s),
                       count(*) FILTER (WHERE j.state = %(failed)s),
                       NULL
                  FROM queue_job j
                 WHERE j.state IN %(ended)s AND j.date_done >= {_READ_TIME_UTC} - interval '1 hour'
                 GROUP BY j.channel
            )
            SELECT c.id, c.id AS channel_id, c.complete_name AS name,
                   COALESCE(sum(b.running), 0)::integer AS running_count,
                   COALESCE(sum(b.pending), 0)::integer AS pending_count,
                   COALESCE(sum(b.waiting), 0)::integer AS waiting_count,
                   COALESCE(sum(b.failed), 0)::integer AS failed_count,
                   COALESCE(sum(b.done_last_hour), 0)::integer AS done_last_hour_count,
                   COALESCE(sum(b.failed_last_hour), 0)::integer AS failed_last_hour_count,
                   min(b.oldest_pending) AS oldest_pending_date
              FROM queue_job_channel c
              LEFT JOIN by_channel b
                ON {schema.under("b.channel", "c.complete_name")}
             GROUP BY c.id, c.complete_name
            """,
            running=RUNNING_STATES,
            pending=PENDING,
            waiting=WAIT_DEPENDENCIES,
            failed=FAILED,
            done=DONE,
            counted=_COUNTED_STATES,
            ended=_ENDED_STATES,
        )

    @api.model
    def _effective_capacity(self, channel_names):
        """{channel name: (capacity, paused)} in force, as the channel records
        say them (the runners' setting merged with the records); a capacity
        of 0 is no limit of its own. A setting the runner cannot read gives
        every channel 0."""
        try:
            channels = self.env["queue.job.channel"]._channels_in_force().channels
        except ChannelsConfigError:
            channels = {}
        return {
            name: (channels[name].capacity or 0, channels[name].paused)
            if name in channels
            else (0, False)
            for name in channel_names
        }

    def _compute_capacity(self):
        capacities = self._effective_capacity(self.mapped("name"))
        for row in self:
            row.capacity, row.paused = capacities[row.name]

    @api.depends("oldest_pending_date")
    def _compute_oldest_pending_age(self):
        now = fields.Datetime.now()
        locale = babel_locale_parse(get_lang(self.env).code)
        for row in self:
            since = row.oldest_pending_date
            row.oldest_pending_age = since and babel.dates.format_timedelta(
                now - since, locale=locale
            )

    # The jobs behind each number: the channel's own actions, whose domain
    # (the channel and its sub-channels) is the one counted here.
    def action_open_running_jobs(self):
        return self.channel_id.action_open_running_jobs()

    def action_open_pending_jobs(self):
        return self.channel_id.action_open_pending_jobs()

    def action_open_waiting_jobs(self):
        return self.channel_id._action_open_jobs(
            self.env._("Jobs of %s Waiting for Dependencies", self.name), [WAIT_DEPENDENCIES]
        )

    def action_open_failed_jobs(self):
        return self.channel_id._action_open_jobs(
            self.env._("Failed Jobs of %s", self.name), [FAILED]
        )

    def _action_open_last_hour_jobs(self, name, state):
        action = self.channel_id._action_open_jobs(name, [state])
        since = fields.Datetime.now() - datetime.timedelta(hours=1)
        action["domain"] = action["domain"] + [("date_done", ">=", since)]
        return action

    def action_open_done_last_hour_jobs(self):
        return self._action_open_last_hour_jobs(
            self.env._("Jobs of %s Done in the Last Hour", self.name), DONE
        )

    def action_open_failed_last_hour_jobs(self):
        return self._action_open_last_hour_jobs(
            self.env._("Jobs of %s Failed in the Last Hour", self.name), FAILED
        )


class QueueJobThroughput(models.Model):
    """Jobs done and failed in each minute of the last 24 hours, a row per
    minute and state, minutes without any job included (as 0)."""

    _name = "queue.job.throughput"
    _description = "Jobs Ended per Minute"
    _auto = False
    _order = "date_minute, state"

    date_minute = fields.Datetime(string="Minute Start", readonly=True)
    minute = fields.Char(
        readonly=True, help="The minute, in the user's time zone when jobs are grouped by it"
    )
    state = fields.Selection([(DONE, "Done"), (FAILED, "Failed")], readonly=True)
    job_count = fields.Integer(string="Jobs", readonly=True, aggregator="sum")

    @property
    def _table_query(self):
        return SQL(
            f"""
            WITH bounds AS (
                SELECT date_trunc('minute', {_READ_TIME_UTC}) - interval '1439 minutes' AS since
            ), ended AS (
                SELECT date_trunc('minute', j.date_done) AS date_minute, j.state,
                       count(*) AS job_count
                  FROM queue_job j
                 WHERE j.state IN %(ended)s AND j.date_done >= (SELECT since FROM bounds)
                 GROUP BY 1, 2
            )
            SELECT (extract(epoch FROM m.date_minute)::bigint / 60 * 2
                    + (s.state = %(failed)s)::int)::integer AS id,
                   m.date_minute, to_char(m.date_minute, 'YYYY-MM-DD HH24:MI') AS minute,
                   s.state, COALESCE(e.job_count, 0)::integer AS job_count
              FROM bounds
             CROSS JOIN generate_series(bounds.since, bounds.since + interval '1439 minutes',
                                        interval '1 minute') AS m(date_minute)
             CROSS JOIN unnest(%(ended_array)s::varchar[]) AS s(state)
              LEFT JOIN ended e ON e.date_minute = m.date_minute AND e.state = s.state
            """,
            ended=_ENDED_STATES,
            ended_array=list(_ENDED_STATES),
            failed=FAILED,
        )

    def _read_group_groupby(self, alias, groupby_spec, query):
        # The graph groups by minute, finer than Odoo's datetime granularities
        # (an hour at most): the label of the minute in the user's time zone.
        if groupby_spec != "minute":
            return super()._read_group_groupby(alias, groupby_spec, query)
        date_minute = self._fields["date_minute"]
        local = date_minute.property_to_sql(
            self._field_to_sql(alias, "date_minute", query), "tz", self, alias, query
        )
        return SQL("to_char(%s, 'YYYY-MM-DD HH24:MI')", local)
