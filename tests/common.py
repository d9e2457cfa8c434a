# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Helpers for the tests of addons that delay jobs (OCA's public names).

``trap_jobs()`` keeps the jobs delayed in its block in memory instead of the
database, so a test can check what was delayed and then run it::

    with trap_jobs() as trap:
        partner.button_export()
        trap.assert_jobs_count(1, only=partner.export)
        trap.assert_enqueued_job(
            partner.export, args=("csv",), properties={"priority": 5}
        )
        trap.perform_enqueued_jobs()

Only the storing is replaced: jobs and graphs are built and validated by the
same code as in production, so what is wrong there raises in the trap too.
"""

import doctest
import logging
import typing
import weakref
from contextlib import contextmanager
from operator import attrgetter
from unittest import mock

from odoo.tests.case import TestCase

from .. import execution, serialization
from ..delay import Delayable, DelayableGraph
from ..job import PENDING, WAIT_DEPENDENCIES, Job

_logger = logging.getLogger(__name__)


@contextmanager
def trap_jobs():
    """Trap the jobs delayed in the block; yields the :class:`JobsTrap`.

    Inside the block ``with_delay()`` and ``delay()`` write nothing to the
    database: the jobs are kept in the trap, in the order they were delayed.
    The no-delay mode is off inside the block: a test that traps jobs wants
    to see them, also when ``QUEUE_JOB__NO_DELAY`` is set for the whole run.
    """
    trap = JobsTrap()
    build_job = Delayable._build_job

    # A Job keeps the eta and identity key it computed; tests compare the
    # properties as the code under test gave them, which only the delayable has.
    def build_job_and_remember_call(delayable):
        job_ = build_job(delayable)
        trap._remember_call(job_, delayable)
        return job_

    with (
        mock.patch.object(Delayable, "_build_job", build_job_and_remember_call),
        # The one point where delay() writes: everything before it runs as usual.
        mock.patch.object(Job, "store_many", trap._keep),
        mock.patch.object(
            DelayableGraph, "_has_to_execute_directly", lambda graph, vertices: False
        ),
    ):
        yield trap


def _same_method(method, other):
    """Both are the same method bound to the same records (the context aside).

    Bound methods compare their records by identity; two browses of the same
    records are different objects.
    """
    return method.__func__ is other.__func__ and method.__self__ == other.__self__


class JobCall(typing.NamedTuple):
    """One delayed call: the method, its arguments and the job properties
    (``priority``, ``eta``, ``max_retries``, ``description``, ``channel``,
    ``identity_key``, ``timeout``) as they were given to ``with_delay()``/``delayable()``."""

    method: typing.Callable
    args: tuple
    kwargs: dict
    properties: dict

    def __eq__(self, other):
        if not isinstance(other, JobCall):
            return NotImplemented
        return _same_method(self.method, other.method) and self[1:] == other[1:]

    # tuple's own != would compare the bound methods by identity
    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __str__(self):
        arguments = [repr(arg) for arg in self.args]
        arguments += [f"{key}={value!r}" for key, value in self.kwargs.items()]
        properties = ", ".join(
            f"{name}={value!r}"
            for name, value in self.properties.items()
            if value is not None
        )
        return (
            f"{self.method.__self__!r}.{self.method.__name__}({', '.join(arguments)})"
            f" with properties ({properties})"
        )


class JobsTrap:
    """The jobs trapped by :func:`trap_jobs`, with assertions on them.

    * ``enqueued_jobs``: the :class:`~odoo.addons.queue_job.job.Job` objects
      waiting to be performed, in the order they were delayed;
    * ``calls``: a :class:`JobCall` per delayed job, performed or not,
      including the ones an ``identity_key`` merged into a trapped job.
    """

    def __init__(self):
        self.enqueued_jobs = []
        self.calls = []
        # Jobs built by a delay() whose graph then fails validation are never
        # kept: a weak mapping lets them go.
        self._calls_of_built_jobs = weakref.WeakKeyDictionary()

    def _remember_call(self, job_, delayable):
        self._calls_of_built_jobs[job_] = JobCall(
            method=delayable._job_method,
            args=delayable._job_args,
            kwargs=delayable._job_kwargs,
            properties=delayable._job_properties(),
        )

    def _keep(self, env, jobs):
        """Stands for ``Job.store_many``: keep ``jobs`` here, not in the database."""
        for job_ in jobs:
            self.calls.append(self._calls_of_built_jobs.pop(job_))
            holder = self._job_with_identity_key(job_.identity_key)
            if holder:
                # As in the database: the job takes the place of the one
                # already waiting with its identity key.
                job_.uuid, job_.state = holder.uuid, holder.state
            else:
                job_.state = WAIT_DEPENDENCIES if job_.depends_on else PENDING
                self.enqueued_jobs.append(job_)

    def _job_with_identity_key(self, identity_key):
        if identity_key:
            for kept in self.enqueued_jobs:
                if kept.identity_key == identity_key:
                    return kept
        return None

    def jobs_count(self, only=None):
        """How many jobs are trapped; ``only`` a method: only jobs of that
        method on the same records (``self.env["res.partner"].export`` counts
        the jobs delayed on the empty recordset)."""
        if only is None:
            return len(self.enqueued_jobs)
        return len(self._filtered_enqueued_jobs(only))

    def _filtered_enqueued_jobs(self, job_method):
        """The trapped jobs of ``job_method`` (bound to the same records)."""
        return [job_ for job_ in self.enqueued_jobs if _same_method(job_.func, job_method)]

    def assert_jobs_count(self, expected, only=None):
        """Raise AssertionError unless ``jobs_count(only)`` is ``expected``."""
        count = self.jobs_count(only=only)
        if count != expected:
            of = f" of {only.__self__!r}.{only.__name__}" if only else ""
            raise AssertionError(
                f"{count} jobs{of} trapped, expected {expected}\n{self._calls_text()}"
            )

    def assert_enqueued_job(self, method, args=None, kwargs=None, properties=None):
        """Raise AssertionError unless a job was delayed with exactly this call.

        ``method`` is bound to the records the job runs on; ``args`` and
        ``kwargs`` must be exactly the job's. Only the ``properties`` given
        are compared, with the values given to ``with_delay()``/
        ``delayable()`` (``eta=60``, not the datetime it became; ``None`` for
        a property that was not set).
        """
        expected = JobCall(method, tuple(args or ()), dict(kwargs or {}), dict(properties or {}))
        for call in self.calls:
            compared = {
                name: value
                for name, value in call.properties.items()
                if name in expected.properties
            }
            if call._replace(properties=compared) == expected:
                return
        raise AssertionError(f"Job {expected} was not delayed.\n{self._calls_text()}")

    def perform_enqueued_jobs(self):
        """Run the trapped jobs now, in the test's transaction.

        A job runs once the jobs it depends on are done; among those that
        can run, the lowest ``priority`` first, then the first delayed (the
        ``eta`` is not waited for). Jobs run as the jobrunner would run them:
        with their records, user and arguments as stored (the context keeps
        only the keys of ``_job_prepare_context_before_enqueue_keys``).

        Jobs delayed by the jobs performed here stay trapped, for the next
        call. An error propagates at once; the jobs that did not run stay
        trapped, and those waiting on the failed one never run.
        """
        batch = list(self.enqueued_jobs)
        done = set()  # uuids: a job merged by identity key shares its holder's
        while True:
            ready = [
                job_ for job_ in batch if all(dep.uuid in done for dep in job_.depends_on)
            ]
            if not ready:
                return
            job_ = min(ready, key=attrgetter("priority"))
            batch.remove(job_)
            self.enqueued_jobs.remove(job_)
            self._run(job_)
            done.add(job_.uuid)

    @staticmethod
    def _run(job_):
        # What Job.load gives the runner: the stored form decoded, in an
        # environment of no context of its own.
        env = job_.env(context={})
        job_.recordset = serialization.decode(job_.encoded_records, env)
        job_.args = tuple(serialization.decode(job_.encoded_args, env))
        job_.kwargs = serialization.decode(job_.encoded_kwargs, env)
        execution.run_unstored([job_])

    def _calls_text(self):
        if not self.calls:
            return "No job was delayed."
        return "Delayed jobs:\n" + "\n".join(f" * {call}" for call in self.calls)

    def __repr__(self):
        return f"<JobsTrap {self.calls!r}>"


class JobCounter:
    """Counts the jobs stored since it was made (OCA's helper)::

        counter = JobCounter(self.env)
        partner.button_export()
        self.assertEqual(counter.count_created(), 1)
    """

    def __init__(self, env):
        self.env = env
        self.existing = self.search_all()

    def search_all(self):
        return self.env["queue.job"].search([])  # pylint: disable=no-search-all

    def search_created(self):
        """The jobs stored since this counter was made."""
        return self.search_all() - self.existing

    def count_all(self):
        return len(self.search_all())

    def count_created(self):
        return len(self.search_created())

    def count_existing(self):
        return len(self.existing)


class JobMixin:
    """For test cases (with ``self.env``) that store jobs and run them."""

    def job_counter(self):
        return JobCounter(self.env)

    def perform_jobs(self, counter):
        """Run the jobs ``counter`` (a :class:`JobCounter`) saw stored, now,
        as the runner would; their states are left as they are."""
        for record in counter.search_created():
            Job.load(self.env, record.uuid).perform()

    @contextmanager
    def trap_jobs(self):
        with trap_jobs() as trap:
            yield trap


@contextmanager
def mock_with_delay():
    """Replace ``with_delay()`` by mocks; yields ``(delayable_cls, delayable)``.

    Deprecated by OCA in favour of :func:`trap_jobs`. ``delayable_cls`` is
    called with the records and the job properties given to
    ``with_delay()``; ``delayable`` records the method calls made on what
    ``with_delay()`` returned. Nothing is stored::

        with mock_with_delay() as (delayable_cls, delayable):
            partner.button_export()
            delayable_cls.assert_called_once_with(partner, priority=15, ...)
            delayable.export.assert_called_once_with("csv")
    """
    with mock.patch(
        "odoo.addons.queue_job.models.base.DelayableRecordset",
        name="DelayableRecordset",
        spec=True,
    ) as delayable_cls:
        delayable = mock.MagicMock(name="DelayableBinding")
        delayable_cls.return_value = delayable
        yield delayable_cls, delayable


class OdooDocTestCase(doctest.DocTestCase, TestCase):
    """A doctest as an Odoo test case: tagged, and named after its doctest.

    ``doctest`` is a case of :func:`doctest.DocTestSuite`; ``seq`` orders it
    among the module's tests.
    """

    def __init__(self, doctest, optionflags=0, setUp=None, tearDown=None, checker=None, seq=0):
        super().__init__(
            doctest._dt_test,
            optionflags=optionflags,
            setUp=setUp,
            tearDown=tearDown,
            checker=checker,
        )
        self.test_sequence = seq

    def setUp(self):
        super().setUp()
        _logger.info("Running tests for %s", self._dt_test.name)


def load_doctests(module):
    """A ``load_tests`` function (unittest's protocol) running the doctests
    of ``module`` as :class:`OdooDocTestCase`, tagged ``standard``,
    ``at_install``, ``queue_job`` and ``doctest``::

        load_tests = load_doctests(odoo.addons.my_module.tools)
    """

    def load_tests(loader, tests, ignore):
        for index, test in enumerate(doctest.DocTestSuite(module)):
            odoo_test = OdooDocTestCase(test, seq=index)
            odoo_test.test_tags = {"standard", "at_install", "queue_job", "doctest"}
            tests.addTest(odoo_test)
        return tests

    return load_tests
