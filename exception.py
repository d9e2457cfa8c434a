# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Exceptions a job raises to tell the runner what to do with it (OCA's names)."""


class BaseQueueJobError(Exception):
    """Base of this addon's exceptions."""


class JobError(BaseQueueJobError):
    """A job could not be stored or run."""


class NoSuchJobError(JobError):
    """No job matches the given uuid or id."""


class FailedJobError(JobError):
    """Fail the job now, whatever retries it has left."""


class RetryableJobError(JobError):
    """Run the job again later.

    The try counts towards ``max_retries``, unless ``ignore_retry`` is set.
    ``seconds`` overrides the delay given by the job function's retry pattern.
    """

    def __init__(self, msg, seconds=None, ignore_retry=False):
        super().__init__(msg)
        self.seconds = seconds
        self.ignore_retry = ignore_retry


class JobTimeout(JobError):
    """The job ran past its time limit and was stopped (recorded by the runner)."""


class NothingToDoJob(JobError):
    """The job has nothing to do: it ends ``done`` with this message as result."""


class ChannelNotFound(BaseQueueJobError):
    """A job names a channel that does not exist."""
