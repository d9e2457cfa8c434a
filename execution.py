# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Running a job and recording its outcome: the one path for every caller.

A stored, started job runs through :func:`run`, whatever started it:

* the jobrunner (:func:`run_claimed`, through ``jobrunner/odoo_binding.py``
  and the tests' ``JobRunnerCase``): the job's writes and its move to
  ``done`` commit together in Odoo's REPEATABLE READ transaction; the
  release of its dependents, or the record of its failure or retry, follows
  in a READ COMMITTED transaction of its own, where concurrent workers
  releasing the same callback queue up on its row instead of failing to
  serialize (see :func:`isolation.read_committed`). A crash between the
  two leaves unreleased edges that the runner's rescue releases later.
* Run Now (``queue.job.run_now``), inside the request's transaction: the
  job runs in a savepoint, rolled back if it fails, and the outcome is
  recorded in the same transaction; a job allowed to commit runs in
  transactions of its own, as in the runner (:func:`run_started`).

Both get the same outcomes: ``done`` with the method's result (or the
message of a :class:`NothingToDoJob`), ``pending`` again later after a
:class:`RetryableJobError` (``failed`` once out of tries) or a concurrency
failure of the database (serialization failure, deadlock: the try is
given back) or another database error of the job (under its own name,
``QueryCanceled`` say: retried per the retry pattern, ``failed`` once out of
tries), ``failed`` with its traceback otherwise, then the job function's
on-fail method. Only a lost connection leaves the
job ``started``, for the rescue.

A job that the runner stopped because it ran past its time limit gets its
outcome from :func:`record_timeout`, recorded by the runner's dispatcher.

Jobs that are not stored (the no-delay mode, ``trap_jobs()``'s
``perform_enqueued_jobs``) run through :func:`run_unstored`.
"""

import logging
import traceback
from contextlib import contextmanager

import psycopg2

from odoo import SUPERUSER_ID, api

from .core import database_errors, isolation, transitions
from .core.states import DONE, STARTED
from .exception import JobTimeout, NothingToDoJob, RetryableJobError
from .job import CONCURRENCY_RETRY_INTERVAL, Job

_logger = logging.getLogger(__name__)

NOTHING_TO_DO_RESULT = "Nothing to do: job set to done"


class _NoLongerStarted(Exception):
    """The job's row left ``started`` while it ran (requeued by a peer)."""


class _Transactions:
    """The runner's boundaries: the job's transaction commits, its outcome
    takes a READ COMMITTED transaction of its own."""

    def __init__(self, cr):
        self._cr = cr

    @contextmanager
    def job(self):
        yield
        self._cr.commit()

    @contextmanager
    def outcome(self):
        self._cr.rollback()
        isolation.read_committed(self._cr)
        yield
        self._cr.commit()


class _Savepoints:
    """Run Now's boundaries, inside the caller's transaction: the job runs in
    a savepoint, its outcome is written after it."""

    def __init__(self, cr):
        self._cr = cr

    @contextmanager
    def job(self):
        with self._cr.savepoint():
            yield

    @contextmanager
    def outcome(self):
        yield


def run_claimed(cr, row):
    """Run the job of ``row`` (its ``queue_job`` row as a dict, as the claim
    returns it), just claimed on ``cr``, as its user; commit its outcome.

    Called by the jobrunner with an Odoo cursor. Raises only when the
    database connection fails.
    """
    env = api.Environment(cr, SUPERUSER_ID, {})
    boundaries = _Transactions(cr)
    try:
        job_ = Job._from_values(env, row)
    except Exception as err:  # noqa: BLE001 - recorded on the job
        # It cannot even be loaded (its model is gone with its module, say):
        # no later try would do better.
        _logger.info("Job %s cannot be loaded", row["uuid"], exc_info=True)
        with boundaries.outcome():
            _mark_failed(env, row["id"], err)
        return
    run(job_, boundaries)


def run_started(job_):
    """Run ``job_``, started in the caller's transaction (Run Now), and record
    its outcome there.

    A job allowed to commit would commit the caller's transaction anyway, and
    no savepoint survives a commit: the caller's transaction is committed
    first, and the job runs in transactions of its own, as in the runner.
    """
    cr = job_.env.cr
    if job_.job_config.allow_commit:
        cr.commit()
        run(job_, _Transactions(cr))
    else:
        run(job_, _Savepoints(cr))


