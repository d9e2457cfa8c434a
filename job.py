# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""A job: a method call on a recordset, stored to run later.

:class:`Job` validates a call when it is delayed (bad input raises at the
call site and stores nothing), stores jobs and the edges between them in a
few multi-row statements, and runs a stored job as its user.
"""

import hashlib
import json
import logging
import os
import random
import traceback
import uuid as uuidlib
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import psycopg2
from psycopg2.extras import Json

from odoo import SUPERUSER_ID, api, models

from . import serialization, transitions
from .exception import (
    ChannelNotFound,
    FailedJobError,
    NoSuchJobError,
    NothingToDoJob,
    RetryableJobError,
)
from .schema import NOW_UTC, WAITING_SQL, WAITING_STATES

_logger = logging.getLogger(__name__)

WAIT_DEPENDENCIES = "wait_dependencies"
PENDING = "pending"
ENQUEUED = "enqueued"
STARTED = "started"
DONE = "done"
CANCELLED = "cancelled"
FAILED = "failed"

STATES = [
    (WAIT_DEPENDENCIES, "Wait Dependencies"),
    (PENDING, "Pending"),
    (ENQUEUED, "Enqueued"),
    (STARTED, "Started"),
    (DONE, "Done"),
    (CANCELLED, "Cancelled"),
    (FAILED, "Failed"),
]

DEFAULT_PRIORITY = 10  # lower runs first
DEFAULT_MAX_RETRIES = 5  # 0 means retry forever
RETRY_INTERVAL = 10 * 60  # seconds, when no retry pattern applies
CONCURRENCY_RETRY_INTERVAL = 5  # seconds, after a deadlock or serialization failure

# Multi-row inserts are sent in chunks of this many rows: large enough to
# amortise the round trip, small enough to keep each statement cheap to build.
INSERT_CHUNK = 1000

_JOB_COLUMNS = (
    "uuid",
    "graph_uuid",
    "name",
    "model_name",
    "method_name",
    "func_string",
    "records",
    "record_ids",
    "args",
    "kwargs",
    "user_id",
    "company_id",
    "state",
    "priority",
    "eta",
    "retry",
    "max_retries",
    "channel",
    "job_function_id",
    "identity_key",
    "pending_dependency_count",
)


#: What a loaded Job keeps of its row as is.
_STATE_FIELDS = (
    "uuid", "graph_uuid", "priority", "max_retries", "eta", "channel",
    "identity_key", "state", "id", "retry", "result",
)
#: The fields a Job is loaded from.
_LOADED_FIELDS = (*_STATE_FIELDS, "records", "args", "kwargs", "model_name", "method_name", "name")


def identity_exact(job_):
    """Identity key of a job: same model, method, records and arguments.

    Usage: ``record.with_delay(identity_key=identity_exact).method(...)``.
    """
    hasher = hashlib.sha1()
    hasher.update(job_.model_name.encode())
    hasher.update(job_.method_name.encode())
    hasher.update(str(sorted(job_.recordset.ids)).encode())
    hasher.update(json.dumps(job_.encoded_args, sort_keys=True).encode())
    hasher.update(json.dumps(job_.encoded_kwargs, sort_keys=True).encode())
    return hasher.hexdigest()


def _check_non_negative_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _eta_datetime(eta):
    """A naive UTC datetime (Odoo's convention) from a datetime, a timedelta or
    seconds from now; an aware datetime is converted to UTC."""
    if eta is None:
        return None
    if isinstance(eta, datetime):
        if eta.tzinfo:
            return eta.astimezone(timezone.utc).replace(tzinfo=None)
        return eta
    if isinstance(eta, timedelta):
        return _utcnow() + eta
    if isinstance(eta, (int, float)) and not isinstance(eta, bool):
        return _utcnow() + timedelta(seconds=eta)
    raise ValueError(
        f"eta must be a datetime, a timedelta or a number of seconds, got {eta!r}"
    )


class Job:
    """A delayed call of ``func`` (a method bound to a recordset).

    Building one validates the call; :meth:`store_many` writes it. A job
    loaded from the database (:meth:`load`) carries its stored state too.
    """

    def __init__(
        self,
        func,
        args=None,
        kwargs=None,
        priority=None,
        eta=None,
        max_retries=None,
        description=None,
        channel=None,
        identity_key=None,
    ):
        recordset = func.__self__
        if not isinstance(recordset, models.BaseModel):
            raise TypeError(f"{func!r} is not a method of a recordset")
        self.recordset = recordset
        self.env = recordset.env
        self.method_name = func.__name__
        self.args = tuple(args or ())
        self.kwargs = dict(kwargs or {})
        self.encoded_args = serialization.encode(list(self.args), "args")
        self.encoded_kwargs = serialization.encode(self.kwargs, "kwargs")
        self.encoded_records = serialization.encode(recordset, "records")
        self.priority = _check_non_negative_int(
            "priority", DEFAULT_PRIORITY if priority is None else priority
        )
        self.max_retries = _check_non_negative_int(
            "max_retries", DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        )
        self.eta = _eta_datetime(eta)
        self.description = description
        job_function = self.env["queue.job.function"]
        self.job_config = job_function.job_config(
            job_function.job_function_name(recordset._name, self.method_name)
        )
        self.channel = channel or self.job_config.channel
        if not self.env["queue.job.channel"].channel_exists(self.channel):
            raise ChannelNotFound(
                f"Channel {self.channel!r} does not exist: create it in "
                "Job Queue > Channels (or in XML data) before delaying jobs in it"
            )
        self.uuid = str(uuidlib.uuid4())
        self.graph_uuid = None
        self.depends_on = set()
        self.reverse_depends_on = set()
        self.state = PENDING
        self.id = None
        self.retry = 0
        self.result = None
        self.identity_key = identity_key(self) if callable(identity_key) else identity_key

    # ------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------

    @property
    def model_name(self):
        return self.recordset._name

    @property
    def func(self):
        return getattr(self.recordset, self.method_name)

    @property
    def func_string(self):
        arguments = [repr(arg) for arg in self.args]
        arguments += [f"{key}={value!r}" for key, value in self.kwargs.items()]
        return f"{self.recordset!r}.{self.method_name}({', '.join(arguments)})"

    def db_record(self):
        return self.env["queue.job"].browse(self.id)

    def __repr__(self):
        return f"<Job {self.uuid}, priority:{self.priority}>"

    @classmethod
    def load(cls, env, job_uuid):
        """The stored job ``job_uuid``, its arguments bound to ``env``'s cursor."""
        record = env["queue.job"].sudo().search([("uuid", "=", job_uuid)], limit=1)
        if not record:
            raise NoSuchJobError(f"Job {job_uuid} does not exist")
        return cls._from_record(record)

    @classmethod
    def _from_record(cls, record):
        return cls._from_values(record.env, {name: record[name] for name in _LOADED_FIELDS})

    @classmethod
    def _from_values(cls, env, values):
        """The job of a stored row: ``values`` maps the names of ``_LOADED_FIELDS``
        to their values as the ORM reads them (psycopg2 reads them the same)."""
        recordset = serialization.decode(values["records"], env)
        job_ = cls.__new__(cls)
        job_.recordset = recordset
        job_.env = recordset.env
        job_.method_name = values["method_name"]
        job_.args = tuple(serialization.decode(values["args"] or [], env))
        job_.kwargs = serialization.decode(values["kwargs"] or {}, env)
        job_.encoded_args = values["args"] or []
        job_.encoded_kwargs = values["kwargs"] or {}
        job_.encoded_records = values["records"]
        function = env["queue.job.function"]
        job_.job_config = function.job_config(
            function.job_function_name(values["model_name"], job_.method_name)
        )
        for field in _STATE_FIELDS:
            setattr(job_, field, values[field])
        job_.description = values["name"]
        job_.depends_on = set()
        job_.reverse_depends_on = set()
        return job_

    # ------------------------------------------------------------------
    # Storing
    # ------------------------------------------------------------------

    def _row(self):
        deps = len(self.depends_on)
        return (
            self.uuid,
            self.graph_uuid,
            self.description or self.func_string,
            self.model_name,
            self.method_name,
            self.func_string,
            Json(self.encoded_records),
            Json(self.recordset.ids),
            Json(self.encoded_args),
            Json(self.encoded_kwargs),
            self.env.uid,
            self.env.company.id,
            WAIT_DEPENDENCIES if deps else PENDING,
            self.priority,
            self.eta,
            0,
            self.max_retries,
            self.channel,
            self.job_config.job_function_id,
            self.identity_key,
            deps,
        )

    @classmethod
    def store_many(cls, env, jobs):
        """Insert ``jobs`` and the edges of their ``depends_on`` in few statements.

        A job with an ``identity_key`` that matches a job still waiting to
        run is not inserted: it takes the existing job's place (its ``id``,
        ``uuid`` and ``state``). The unique index on the identity key makes
        this hold for concurrent transactions too.
        """
        env["queue.job"].flush_model()
        adopted = []
        remaining = jobs
        while remaining:
            left_out = cls._insert(env.cr, remaining)
            remaining = cls._adopt_existing(env, left_out)
            adopted += [job_ for job_ in left_out if job_.id is not None]
        edges = [(job_.id, dep.id) for job_ in jobs for dep in job_.depends_on]
        for start in range(0, len(edges), INSERT_CHUNK):
            chunk = edges[start : start + INSERT_CHUNK]
            env.cr.execute(
                "INSERT INTO queue_job_dependency (job_id, dependency_id) VALUES "
                + ", ".join(["(%s, %s)"] * len(chunk)),
                [value for edge in chunk for value in edge],
            )
        # A job of no graph adopted as a dependency joins this one: the
        # runner releases dependents right after the jobs of a graph only.
        joining = [job_ for job_ in adopted if job_.reverse_depends_on]
        if joining:
            env.cr.execute(
                "UPDATE queue_job SET graph_uuid = %s WHERE id = ANY(%s) AND graph_uuid IS NULL",
                (joining[0].graph_uuid, [job_.id for job_ in joining]),
            )

    @staticmethod
    def _insert(cr, jobs):
        """Insert ``jobs``; return those left out because their identity key is taken."""
        placeholders = f"({', '.join(['%s'] * len(_JOB_COLUMNS))}, {NOW_UTC})"
        left_out = []
        for start in range(0, len(jobs), INSERT_CHUNK):
            chunk = jobs[start : start + INSERT_CHUNK]
            cr.execute(
                f"""
                INSERT INTO queue_job ({", ".join(_JOB_COLUMNS)}, date_created)
                VALUES {", ".join([placeholders] * len(chunk))}
                ON CONFLICT (identity_key)
                   WHERE identity_key IS NOT NULL AND state IN {WAITING_SQL}
                DO NOTHING
                RETURNING uuid, id
                """,
                [value for job_ in chunk for value in job_._row()],
            )
            inserted = dict(cr.fetchall())
            for job_ in chunk:
                job_.id = inserted.get(job_.uuid)
                job_.state = WAIT_DEPENDENCIES if job_.depends_on else PENDING
                if job_.id is None:
                    left_out.append(job_)
        return left_out

    @staticmethod
    def _adopt_existing(env, jobs):
        """Give each of ``jobs`` the waiting job that holds its identity key.

        Returns the jobs whose key holder left the waiting states between the
        insert and this read: they must be inserted after all (their ``id``
        stays None).
        """
        if not jobs:
            return []
        env.cr.execute(
            "SELECT identity_key, id, uuid, state FROM queue_job "
            "WHERE identity_key = ANY(%s) AND state = ANY(%s)",
            ([job_.identity_key for job_ in jobs], list(WAITING_STATES)),
        )
        existing = {row[0]: row[1:] for row in env.cr.fetchall()}
        vanished = []
        for job_ in jobs:
            if job_.identity_key in existing:
                job_.id, job_.uuid, job_.state = existing[job_.identity_key]
            else:
                vanished.append(job_)
        return vanished

    # ------------------------------------------------------------------
    # Running
    # ------------------------------------------------------------------

    def perform(self):
        """Call the method with its arguments and return its result."""
        recordset = self.recordset.with_context(job_uuid=self.uuid)
        with self._commit_guard():
            return getattr(recordset, self.method_name)(*self.args, **self.kwargs)

    @contextmanager
    def _commit_guard(self):
        """Forbid ``cr.commit()`` in jobs whose function does not allow it.

        A job that commits half-way cannot be rolled back when it fails, and
        its retry would do the committed half twice.
        """
        if self.job_config.allow_commit:
            yield
            return
        cr = self.env.cr

        def forbidden_commit():
            raise RuntimeError(
                f"Job {self.uuid}: commit is forbidden in this job; set "
                f"'Allow Commit' on job function {self.model_name}.{self.method_name} "
                "if it must commit"
            )

        # The cursor may already carry an instance-level commit (a test's
        # patch, say): put back exactly what was there.
        previous = vars(cr).get("commit")
        cr.commit = forbidden_commit
        try:
            yield
        finally:
            if previous is None:
                del cr.commit
            else:
                cr.commit = previous

    def retry_seconds(self, seconds=None):
        """Delay before the next try: ``seconds``, else the retry pattern's."""
        if seconds is not None:
            return seconds
        pattern = self.job_config.retry_pattern or {}
        for tries in sorted(pattern, reverse=True):
            if self.retry >= tries:
                seconds = pattern[tries]
                # (min, max): spread the retries of many failing jobs
                return random.randint(*seconds) if isinstance(seconds, tuple) else seconds
        return RETRY_INTERVAL

    def _result_text(self, result):
        return None if result is None else str(result)

    def record_failure(self, err):
        """Fail the job (and its dependents) for ``err``; runs in a clean
        transaction. Then calls the job function's on-fail method, if any."""
        _record_failure(self.env, self.id, err)
        if self.job_config.on_fail_method_name:
            self.on_fail(_exc_values(err))

    def on_fail(self, fail_vals):
        """Call the on-fail method on the job's records with ``fail_vals``
        (``exc_name``, ``exc_message``, ``exc_info``). If it raises, its
        writes are rolled back and the error logged; the job stays failed."""
        try:
            with self.env.cr.savepoint():
                getattr(self.recordset, self.job_config.on_fail_method_name)(**fail_vals)
        except Exception:  # noqa: BLE001 - the job's failure is recorded already
            _logger.exception("On-fail method of job %s failed", self.uuid)

    def record_retry(self, err):
        """Postpone the job after a retryable error, or fail it if it is out of tries."""
        if getattr(err, "ignore_retry", False):
            # This try does not count: give back the one the claim took.
            self.retry -= 1
            self.env.cr.execute(
                "UPDATE queue_job SET retry = retry - 1 WHERE id = %s", (self.id,)
            )
        if self.max_retries and self.retry >= self.max_retries:
            failure = FailedJobError(f"Max. retries ({self.max_retries}) reached: {err}")
            self.record_failure(failure)
            return
        transitions.retry_later(
            self.env.cr,
            [self.id],
            self.retry_seconds(getattr(err, "seconds", None)),
            **_exc_values(err),
        )

    def execute(self):
        """Run this claimed job and record the outcome, as the jobrunner does.

        The job's writes and its own move to ``done`` commit together, in
        Odoo's usual REPEATABLE READ transaction. The release of its
        dependents, or the record of its failure or retry, follows in a READ
        COMMITTED transaction, where concurrent workers releasing the same
        callback queue up on its row instead of failing to serialize (see
        :func:`transitions.read_committed`). A crash between the two leaves
        unreleased edges that the runner's rescue releases later.
        """
        cr = self.env.cr
        try:
            try:
                result = self._result_text(self.perform())
            except NothingToDoJob as err:
                result = str(err) or "Nothing to do: job set to done"
            self.env.flush_all()
            moved = transitions.mark_done(
                cr, [self.id], (STARTED,), result=result, release=False
            )
            if not moved:
                cr.rollback()
                _logger.error(
                    "Job %s was no longer started by this worker when it ended "
                    "(requeued by a peer?): its writes were rolled back",
                    self.uuid,
                )
                return
            cr.commit()
            if self.graph_uuid:  # only a job of a graph can have dependents
                transitions.read_committed(cr)
                transitions.release_dependents(cr, [self.id])
                cr.commit()
        except (RetryableJobError, psycopg2.errors.TransactionRollbackError) as err:
            if isinstance(err, psycopg2.Error):
                err = RetryableJobError(str(err), seconds=CONCURRENCY_RETRY_INTERVAL)
            with _outcome_transaction(cr):
                self.record_retry(err)
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            raise  # the connection is gone: the runner reconnects, rescue requeues
        except Exception as err:
            _logger.info("Job %s failed", self.uuid, exc_info=True)
            with _outcome_transaction(cr):
                self.record_failure(err)


def execute_claimed_job(cr, row):
    """Run the job of ``row`` (its ``queue_job`` row as a dict, as the claim
    returns it), just claimed on ``cr``, as its user; commit its outcome.

    Called by the jobrunner with an Odoo cursor. Raises only when the
    database connection fails.
    """
    env = api.Environment(cr, SUPERUSER_ID, {})
    try:
        job_ = Job._from_values(env, row)
    except Exception as err:  # noqa: BLE001 - recorded on the job
        # It cannot even be loaded (its model is gone with its module, say):
        # no later try would do better.
        _logger.info("Job %s cannot be loaded", row["uuid"], exc_info=True)
        with _outcome_transaction(cr):
            _record_failure(env, row["id"], err)
        return
    job_.execute()


@contextmanager
def _outcome_transaction(cr):
    """Drop the job's transaction, then record its outcome in a READ COMMITTED
    transaction of its own (see :meth:`Job.execute`), committed on leaving."""
    cr.rollback()
    transitions.read_committed(cr)
    yield
    cr.commit()


def _exc_values(err):
    """The exception fields of a job, for ``err`` being handled."""
    return {
        "exc_name": f"{type(err).__module__}.{type(err).__qualname__}",
        "exc_message": str(err),
        "exc_info": traceback.format_exc(),
    }


def _record_failure(env, job_id, err):
    """Fail started job ``job_id`` (and its dependents) for ``err``; tell whom it concerns."""
    transitions.mark_failed(env.cr, [job_id], (STARTED,), **_exc_values(err))
    env["queue.job"].sudo().browse(job_id)._message_post_on_failure()


def run_inline(jobs):
    """Run ``jobs`` (not stored, in dependency order) now, in the caller's transaction.

    The no-delay mode (``QUEUE_JOB__NO_DELAY`` or the ``queue_job__no_delay``
    context key): errors propagate to the caller as they would without jobs.
    """
    for job_ in jobs:
        job_.result = job_.perform()
        job_.state = DONE


def must_run_without_delay(env):
    """True when jobs run inline instead of being stored (OCA's switches)."""
    if os.environ.get("QUEUE_JOB__NO_DELAY"):
        _logger.warning("QUEUE_JOB__NO_DELAY is set: jobs run inline, none is stored")
        return True
    return bool(env.context.get("queue_job__no_delay"))
