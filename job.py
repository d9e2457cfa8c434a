# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""A job: a method call on a recordset, stored to run later.

:class:`Job` validates a call when it is delayed (bad input raises at the
call site and stores nothing), stores jobs and the edges between them in a
few multi-row statements, and calls the job's method (:meth:`Job.perform`).
Running a stored job and recording its outcome is ``execution.py``'s.

Over 400 lines: ``Job`` is OCA's one class, whose public surface (``load``,
``store``, the ``set_*`` methods, ``perform``, the properties) other addons
call and override on it, and the value and its storage are one idea.
"""

import hashlib
import inspect
import logging
import os
import random
import uuid as uuidlib
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from psycopg2.extras import Json

from odoo import models

from . import serialization
from .core import transitions
from .exception import (
    ChannelNotFound,
    FailedJobError,
    NoSuchJobError,
    RetryableJobError,
)
from .core.schema import NOW_UTC

# OCA's names of the states, importable from here
from .core.states import (  # noqa: F401
    CANCELLED,
    DONE,
    ENQUEUED,
    FAILED,
    PENDING,
    QUEUED_SQL,
    QUEUED_STATES,
    STARTED,
    STATES,
    WAIT_DEPENDENCIES,
)
from .utils import must_run_without_delay  # noqa: F401 - OCA imports it from here too

_logger = logging.getLogger(__name__)

DEFAULT_PRIORITY = 10  # lower runs first
DEFAULT_MAX_RETRIES = 5  # 0 means retry forever
RETRY_INTERVAL = 10 * 60  # seconds, when no retry pattern applies
CONCURRENCY_RETRY_INTERVAL = 5  # seconds, after a deadlock or serialization failure

# Multi-row inserts are sent in chunks of this many rows: large enough to
# amortise the round trip, small enough to keep each statement cheap to build.
INSERT_CHUNK = 1000

#: The columns a job is inserted with, and where each value comes from
#: (``Job._row()``): one list, so that the two cannot drift apart.
_INSERTED = (
    ("uuid", lambda job_: job_.uuid),
    ("graph_uuid", lambda job_: job_.graph_uuid),
    ("name", lambda job_: job_.description),
    ("model_name", lambda job_: job_.model_name),
    ("method_name", lambda job_: job_.method_name),
    ("func_string", lambda job_: job_.func_string),
    ("records", lambda job_: Json(job_.encoded_records)),
    ("record_ids", lambda job_: Json(job_.recordset.ids)),
    ("args", lambda job_: Json(job_.encoded_args)),
    ("kwargs", lambda job_: Json(job_.encoded_kwargs)),
    ("user_id", lambda job_: job_.env.uid),
    ("company_id", lambda job_: job_.company_id or None),
    ("state", lambda job_: WAIT_DEPENDENCIES if job_.depends_on else PENDING),
    ("priority", lambda job_: job_.priority),
    ("eta", lambda job_: job_.eta),
    ("retry", lambda job_: 0),
    ("max_retries", lambda job_: job_.max_retries),
    ("timeout", lambda job_: job_.timeout),
    ("channel", lambda job_: job_.channel),
    ("job_function_id", lambda job_: job_.job_config.job_function_id),
    ("identity_key", lambda job_: job_.identity_key),
    ("pending_dependency_count", lambda job_: len(job_.depends_on)),
)
_JOB_COLUMNS = tuple(column for column, _value in _INSERTED)


#: What a loaded Job keeps of its row as is.
_STATE_FIELDS = (
    "uuid", "graph_uuid", "priority", "max_retries", "timeout", "eta", "channel",
    "identity_key", "state", "id", "retry", "result", "exc_name", "exc_message",
    "exc_info", "date_created", "date_enqueued", "date_started", "date_done",
)
#: The fields a Job is loaded from.
_LOADED_FIELDS = (
    *_STATE_FIELDS, "records", "args", "kwargs", "model_name", "method_name", "name",
    "company_id",
)
#: Columns that the ``_job_store_values`` hooks cannot set: the job's own.
_CORE_FIELDS = frozenset(
    {*_LOADED_FIELDS, *_JOB_COLUMNS, "exec_time", "dependency_job_ids", "dependent_job_ids"}
)

# ``datetime`` as imported: tests patch this module's ``datetime`` to fix "now"
# (as OCA's do), which must not break the type checks.
_DATETIME = datetime


def identity_exact(job_):
    """Identity key of a job: same model, method, records and arguments.

    Usage: ``record.with_delay(identity_key=identity_exact).method(...)``.
    The key is OCA's, byte for byte: a database switched from OCA's
    queue_job keeps deduplicating against the jobs OCA stored.
    """
    return identity_exact_hasher(job_).hexdigest()


def identity_exact_hasher(job_):
    """The sha1 hasher fed with what :func:`identity_exact` hashes.

    For identity functions of one's own: add more to it, then ``hexdigest()``.
    """
    hasher = hashlib.sha1()
    hasher.update(job_.model_name.encode("utf-8"))
    hasher.update(job_.method_name.encode("utf-8"))
    hasher.update(str(sorted(job_.recordset.ids)).encode("utf-8"))
    hasher.update(str(job_.args).encode("utf-8"))
    hasher.update(str(sorted(job_.kwargs.items())).encode("utf-8"))
    return hasher


def _check_non_negative_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _check_timeout(timeout):
    """A job's time limit: None (none of its own) or a positive number of seconds."""
    if timeout is None:
        return None
    if (
        not isinstance(timeout, (int, float))
        or isinstance(timeout, bool)
        or not 0 < timeout < float("inf")
    ):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def _utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _eta_datetime(eta):
    """A naive UTC datetime (Odoo's convention) from a datetime, a timedelta or
    seconds from now; an aware datetime is converted to UTC."""
    if eta is None:
        return None
    if isinstance(eta, timedelta):
        return _utcnow() + eta
    if isinstance(eta, (int, float)) and not isinstance(eta, bool):
        return _utcnow() + timedelta(seconds=eta)
    if isinstance(eta, _DATETIME):
        if eta.tzinfo:
            return eta.astimezone(timezone.utc).replace(tzinfo=None)
        return eta
    raise ValueError(
        f"eta must be a datetime, a timedelta or a number of seconds, got {eta!r}"
    )