def run(job_, boundaries):
    """Run started ``job_`` and record its outcome within ``boundaries``."""
    cr = job_.env.cr
    # Starting the job counted this try in the database; perform() counts it
    # again on the job, as OCA's does.
    job_.retry -= 1
    try:
        with boundaries.job():
            try:
                result = job_._result_text(job_.perform())
            except NothingToDoJob as err:
                result = str(err) or NOTHING_TO_DO_RESULT
            job_.env.flush_all()
            if not transitions.mark_done(cr, [job_.id], (STARTED,), result=result, release=False):
                raise _NoLongerStarted
    except _NoLongerStarted:
        with boundaries.outcome():
            _logger.error(
                "Job %s was no longer started by this worker when it ended "
                "(requeued by a peer?): its writes were rolled back",
                job_.uuid,
            )
    except RetryableJobError as err:
        with boundaries.outcome():
            _record_retry(job_, err, err.seconds, job_._max_retries_error(err))
    except Exception as err:
        if database_errors.connection_lost(err):
            raise  # nothing can be recorded: the runner reconnects, rescue requeues
        if isinstance(err, database_errors.CONCURRENCY_ERRORS):
            with boundaries.outcome():
                _record_concurrency_retry(job_, err)
            return
        if isinstance(err, psycopg2.Error):
            # The job's own database error (a statement timeout, a full
            # disk, a lock not available...): retried per its retry pattern,
            # failed under the error's own name once out of tries.
            _logger.info("Job %s: database error", job_.uuid, exc_info=True)
            with boundaries.outcome():
                _record_retry(job_, err, None, err)
            return
        _logger.info("Job %s failed", job_.uuid, exc_info=True)
        with boundaries.outcome():
            _record_failure(job_, err)
    else:
        if job_.graph_uuid:  # only a job of a graph can have dependents
            with boundaries.outcome():
                transitions.release_dependents(cr, [job_.id])


def _record_retry(job_, err, seconds, failure, exc_info=None):
    """Postpone ``job_`` after ``err``, by ``seconds`` or else its retry
    pattern; or fail it for ``failure`` if it is out of tries.

    :meth:`Job.perform` has counted the try (or given it back, for
    ``ignore_retry``): the stored count follows. Its own retryable errors
    that are out of tries have become failures there already.
    """
    if job_._out_of_tries():
        _record_failure(job_, failure, exc_info)
        return
    transitions.retry_later(
        job_.env.cr,
        [job_.id],
        job_._get_retry_seconds(seconds),
        retry=job_.retry,
        **_exc_values(err, exc_info),
    )


def _record_concurrency_retry(job_, err):
    """Run ``job_`` again in a moment after ``err``, a serialization failure
    or a deadlock, giving its try back: the job did
    nothing wrong, so it never fails for being out of tries."""
    job_.retry -= 1
    transitions.retry_later(
        job_.env.cr,
        [job_.id],
        CONCURRENCY_RETRY_INTERVAL,
        retry=job_.retry,
        **_exc_values(err),
    )


def record_timeout(cr, row, seconds, stack):
    """Record that the job of ``row`` (as claimed) ran past its limit of ``seconds``.

    The runner stopped the job and calls this on ``cr``, in the transaction
    in which it took the job over (it commits). A job still ``started`` is
    retried later if its job function has a retry pattern and the job tries
    left, else failed with :class:`JobTimeout` (its dependents with it), and
    then the on-fail method is called. ``stack`` (the job's Python stack
    when it was stopped) is kept as its traceback.
    """
    env = api.Environment(cr, SUPERUSER_ID, {})
    err = JobTimeout(f"Job ran past its time limit of {seconds:g} s and was stopped")
    exc_info = f"Stack of the job when it was stopped:\n{stack}{_exc_name(err)}: {err}\n"
    try:
        job_ = Job._from_values(env, row)
    except Exception:  # noqa: BLE001 - its model is gone: no retry would do better
        _mark_failed(env, row["id"], err, exc_info)
        return
    if job_.job_config.retry_pattern:
        _record_retry(job_, err, None, err, exc_info)
    else:
        _record_failure(job_, err, exc_info)


def _record_failure(job_, err, exc_info=None):
    """Fail ``job_`` (and its dependents) for ``err``, then call the job
    function's on-fail method, if any."""
    if _mark_failed(job_.env, job_.id, err, exc_info) and job_.job_config.on_fail_method_name:
        job_.on_fail(_exc_values(err, exc_info))


def _mark_failed(env, job_id, err, exc_info=None):
    """Fail started job ``job_id`` (and its dependents) for ``err``; tell whom it concerns.

    Return whether it was still started.
    """
    if not transitions.mark_failed(env.cr, [job_id], (STARTED,), **_exc_values(err, exc_info)):
        return False
    env["queue.job"].sudo().browse(job_id)._message_post_on_failure()
    return True


def _exc_name(err):
    return f"{type(err).__module__}.{type(err).__qualname__}"


def _exc_values(err, exc_info=None):
    """The exception fields of a job, for ``err`` (being handled, unless ``exc_info`` is given)."""
    return {
        "exc_name": _exc_name(err),
        "exc_message": str(err),
        "exc_info": exc_info or traceback.format_exc(),
    }


def run_unstored(jobs):
    """Run ``jobs`` (not stored, in dependency order) now, in the caller's transaction.

    The no-delay mode (``QUEUE_JOB__NO_DELAY`` or the ``queue_job__no_delay``
    context key) and ``trap_jobs()``: errors propagate to the caller as they
    would without jobs.
    """
    for job_ in jobs:
        job_.result = job_.perform()
        job_.state = DONE
