# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
import collections
import functools
import time
from contextlib import closing

import psycopg2

from odoo import fields, models
from odoo.sql_db import connection_info_for

from odoo.addons.queue_job.core.claim import LOCK_NAMESPACE
from odoo.addons.queue_job.exception import (
    FailedJobError,
    NothingToDoJob,
    RetryableJobError,
)
from odoo.addons.queue_job.fields import JobSerialized

#: First key of the advisory locks of ``hold_a_slot``: not queue_job's namespace.
SLOT_LOCK_NAMESPACE = 1_903_520_355


# Runs of fail_to_serialize, by job uuid: kept across the rollbacks of its failures.
SERIALIZATION_FAILURES = collections.Counter()


class TestQueueJob(models.Model):
    """Records whose methods the tests delay."""

    _name = "test.queue.job"
    _description = "Test model for queue_job"

    name = fields.Char()
    counter = fields.Integer()
    log_ids = fields.One2many("test.queue.job.log", "record_id")
    serialized = JobSerialized(base_type=dict)
    serialized_records = JobSerialized(base_type=models.BaseModel)
    # As OCA clients follow their jobs (connector_importer's recordsets).
    job_id = fields.Many2one("queue.job")
    job_state = fields.Selection(related="job_id.state")

    def record_call(self, tag, *args, **kwargs):
        """Log that the job ran (tag, arguments, user, context); return the tag."""
        for record in self:
            record.env["test.queue.job.log"].create(
                {
                    "record_id": record.id,
                    "tag": tag,
                    "arguments": repr((args, kwargs)),
                    "job_uuid": self.env.context.get("job_uuid"),
                    "run_as_uid": self.env.uid,
                    "run_lang": self.env.context.get("lang"),
                }
            )
        return tag

    def record_call_or_fail(self, tag):
        """Fail for good while the record is named 'broken', else ``record_call``."""
        if "broken" in self.mapped("name"):
            raise FailedJobError(f"{tag}: record is broken")
        return self.record_call(tag)

    def increment(self, step=1):
        for record in self:
            record.counter += step
        return self.mapped("counter")

    def echo(self, *args, **kwargs):
        """Return the arguments as received, for round-trip checks."""
        return args, kwargs

    def client_import(self, *args):
        """A job whose function and channel are declared as OCA's clients do
        (data/queue_job_oca_client_data.xml)."""
        return args

    def client_export(self):
        """Another one, in a channel with dots in its name."""
        return self.ids

    def client_fail(self, message, retryable=False):
        """Fails; its function calls ``on_client_failure`` then (client data)."""
        raise (RetryableJobError if retryable else ValueError)(message)

    def on_client_failure(self, exc_name=None, exc_message=None, exc_info=None):
        self.record_call("on fail", exc_name=exc_name, exc_message=exc_message)

    def fail(self, message="boom"):
        self.write({"name": "written before failing"})
        raise ValueError(message)

    def fail_for_good(self, message="fatal"):
        raise FailedJobError(message)

    def retry_later(self, message="try again", seconds=None, ignore_retry=False):
        self.write({"name": "written before retrying"})
        raise RetryableJobError(message, seconds=seconds, ignore_retry=ignore_retry)

    def nothing_to_do(self, message="nothing to do here"):
        raise NothingToDoJob(message)

    def commit_inside(self):
        self.env.cr.commit()

    def liveness_locks_held(self):
        """The ids of the jobs whose liveness lock a session holds now (its
        job function allows commits, so Run Now runs it as the runner does)."""
        self.env.cr.execute(
            """
            SELECT objid::int FROM pg_locks
             WHERE locktype = 'advisory' AND objsubid = 2 AND classid = %s::oid
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
             ORDER BY 1
            """,
            (LOCK_NAMESPACE,),
        )
        return [job_id for (job_id,) in self.env.cr.fetchall()]

    def committed_state(self):
        """The state of this job that other transactions see now."""
        dbname = self.env.cr.dbname
        with closing(psycopg2.connect(**connection_info_for(dbname)[1])) as conn:
            with conn.cursor() as cr:
                cr.execute(
                    "SELECT state FROM queue_job WHERE uuid = %s", (self.env.context["job_uuid"],)
                )
                return cr.fetchone()[0]

    def exceed_statement_timeout(self):
        """Fail with the server's QueryCanceled, on a connection that stays up."""
        self.write({"name": "written before the timeout"})
        self.env.cr.execute("SET LOCAL statement_timeout = 10")
        self.env.cr.execute("SELECT pg_sleep(1)", log_exceptions=False)

    def fail_to_serialize(self, times):
        """Fail with a serialization failure (SQLSTATE 40001, raised by the
        server) in the first ``times`` runs of the job, then succeed."""
        self.write({"name": "written before failing to serialize"})
        job_uuid = self.env.context.get("job_uuid")
        SERIALIZATION_FAILURES[job_uuid] += 1
        if SERIALIZATION_FAILURES[job_uuid] <= times:
            self.env.cr.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'could not serialize access'"
                " USING ERRCODE = 'serialization_failure'; END $$",
                log_exceptions=False,
            )
        return SERIALIZATION_FAILURES[job_uuid]

    def sleep(self, seconds):
        time.sleep(seconds)

    def increment_then_sleep(self, seconds):
        """Write (flushed to the database, not committed), then sleep."""
        self.increment()
        self.env.flush_all()
        time.sleep(seconds)

    def hold_a_slot(self, slots, seconds):
        """Take the first free one of ``slots`` numbered slots until the job's
        transaction ends, then sleep ``seconds``; log it with ``record_call``.

        The tag is ``slot N``, or ``no free slot`` when more than ``slots``
        jobs held one at once. A slot is an advisory lock of the transaction,
        tried without waiting.
        """
        for slot in range(slots):
            self.env.cr.execute(
                "SELECT pg_try_advisory_xact_lock(%s, %s)", (SLOT_LOCK_NAMESPACE, slot)
            )
            if self.env.cr.fetchone()[0]:
                tag = f"slot {slot}"
                break
        else:
            tag = "no free slot"
        time.sleep(seconds)
        return self.record_call(tag)

    def session_user(self):
        """The database role the job runs as, and how it reached the server."""
        self.env.cr.execute("SELECT session_user, inet_client_addr()::text")
        return self.env.cr.fetchone()

    # Methods patched by _patch_job_auto_delay (in _register_hook)

    def delay_me(self, arg, kwarg=None):
        return arg, kwarg

    def delay_me_options_job_options(self):
        return {"identity_key": "my_job_identity", "priority": 3}

    def delay_me_options(self):
        return "ok"

    def delay_me_context_key(self):
        return "ok"

    def _register_hook(self):
        cls = type(self)
        cls.delay_me = functools.update_wrapper(
            self._patch_job_auto_delay("delay_me"), cls.delay_me
        )
        cls.delay_me_options = functools.update_wrapper(
            self._patch_job_auto_delay("delay_me_options"), cls.delay_me_options
        )
        cls.delay_me_context_key = functools.update_wrapper(
            self._patch_job_auto_delay(
                "delay_me_context_key", context_key="auto_delay_delay_me_context_key"
            ),
            cls.delay_me_context_key,
        )
        return super()._register_hook()

    def _job_store_values(self, job):
        """Stored with every job of this model (``additional_info``)."""
        return {"additional_info": f"{job.method_name} {job.state}"}

    def _job_store_values_for_echo(self, job):
        return {"additional_info": f"echo of {len(job.args)} argument(s)"}


class TestQueueJobLog(models.Model):
    """One line per run of ``record_call``: what ran, in which order, as whom."""

    _name = "test.queue.job.log"
    _description = "Runs of test jobs"
    _order = "id"

    record_id = fields.Many2one("test.queue.job", ondelete="cascade")
    tag = fields.Char()
    arguments = fields.Char()
    job_uuid = fields.Char()
    run_as_uid = fields.Integer()
    run_lang = fields.Char()


class QueueJob(models.Model):
    """A field an addon adds to jobs, filled by ``_job_store_values``."""

    _inherit = "queue.job"

    additional_info = fields.Char()