class Job:
    """A delayed call of ``func`` (a method bound to a recordset).

    Building one validates the call; :meth:`store` (or :meth:`store_many`)
    writes it. A job loaded from the database (:meth:`load`) carries its
    stored state too; the ``set_*`` methods change that state in memory and
    :meth:`store` writes it, through the same transitions as the job actions.
    """

    def __init__(
        self,
        func,
        args=None,
        kwargs=None,
        priority=None,
        eta=None,
        job_uuid=None,
        max_retries=None,
        description=None,
        channel=None,
        identity_key=None,
        timeout=None,
    ):
        if not (inspect.ismethod(func) and isinstance(func.__self__, models.BaseModel)):
            raise TypeError(f"{func!r} is not a method of a recordset")
        if not isinstance(args, (tuple, list, type(None))):
            raise TypeError(f"args must be a tuple or a list, got {args!r}")
        if not isinstance(kwargs, (dict, type(None))):
            raise TypeError(f"kwargs must be a dict, got {kwargs!r}")
        recordset = func.__self__
        self.recordset = recordset
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
        self.eta = eta
        self.description = description
        timeout = _check_timeout(timeout)
        self.job_config = self._function_config(recordset._name)
        #: Seconds the job may run: its own limit, else its function's; None
        #: leaves it to its channel's (the runner's configuration).
        self.timeout = timeout if timeout is not None else self.job_config.timeout
        self.channel = channel or self.job_config.channel
        if not self.env["queue.job.channel"].channel_exists(self.channel):
            raise ChannelNotFound(
                f"Channel {self.channel!r} does not exist: create it in "
                "Job Queue > Channels (or in XML data) before delaying jobs in it"
            )
        self.uuid = job_uuid or str(uuidlib.uuid4())
        self.graph_uuid = None
        self._depends_on = set()
        self._reverse_depends_on = set()
        self.state = PENDING
        self.id = None
        self.retry = 0
        self.result = None
        self.exc_name = self.exc_message = self.exc_info = None
        self.date_created = _utcnow()
        self.date_enqueued = self.date_started = self.date_done = None
        self.date_cancelled = None
        self.worker_pid = None
        # OCA's rule: a company_id in the context (even None) wins.
        context = self.env.context
        self.company_id = context["company_id"] if "company_id" in context else self.env.company.id
        self.identity_key = identity_key

    # ------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------

    @property
    def env(self):
        return self.recordset.env

    @property
    def model_name(self):
        return self.recordset._name

    @property
    def user_id(self):
        """The id of the user the job runs as."""
        return self.env.uid

    @property
    def func(self):
        """The method, bound to the records with ``job_uuid`` in their context."""
        return getattr(self.recordset.with_context(job_uuid=self.uuid), self.method_name)

    @property
    def func_string(self):
        arguments = [repr(arg) for arg in self.args]
        arguments += [f"{key}={value!r}" for key, value in self.kwargs.items()]
        return f"{self.recordset!r}.{self.method_name}({', '.join(arguments)})"

    @property
    def job_function_name(self):
        return self.env["queue.job.function"].job_function_name(self.model_name, self.method_name)

    @property
    def description(self):
        """The given description, else the first line of the method's
        docstring, else ``model.method``."""
        if self._description:
            return self._description
        doc = getattr(type(self.recordset), self.method_name).__doc__
        if doc and doc.strip():
            return doc.strip().splitlines()[0].strip()
        return f"{self.model_name}.{self.method_name}"

    @description.setter
    def description(self, value):
        self._description = value

    @property
    def eta(self):
        return self._eta

    @eta.setter
    def eta(self, value):
        """A datetime (UTC), a timedelta or seconds from now, or None."""
        self._eta = _eta_datetime(value or None)

    @property
    def identity_key(self):
        """The key given, or what the identity function given returns for this job."""
        if self._identity_key is None and self._identity_key_func is not None:
            self._identity_key = self._identity_key_func(self)
        return self._identity_key

    @identity_key.setter
    def identity_key(self, value):
        if callable(value):
            self._identity_key, self._identity_key_func = None, value
        else:
            self._identity_key, self._identity_key_func = value or None, None

    @property
    def exec_time(self):
        """Seconds from start to end of the run, once done."""
        if self.date_done and self.date_started:
            return (self.date_done - self.date_started).total_seconds()
        return None

    @property
    def depends_on(self):
        """The jobs this one waits for (read from the database for a loaded job)."""
        if self._depends_on is None:
            self._depends_on = self._load_related("dependency_job_ids")
        return self._depends_on

    @depends_on.setter
    def depends_on(self, jobs):
        self._depends_on = set(jobs)

    @property
    def reverse_depends_on(self):
        """The jobs that wait for this one (read from the database for a loaded job)."""
        if self._reverse_depends_on is None:
            self._reverse_depends_on = self._load_related("dependent_job_ids")
        return self._reverse_depends_on

    @reverse_depends_on.setter
    def reverse_depends_on(self, jobs):
        self._reverse_depends_on = set(jobs)

    def _load_related(self, field_name):
        return {self._from_record(record) for record in self.db_record()[field_name]}

    def _function_config(self, model_name):
        function = self.env["queue.job.function"]
        return function.job_config(function.job_function_name(model_name, self.method_name))

    def db_record(self):
        """The ``queue.job`` record of this job (as superuser), empty if not stored."""
        if self.id is not None:
            return self.env["queue.job"].sudo().browse(self.id)
        return self.db_records_from_uuids(self.env, [self.uuid])

    def related_action(self):
        """The action of the job's "Related" button (None when the function has none)."""
        return self.db_record().open_related_action()

    def job_record_with_same_identity_key(self):
        """The stored job still waiting to run that has this job's identity key."""
        return (
            self.env["queue.job"]
            .sudo()
            .search(
                [("identity_key", "=", self.identity_key), ("state", "in", QUEUED_STATES)],
                limit=1,
            )
        )

    def __eq__(self, other):
        if not isinstance(other, Job):
            return NotImplemented
        return self.uuid == other.uuid

    def __hash__(self):
        return hash(self.uuid)

    def __repr__(self):
        return f"<Job {self.uuid}, priority:{self.priority}>"

    @staticmethod
    def db_records_from_uuids(env, job_uuids):
        """The ``queue.job`` records of ``job_uuids`` (as superuser)."""
        return env["queue.job"].sudo().search([("uuid", "in", list(job_uuids))])

    @classmethod
    def load(cls, env, job_uuid):
        """The stored job ``job_uuid``, its arguments bound to ``env``'s cursor."""
        record = cls.db_records_from_uuids(env, [job_uuid])
        if not record:
            raise NoSuchJobError(f"Job {job_uuid} does not exist")
        return cls._from_record(record)

    @classmethod
    def load_many(cls, env, job_uuids):
        """The set of stored jobs of ``job_uuids``; uuids of no job are left out."""
        return {cls._from_record(record) for record in cls.db_records_from_uuids(env, job_uuids)}

    @classmethod
    def _from_record(cls, record):
        values = {name: record[name] for name in _LOADED_FIELDS}
        values["company_id"] = record.company_id.id
        for name, value in values.items():
            if value is False and name not in ("args", "kwargs", "records"):
                values[name] = None  # the ORM's False for an empty column
        return cls._from_values(record.env, values)

    @classmethod
    def _from_values(cls, env, values):
        """The job of a stored row: ``values`` maps the names of ``_LOADED_FIELDS``
        to their values as the ORM reads them (psycopg2 reads them the same)."""
        recordset = serialization.decode(values["records"], env)
        job_ = cls.__new__(cls)
        job_.recordset = recordset
        job_.method_name = values["method_name"]
        job_.args = tuple(serialization.decode(values["args"] or [], env))
        job_.kwargs = serialization.decode(values["kwargs"] or {}, env)
        job_.encoded_args = values["args"] or []
        job_.encoded_kwargs = values["kwargs"] or {}
        job_.encoded_records = values["records"]
        job_.job_config = job_._function_config(values["model_name"])
        job_._eta = None
        job_._identity_key_func = None
        for field in _STATE_FIELDS:
            setattr(job_, field, values[field])
        job_.description = values["name"]
        job_.company_id = values["company_id"]
        job_.date_cancelled = None
        job_.worker_pid = None
        job_._depends_on = None  # read on first use
        job_._reverse_depends_on = None
        return job_

    # ------------------------------------------------------------------
    # State, in memory (OCA's setters); store() writes it
    # ------------------------------------------------------------------

    def add_depends(self, jobs):
        """Make this job wait for ``jobs`` (stored before this one)."""
        if self in jobs:
            raise ValueError("a job cannot depend on itself")
        self.depends_on.update(jobs)
        for parent in jobs:
            parent.reverse_depends_on.add(self)
        if any(parent.state != DONE for parent in jobs):
            self.state = WAIT_DEPENDENCIES

    def set_pending(self, result=None, reset_retry=True):
        self.state = (
            WAIT_DEPENDENCIES if any(dep.state != DONE for dep in self.depends_on) else PENDING
        )
        self.date_enqueued = self.date_started = self.date_done = None
        self.date_cancelled = None
        self.worker_pid = None
        if reset_retry:
            self.retry = 0
        if result is not None:
            self.result = result

    def set_enqueued(self):
        self.state = ENQUEUED
        self.date_enqueued = _utcnow()
        self.date_started = None
        self.worker_pid = None

    def set_started(self):
        self.state = STARTED
        self.date_started = _utcnow()
        self.worker_pid = os.getpid()

    def set_done(self, result=None):
        self.state = DONE
        self.exc_name = self.exc_info = None
        self.date_done = _utcnow()
        if result is not None:
            self.result = result

    def set_cancelled(self, result=None):
        self.state = CANCELLED
        self.date_cancelled = _utcnow()
        if result is not None:
            self.result = result

    def set_failed(self, **kw):
        """Fail the job; keywords set its attributes (``exc_name``, ``exc_message``...)."""
        self.state = FAILED
        for name, value in kw.items():
            if value is not None:
                setattr(self, name, value)

    def postpone(self, result=None, seconds=None):
        """Set the eta to the next try: ``seconds`` from now, else the retry pattern's."""
        self.eta = timedelta(seconds=self._get_retry_seconds(seconds))
        self.exc_name = self.exc_info = None
        if result is not None:
            self.result = result

    def _get_retry_seconds(self, seconds=None):
        """Delay before the next try: ``seconds``, else the retry pattern's."""
        if seconds:
            return seconds
        pattern = self.job_config.retry_pattern or {}
        for tries in sorted(pattern, reverse=True):
            if self.retry >= tries:
                seconds = pattern[tries]
                # (min, max): spread the retries of many failing jobs
                return random.randint(*seconds) if isinstance(seconds, tuple) else seconds
        return RETRY_INTERVAL

    # ------------------------------------------------------------------
    # Storing
    # ------------------------------------------------------------------

    def store(self):
        """Write this job: insert it when new, else write its state and values.

        A new job is inserted as ``delay()`` inserts jobs (:meth:`store_many`);
        the jobs it depends on must be stored already. A stored job is
        written through ``queue.job``'s trusted ``write()``: its ``state``
        goes through the same transitions as the job actions (``set_done()``
        then ``store()`` releases the jobs waiting on it, as Set Done does).
        """
        if self.id is not None:
            self.db_record().with_context(
                _job_edit_sentinel=self.env["queue.job"].EDIT_SENTINEL
            ).write(self._store_values())
            return
        unstored = [dep for dep in self.depends_on if dep.id is None]
        if unstored:
            raise ValueError(f"{self!r} depends on {unstored[0]!r}: store that job first")
        related = [*self.depends_on, *self.reverse_depends_on]
        if related and not self.graph_uuid:
            # The runner releases the dependents of jobs of a graph only.
            known = [job_.graph_uuid for job_ in related if job_.graph_uuid]
            self.graph_uuid = known[0] if known else str(uuidlib.uuid4())
        self.store_many(self.env, [self])

    def _store_values(self):
        """What :meth:`store` writes on a stored job, as ``write()`` values."""
        values = {
            "state": self.state,
            "priority": self.priority,
            "retry": self.retry,
            "max_retries": self.max_retries,
            "eta": self.eta or False,
            "result": self._result_text(self.result) or False,
            "exc_name": self.exc_name or False,
            "exc_message": self.exc_message or False,
            "exc_info": self.exc_info or False,
            "company_id": self.company_id or False,
            "identity_key": self.identity_key or False,
            "graph_uuid": self.graph_uuid or False,
        }
        # The transition of the state sets and clears the dates; the job's
        # own are written when it has them (a cancelled job keeps its
        # date_done, which the autovacuum reads).
        timings = {
            "date_enqueued": self.date_enqueued,
            "date_started": self.date_started,
            "date_done": self.date_done,
            "exec_time": self.exec_time,
        }
        values.update({name: value for name, value in timings.items() if value})
        values.update(self._values_from_model())
        return values

    def _values_from_model(self):
        """The extra ``queue.job`` values of the model's ``_job_store_values``
        hooks; the job's own columns cannot be set there and are left out."""
        values = dict(self.recordset._job_store_values(self))
        specific = getattr(self.recordset, f"_job_store_values_for_{self.method_name}", None)
        if specific is not None:
            values.update(specific(self))
        fields_ = self.env["queue.job"]._fields
        for name in values:
            field = fields_.get(name)
            if field is None or not field.store or not field.column_type:
                raise ValueError(
                    f"_job_store_values of {self.model_name} returned {name!r}, "
                    "which is no stored field of queue.job"
                )
        return {name: value for name, value in values.items() if name not in _CORE_FIELDS}

    def _row(self):
        """The values of :data:`_INSERTED`, for the insert of this job."""
        return tuple(value(self) for _column, value in _INSERTED)

    @classmethod
    def store_many(cls, env, jobs):
        """Insert ``jobs`` and the edges of their ``depends_on`` in few statements.

        A job with an ``identity_key`` that matches a job still waiting to
        run is not inserted: it takes the existing job's place (its ``id``,
        ``uuid`` and ``state``); if it waits for jobs of its graph, the
        existing job waits for them too. The unique index on the identity key
        makes this hold for concurrent transactions too.
        """
        env["queue.job"].flush_model()
        adopted = []
        remaining = jobs
        while remaining:
            left_out = cls._insert(env, remaining)
            remaining = cls._adopt_existing(env, left_out)
            adopted += [job_ for job_ in left_out if job_.id is not None]
        adopted_ids = {job_.id for job_ in adopted}
        edges, adopted_edges = [], []
        for job_ in jobs:
            for dep in job_.depends_on:
                (adopted_edges if job_.id in adopted_ids else edges).append((job_.id, dep.id))
        transitions.wait_for_more(env.cr, adopted_edges)
        for start in range(0, len(edges), INSERT_CHUNK):
            chunk = edges[start : start + INSERT_CHUNK]
            env.cr.execute(
                "INSERT INTO queue_job_dependency (job_id, dependency_id) VALUES "
                + ", ".join(["(%s, %s)"] * len(chunk)),
                [value for edge in chunk for value in edge],
            )
        # Dependencies stored before (Job.store() of a job after its
        # dependencies): those already done release the new edges at once.
        stored_before = {dep_id for _job_id, dep_id in edges} - {job_.id for job_ in jobs}
        if stored_before:
            transitions.release_dependents(env.cr, list(stored_before))
            env.cr.execute(
                "SELECT id, state FROM queue_job WHERE id = ANY(%s)",
                ([job_.id for job_ in jobs],),
            )
            states = dict(env.cr.fetchall())
            for job_ in jobs:
                job_.state = states[job_.id]
        # A job of no graph adopted as a dependency joins this one: the
        # runner releases dependents right after the jobs of a graph only.
        joining = [job_ for job_ in adopted if job_.reverse_depends_on]
        if joining:
            env.cr.execute(
                "UPDATE queue_job SET graph_uuid = %s WHERE id = ANY(%s) AND graph_uuid IS NULL",
                (joining[0].graph_uuid, [job_.id for job_ in joining]),
            )

    @staticmethod
    def _insert(env, jobs):
        """Insert ``jobs``; return those left out because their identity key is taken.

        The values of the models' ``_job_store_values`` hooks go in the same
        statement, as extra columns.
        """
        cr = env.cr
        job_model = env["queue.job"]
        left_out = []
        for start in range(0, len(jobs), INSERT_CHUNK):
            chunk = jobs[start : start + INSERT_CHUNK]
            for job_ in chunk:  # the state it is inserted in, for the hooks
                job_.state = WAIT_DEPENDENCIES if job_.depends_on else PENDING
            extras = [job_._values_from_model() for job_ in chunk]
            extra_columns = sorted({name for values in extras for name in values})
            fields_ = [job_model._fields[name] for name in extra_columns]
            placeholders = (
                f"({', '.join(['%s'] * (len(_JOB_COLUMNS) + len(extra_columns)))}, {NOW_UTC})"
            )
            params = []
            for job_, values in zip(chunk, extras, strict=True):
                params += job_._row()
                params += [
                    field.convert_to_column_insert(
                        field.convert_to_cache(values.get(field.name), job_model), job_model
                    )
                    for field in fields_
                ]
            cr.execute(
                f"""
                INSERT INTO queue_job ({", ".join((*_JOB_COLUMNS, *extra_columns))}, date_created)
                VALUES {", ".join([placeholders] * len(chunk))}
                ON CONFLICT (identity_key)
                   WHERE identity_key IS NOT NULL AND state IN {QUEUED_SQL}
                DO NOTHING
                RETURNING uuid, id
                """,
                params,
            )
            inserted = dict(cr.fetchall())
            for job_ in chunk:
                job_.id = inserted.get(job_.uuid)
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
            ([job_.identity_key for job_ in jobs], list(QUEUED_STATES)),
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
        """Call the method with its arguments; return (and keep) its result.

        The try counts (``retry``), as in OCA: a :class:`RetryableJobError`
        raised on the last try becomes a :class:`FailedJobError`; one with
        ``ignore_retry`` gives the try back.
        """
        self.retry += 1
        try:
            with self._commit_guard():
                self.result = self.func(*self.args, **self.kwargs)
        except RetryableJobError as err:
            if err.ignore_retry:
                self.retry -= 1
            elif self._out_of_tries():
                raise self._max_retries_error(err) from err
            raise
        return self.result

    def _out_of_tries(self):
        return bool(self.max_retries) and self.retry >= self.max_retries

    def _max_retries_error(self, err):
        return FailedJobError(f"Max. retries ({self.max_retries}) reached: {err}")

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

    def _result_text(self, result):
        return None if result is None else str(result)

    def on_fail(self, fail_vals):
        """Call the on-fail method on the job's records with ``fail_vals``
        (``exc_name``, ``exc_message``, ``exc_info``). If it raises, its
        writes are rolled back and the error logged; the job stays failed."""
        try:
            with self.env.cr.savepoint():
                getattr(self.recordset, self.job_config.on_fail_method_name)(**fail_vals)
        except Exception:  # noqa: BLE001 - the job's failure is recorded already
            _logger.exception("On-fail method of job %s failed", self.uuid)
