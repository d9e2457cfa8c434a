# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The ``queue.job`` model: fields, views' actions (Set Done, Requeue, Run Now...)
and OCA's hooks.

Over 400 lines: OCA's client addons inherit and override this one model
(its fields, ``_change_job_state``, the failure hooks), so its API stays on
one class; the SQL it runs lives in ``core/``, running a job in
``execution.py``.
"""

import psycopg2

from odoo import SUPERUSER_ID, api, exceptions, fields, models
from odoo.sql_db import connection_info_for
from odoo.tools import SQL

from .. import execution
from ..core import claim, schema, transitions
from ..job import (
    CANCELLED,
    DONE,
    ENQUEUED,
    FAILED,
    PENDING,
    STARTED,
    STATES,
    WAIT_DEPENDENCIES,
    Job,
)

MANAGER_GROUP = "queue_job.group_queue_job_manager"

# The states each action moves a job from. A job in another state is left as
# it is, and the action says so.
SET_DONE_FROM = (WAIT_DEPENDENCIES, PENDING, ENQUEUED, FAILED, CANCELLED)
SET_FAILED_FROM = (WAIT_DEPENDENCIES, PENDING, ENQUEUED)
CANCEL_FROM = (WAIT_DEPENDENCIES, PENDING, ENQUEUED, STARTED, FAILED)
REQUEUE_FROM = (FAILED, CANCELLED, DONE)
RUN_NOW_FROM = (PENDING, ENQUEUED, FAILED)
# The states a trusted write() of ``state`` (Job.store()) moves a job from.
STORE_DONE_FROM = (WAIT_DEPENDENCIES, PENDING, ENQUEUED, STARTED, FAILED, CANCELLED)
STORE_FAILED_FROM = (WAIT_DEPENDENCIES, PENDING, ENQUEUED, STARTED)
STORE_CANCELLED_FROM = (WAIT_DEPENDENCIES, PENDING, ENQUEUED, STARTED, FAILED)
STORE_STARTED_FROM = (PENDING, ENQUEUED)


class QueueJob(models.Model):
    """A stored job.

    Jobs are written by ``with_delay()``/``delay()`` and by the state
    transitions (``core/transitions.py``). ``create``/``write`` are refused, but
    to trusted server code that passes :attr:`EDIT_SENTINEL` in the
    ``_job_edit_sentinel`` context key (OCA's API); even then a job's state
    changes through the transitions only.
    """

    _name = "queue.job"
    _description = "Queue Job"
    _inherit = ["mail.thread", "mail.activity.mixin"]
    _log_access = False
    _order = "date_created DESC, id DESC"

    _removal_interval = 30  # days, default of a channel's removal interval
    _removal_batch_size = 1000  # jobs the autovacuum deletes per transaction
    _default_related_action = "related_action_open_record"

    # Passed in the ``_job_edit_sentinel`` context key, it lets server code
    # create jobs and write the protected fields. An RPC context is JSON: it
    # cannot carry this object.
    EDIT_SENTINEL = object()

    # What a job is (OCA's list, and what ours derives from it): written by
    # trusted code only (see EDIT_SENTINEL). The rest (state, priority, eta,
    # channel, ...) a queue manager may write, a state through the transitions.
    _protected_fields = frozenset(
        {
            "uuid", "name", "date_created", "model_name", "method_name", "func_string",
            "channel_method_name", "job_function_id", "records", "args", "kwargs",
            "record_ids", "graph_uuid", "identity_key", "user_id", "company_id",
        }
    )

    uuid = fields.Char(string="UUID", readonly=True, index=True, required=True)
    graph_uuid = fields.Char(string="Graph UUID", readonly=True, index=True)
    name = fields.Char(string="Description", readonly=True)
    model_name = fields.Char(string="Model", readonly=True)
    method_name = fields.Char(readonly=True)
    func_string = fields.Char(string="Task", readonly=True, groups=MANAGER_GROUP)
    records = fields.Json(readonly=True, groups=MANAGER_GROUP)
    record_ids = fields.Json(string="Record IDs", readonly=True)
    args = fields.Json(string="Arguments", readonly=True, groups=MANAGER_GROUP)
    kwargs = fields.Json(string="Keyword Arguments", readonly=True, groups=MANAGER_GROUP)
    user_id = fields.Many2one("res.users", string="User", readonly=True, index=True)
    company_id = fields.Many2one("res.company", string="Company", readonly=True, index=True)
    state = fields.Selection(STATES, readonly=True, required=True, index=True)
    priority = fields.Integer(readonly=True)
    eta = fields.Datetime(string="Execute only after", readonly=True)
    retry = fields.Integer(string="Current try", readonly=True)
    max_retries = fields.Integer(
        readonly=True, help="The job fails after this many tries; 0: retry forever"
    )
    timeout = fields.Float(
        string="Time Limit (s)",
        readonly=True,
        help="Seconds the job may run before the runner stops it (its own or its job "
        "function's); empty: its channel's, if the runner's configuration sets one",
    )
    channel = fields.Char(readonly=True, index=True)
    job_function_id = fields.Many2one("queue.job.function", string="Job Function", readonly=True)
    identity_key = fields.Char(readonly=True)
    result = fields.Text(readonly=True)
    exc_name = fields.Char(string="Exception", readonly=True)
    exc_message = fields.Text(string="Exception Message", readonly=True)
    exc_info = fields.Text(string="Exception Info", readonly=True, groups=MANAGER_GROUP)
    date_created = fields.Datetime(string="Created Date", readonly=True)
    date_enqueued = fields.Datetime(string="Enqueue Time", readonly=True)
    date_started = fields.Datetime(string="Start Date", readonly=True)
    date_done = fields.Datetime(readonly=True)
    exec_time = fields.Float(string="Execution Time (s)", readonly=True, aggregator="avg")
    dependency_job_ids = fields.Many2many(
        "queue.job",
        "queue_job_dependency",
        "job_id",
        "dependency_id",
        string="Waits For",
        readonly=True,
    )
    dependent_job_ids = fields.Many2many(
        "queue.job",
        "queue_job_dependency",
        "dependency_id",
        "job_id",
        string="Waited For By",
        readonly=True,
    )
    # OCA's names of the same edges.
    dependency_ids = fields.Many2many(related="dependency_job_ids", string="Depends On")
    dependent_ids = fields.Many2many(related="dependent_job_ids", string="Dependents")
    # OCA's stored form of the edges, read from them here.
    dependencies = fields.Json(
        compute="_compute_dependencies",
        help='The UUIDs of the jobs this one waits for ("depends_on") and of '
        'those waiting for it ("reverse_depends_on")',
    )
    pending_dependency_count = fields.Integer(
        string="Dependencies Left",
        readonly=True,
        default=0,
        help="Dependencies not done yet; the job becomes pending at 0",
    )
    related_action_enable = fields.Boolean(
        string="Related Action Enabled", compute="_compute_related_action_enable"
    )
    graph_jobs_count = fields.Integer(string="Graph Jobs", compute="_compute_graph_jobs_count")
    channel_method_name = fields.Char(
        string="Complete Method Name",
        compute="_compute_channel_method_name",
        help="The name of the job's function: <model>.method",
    )
    date_cancelled = fields.Datetime(
        compute="_compute_date_cancelled", help="When the job was cancelled"
    )

    _uuid_uniq = models.Constraint("UNIQUE(uuid)", "A job with this UUID already exists")

    def init(self):
        schema.ensure(self.env.cr)

    def _compute_related_action_enable(self):
        for job in self:
            job.related_action_enable = job._job_function_config().related_action_enable

    @api.depends("graph_uuid")
    def _compute_graph_jobs_count(self):
        graph_uuids = [uuid for uuid in self.mapped("graph_uuid") if uuid]
        counts = dict(
            self._read_group([("graph_uuid", "in", graph_uuids)], ["graph_uuid"], ["__count"])
        )
        for job in self:
            job.graph_jobs_count = counts.get(job.graph_uuid, 0)

    @api.depends("dependency_job_ids.uuid", "dependent_job_ids.uuid")
    def _compute_dependencies(self):
        for job in self:
            job.dependencies = {
                "depends_on": job.dependency_job_ids.mapped("uuid"),
                "reverse_depends_on": job.dependent_job_ids.mapped("uuid"),
            }

    @api.depends("model_name", "method_name")
    def _compute_channel_method_name(self):
        functions = self.env["queue.job.function"]
        for job in self:
            job.channel_method_name = functions.job_function_name(job.model_name, job.method_name)

    @api.depends("state", "date_done")
    def _compute_date_cancelled(self):
        # A job's end, whatever it is, is its date_done.
        for job in self:
            job.date_cancelled = job.date_done if job.state == CANCELLED else False

    # ------------------------------------------------------------------
    # Protection: jobs are created by trusted code only; what a job is, too,
    # is written by trusted code only
    # ------------------------------------------------------------------

    # Not even trusted code writes these: the transitions keep them exact.
    _graph_fields = frozenset(
        {
            "dependency_job_ids", "dependent_job_ids", "dependency_ids", "dependent_ids",
            "pending_dependency_count",
        }
    )

    def _edit_trusted(self):
        return self.env.context.get("_job_edit_sentinel") is self.EDIT_SENTINEL

    def _check_writable(self, names):
        refused = self._graph_fields
        if not self._edit_trusted():
            refused = refused | self._protected_fields
        refused = refused.intersection(names)
        if refused:
            raise exceptions.AccessError(
                self.env._(
                    "Jobs' %(fields)s cannot be written; use the job actions",
                    fields=", ".join(sorted(refused)),
                )
            )

    @api.model_create_multi
    def create(self, vals_list):
        if not self._edit_trusted():
            raise exceptions.AccessError(
                self.env._("Jobs are created with with_delay() or delayable(), not create()")
            )
        for vals in vals_list:
            self._check_writable(vals)
        return super(
            QueueJob, self.with_context(mail_create_nolog=True, mail_create_nosubscribe=True)
        ).create(vals_list)

    def write(self, vals):
        self._check_writable(vals)
        if "state" in vals:
            vals = dict(vals)
            self._write_state(vals.pop("state"), vals)
        return super().write(vals)

    def _write_state(self, state, vals):
        """Move these jobs to ``state`` through the transitions (a trusted write()).

        ``vals`` (the rest of the write) gives the result, the exception and
        the eta of the move. Jobs already in ``state`` are left as they are;
        a move no transition makes raises.
        """
        moving = self.filtered(lambda job: job.state != state)
        if state in (PENDING, WAIT_DEPENDENCIES):
            # Which of the two a job waits in is its counter's business.
            moving = moving.filtered(lambda job: job.state not in (PENDING, WAIT_DEPENDENCIES))
        if not moving:
            return
        exc = {name: vals.get(name) or None for name in ("exc_name", "exc_message", "exc_info")}
        if state == DONE:
            moved = moving._transition(
                transitions.mark_done, STORE_DONE_FROM, result=vals.get("result") or None
            )
        elif state == FAILED:
            moved = moving._transition(transitions.mark_failed, STORE_FAILED_FROM, **exc)
            moved._message_post_on_failure()
        elif state == CANCELLED:
            moved = moving._transition(
                transitions.mark_cancelled, STORE_CANCELLED_FROM, message=exc["exc_message"]
            )
        elif state in (PENDING, WAIT_DEPENDENCIES):
            eta = fields.Datetime.to_datetime(vals.get("eta"))
            delay = max(0.0, (eta - fields.Datetime.now()).total_seconds()) if eta else 0
            # A running job is retried later; an ended one is requeued.
            moved = moving._transition(transitions.retry_later, delay, **exc)
            moved |= moving._transition(transitions.requeue, REQUEUE_FROM)
        elif state == STARTED:
            moved = moving._transition(transitions.start, STORE_STARTED_FROM)
        else:
            moved = self.browse()
        stuck = moving - moved
        if stuck:
            raise exceptions.UserError(
                self.env._(
                    "Jobs cannot go from %(states)s to %(state)s: %(jobs)s",
                    states=", ".join(sorted(set(stuck.mapped("state")))),
                    state=state,
                    jobs=", ".join(stuck.mapped("uuid")),
                )
            )

    # ------------------------------------------------------------------
    # Actions: set-based, through the shared transitions
    # ------------------------------------------------------------------

    # What the transitions write on the jobs they move.
    _transition_fields = (
        "state", "result", "exc_name", "exc_message", "exc_info", "eta", "retry",
        "date_enqueued", "date_started", "date_done", "exec_time",
    )

    def _transition(self, transition, *args, **kwargs):
        """Apply ``transition`` to these jobs; returns the jobs it moved."""
        self.check_access("write")
        self.env.flush_all()
        moved = self.browse(transition(self.env.cr, self.ids, *args, **kwargs))
        # The transitions wrote in SQL: what the cache holds of jobs is stale,
        # and so are the fields of other models computed from the moved jobs
        # (a recordset's "jobs' global state", say), as after an ORM write.
        self.invalidate_model()
        moved.modified(self._transition_fields)
        return moved

    def _set_done(self, result=None):
        result = result or self.env._("Manually set to done by %s", self.env.user.name)
        return self._transition(transitions.mark_done, SET_DONE_FROM, result=result)

    def _set_failed(self, exc_message=None):
        exc_message = exc_message or self.env._(
            "Manually set to failed by %s", self.env.user.name
        )
        return self._transition(
            transitions.mark_failed, SET_FAILED_FROM, exc_message=exc_message
        )

    def _set_cancelled(self, message=None):
        message = message or self.env._("Cancelled by %s", self.env.user.name)
        return self._transition(transitions.mark_cancelled, CANCEL_FROM, message=message)

    def _requeue(self):
        return self._transition(transitions.requeue, REQUEUE_FROM)

    def _action_result(self, moved, done_message):
        """A notification: what moved, and what was skipped because of its state."""
        skipped = len(self) - len(moved)
        message = done_message % len(moved)
        if skipped:
            message += " " + self.env._(
                "%s job(s) skipped: their state does not allow it.", skipped
            )
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "message": message,
                "type": "warning" if skipped else "success",
                "sticky": False,
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }

    def button_done(self):
        """Set Done: releases the jobs that wait on these."""
        return self._action_result(self._set_done(), self.env._("%s job(s) set to done."))

    def button_failed(self):
        """Set Failed: the jobs that wait on these fail too."""
        return self._action_result(self._set_failed(), self.env._("%s job(s) set to failed."))

    def button_cancelled(self):
        """Cancel: the jobs that wait on these are cancelled too; a running one is
        stopped by its runner, its writes rolled back."""
        return self._action_result(self._set_cancelled(), self.env._("%s job(s) cancelled."))

    def requeue(self):
        """Requeue: run again (after their dependencies, if any is not done)."""
        return self._action_result(self._requeue(), self.env._("%s job(s) requeued."))

    def _change_job_state(self, state, result=None):
        """Move these jobs to ``state``: done, pending (requeued) or cancelled.

        OCA's helper, through the same transitions as the buttons: jobs whose
        state does not allow the move are left as they are. Returns the jobs
        moved.
        """
        if state == DONE:
            return self._set_done(result)
        if state == CANCELLED:
            return self._set_cancelled(result)
        if state == PENDING:
            if result is not None:
                raise ValueError("A requeued job has no result: call _change_job_state(PENDING)")
            return self._requeue()
        raise ValueError(f"State not supported: {state!r}; use done, pending or cancelled")

    def run_now(self):
        """Run Now: run these jobs in this transaction, as their users.

        A job that fails keeps none of its writes and is recorded failed; its
        dependents fail with it. A job still waiting for dependencies is
        skipped.
        """
        started = self._transition(transitions.start, RUN_NOW_FROM)
        dbname = self.env.cr.dbname
        # Started jobs need their liveness lock, as in the runner: a job
        # allowed to commit would otherwise show 'started' with no lock and be
        # rescued while it runs. The locks live on a connection of their own,
        # closed when the jobs are over, whatever happened to this
        # transaction. Jobs allowed to commit run last: the first one commits
        # what the others recorded, and each records its own outcome in a
        # committed transaction. Each lock is dropped when its job is over:
        # its outcome is committed, or written by this transaction, whose
        # row locks hold off a rescue and the claims until it commits.
        jobs = sorted(
            (Job._from_record(record.sudo()) for record in started),
            key=lambda job_: job_.job_config.allow_commit,
        )
        with claim.liveness_locks_elsewhere(
            lambda: psycopg2.connect(**connection_info_for(dbname)[1]), started.ids
        ) as locks_cr:
            for job_ in jobs:
                execution.run_started(job_)
                claim.drop_liveness_lock(locks_cr, job_.id)
        self.invalidate_model()
        return self._action_result(started, self.env._("%s job(s) run."))

    # ------------------------------------------------------------------
    # Related action and notifications
    # ------------------------------------------------------------------

    def _job_function_config(self):
        """The :class:`JobConfig` of the job's function."""
        self.ensure_one()
        functions = self.env["queue.job.function"]
        return functions.job_config(
            self.job_function_id.name
            or functions.job_function_name(self.model_name, self.method_name)
        )

    def open_graph_jobs(self):
        """The jobs of this job's graph, as a removable search facet."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Jobs of the Graph"),
            "res_model": "queue.job",
            "view_mode": "list,form",
            "views": [(False, "list"), (False, "form")],
            "context": {"search_default_graph_uuid": self.graph_uuid},
        }

    def open_related_action(self):
        """The action of the job function's related action (default: open the records)."""
        config = self._job_function_config()
        action = None
        if config.related_action_enable:
            method = getattr(self, config.related_action_func_name or self._default_related_action)
            action = method(**config.related_action_kwargs)
        if action is None:
            raise exceptions.UserError(self.env._("No action available for this job"))
        return action

    def related_action_open_record(self):
        """Open the records the job works on: a form for one, a list for several."""
        self.ensure_one()
        if self.model_name not in self.env:
            return None
        records = self.env[self.model_name].browse(self.record_ids or []).exists()
        if not records:
            return None
        action = {
            "type": "ir.actions.act_window",
            "name": self.env._("Related Record"),
            "res_model": self.model_name,
        }
        if len(records) == 1:
            action.update(view_mode="form", res_id=records.id)
        else:
            action.update(
                name=self.env._("Related Records"),
                view_mode="list,form",
                domain=[("id", "in", records.ids)],
            )
        return action

    def _message_post_on_failure(self):
        """Tell whom it concerns that these jobs failed (OCA's hook).

        Subscribes the users of :meth:`_subscribe_users_domain`, and the job's
        user if :meth:`_subscribe_job_creator` says so, then posts
        :meth:`_message_failed_job` with the "Job Failed" subtype, which
        followers can mute. Override those three to change who is told what.
        """
        # As OdooBot: the runner fails a job in an environment of the job's
        # user, and mail never notifies the user who posts a message.
        jobs = self.with_user(SUPERUSER_ID)
        domain = jobs._subscribe_users_domain()
        users_of_domain = jobs.env["res.users"]
        if domain is not None:
            users_of_domain = users_of_domain.search(domain)
        subscribe_creator = jobs._subscribe_job_creator()
        for job in jobs:
            users = users_of_domain
            if subscribe_creator:
                users |= job.user_id
            job.message_subscribe(partner_ids=users.partner_id.ids)
            body = job._message_failed_job()
            if body:
                job.message_post(body=body, subtype_xmlid="queue_job.mt_job_failed")

    def _subscribe_users_domain(self):
        """The users to subscribe to failed jobs: the queue managers of the
        jobs' companies. ``None``: nobody (besides the job's user)."""
        group = self.env.ref(MANAGER_GROUP, raise_if_not_found=False)
        if not group:
            return None
        domain = [("all_group_ids", "in", group.ids)]
        if self.company_id:
            domain.append(("company_id", "in", self.company_id.ids))
        return domain

    @api.model
    def _subscribe_job_creator(self):
        """Whether the job's user follows a failed job, besides the users of
        :meth:`_subscribe_users_domain`."""
        return True

    def _message_failed_job(self):
        """The message posted on this job when it fails; nothing is posted if
        it is empty."""
        self.ensure_one()
        return self.env._(
            "The job failed: %(exception)s", exception=self.exc_message or self.exc_name
        )

    def _needaction_domain_get(self):
        """The jobs that need an action: the failed ones."""
        return [("state", "=", FAILED)]

    # ------------------------------------------------------------------
    # Clean-up
    # ------------------------------------------------------------------

    @api.ondelete(at_uninstall=False)
    def _unlink_except_awaited(self):
        """A job others still wait for cannot go: they would wait forever."""
        self.env.cr.execute(
            """
            SELECT 1 FROM queue_job_dependency e JOIN queue_job j ON j.id = e.job_id
             WHERE e.dependency_id = ANY(%(ids)s) AND NOT e.released
               AND j.state = 'wait_dependencies' AND NOT j.id = ANY(%(ids)s)
             LIMIT 1
            """,
            {"ids": self.ids},
        )
        if self.env.cr.fetchone():
            raise exceptions.UserError(
                self.env._(
                    "Some of these jobs are awaited by other jobs: delete those "
                    "too, or cancel the jobs first."
                )
            )

    @api.autovacuum
    def _gc_old_jobs(self):
        """Delete done and cancelled jobs older than their channel's removal interval.

        Jobs of a channel that no longer exists follow root's interval. One
        batch per call: the autovacuum commits, then calls again while this
        returns that jobs are left, so a large backlog never makes one huge
        transaction.
        """
        self.env.flush_all()
        root_interval = self.env.ref("queue_job.channel_root").removal_interval
        self.env.cr.execute(
            SQL(
                """
                SELECT j.id FROM queue_job j
                  LEFT JOIN queue_job_channel c ON c.complete_name = j.channel
                 WHERE j.state IN ('done', 'cancelled')
                   AND j.date_done < %(now)s
                       - make_interval(days => COALESCE(c.removal_interval, %(root)s))
                 LIMIT %(limit)s
                """,
                now=SQL(schema.NOW_UTC),
                root=root_interval,
                limit=self._removal_batch_size + 1,
            )
        )
        ids = [row[0] for row in self.env.cr.fetchall()]
        batch = ids[: self._removal_batch_size]
        self.browse(batch).sudo().unlink()
        return len(batch), len(ids) > len(batch)
