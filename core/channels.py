# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Channel configuration: the ``channels`` setting, and the channels a job goes through.

The setting uses OCA queue_job's syntax: comma- or newline-separated
``name:capacity:option...`` entries, blank entries ignored. The capacity
defaults to 1, and 0 means no limit of its own; ``root`` may be left out of
a name (``mail`` is ``root.mail``); ``root`` is 1 when not given.

>>> channels = Channels.parse("root:4, mail:1, root.export:0, root.sync:1:sequential")
>>> print(channels)
root:4, root.mail:1, root.export:0, root.sync:1:sequential
>>> channels.capacities
{'root': 4, 'root.mail': 1, 'root.sync': 1}

The options are OCA's:

* ``sequential``: the channel (capacity 1) runs its jobs one at a time in
  order, and waits while one of its own jobs is failed (until it is done,
  requeued or cancelled) or while its first job waits for its eta;
* ``throttle=N``: at most one job of the channel starts every N seconds
  (``throttle`` alone is 1 second);
* ``paused``: the channel starts no job.

Ours adds one:

* ``timeout=N``: a job of the channel, or of a channel under it without a
  timeout of its own, is stopped after N seconds (see ``jobrunner/runner.py``),
  unless the job or its job function sets its own limit.

>>> Channels.parse("root:2,root.a:2:throttle=3:paused").channels["root.a"]
Channel(name='root.a', capacity=2, sequential=False, throttle=3, paused=True, timeout=None, rate_limit=0)
>>> with_timeouts = Channels.parse("root:2:timeout=600,root.a:1:timeout=2.5,root.a.b:1")
>>> with_timeouts.timeout_of("root.a.b.c"), with_timeouts.timeout_of("root.z")
(2.5, 600.0)

The channel records (``queue.job.channel``) may carry a capacity, the
sequential and paused flags and a rate limit (``rate_limit``: at most N
starts in any 60 seconds) too. A channel that the setting names takes the
setting's values, others their record's (``queue_job_channels`` in
``schema.py`` merges them, ``claim.channels_in_force`` reads the result);
each channel says where its values come from:

>>> channels.channels["root.mail"].source, Channels.parse("").channels["root"].source
('configuration', 'default')

A job goes through its channel's nearest configured ancestor (or the channel
itself) and every configured channel above it, up to root: it may start only
when none of them is full, paused, throttled or waiting (the claim,
``queue_job_claim`` in ``schema.py``, checks so in SQL). Job channels are
complete names (``root.mail``), as the channel records have them:

>>> channels.lineage("root.mail.bulk"), channels.lineage("root.mailbox")
(['root.mail', 'root'], ['root'])
>>> channels.channel_of("root.export.csv"), channels.channel_of(None)
('root', 'root')

Settings that would silently mean something else, or that OCA refuses, are
refused, in one line:

>>> def check(text):
...     try:
...         Channels.parse(text)
...     except ChannelsConfigError as exc:
...         print(exc)
>>> check("root:4,root.sub:2:sequential")
channel 'root.sub': a sequential channel must have a capacity of 1, not 2
>>> check("root:4,root.sub:-1")
channel 'root.sub': capacity must be a positive integer, or 0 for no limit, not '-1'
>>> check("root:4,root.sub:1:throttle=1.5")
channel 'root.sub': throttle must be a whole number of seconds, not '1.5'
>>> check("root:4,root.sub:1:timeout=0")
channel 'root.sub': timeout must be a positive number of seconds, not '0'
"""

import dataclasses
import logging
import os

from . import settings

_logger = logging.getLogger(__name__)

ROOT = "root"
DEFAULT = "root:1"

#: Where the values of a channel in force come from: the ``channels``
#: setting (``configuration``, or more precisely the environment or the
#: configuration file), its channel record, or root's default of 1.
SOURCE_CONFIGURATION = "configuration"
SOURCE_ENVIRONMENT = "environment"
SOURCE_FILE = "configuration file"
SOURCE_DATABASE = "database"
SOURCE_DEFAULT = "default"

#: Values of a flag option that mean yes. OCA reads any other non-empty
#: value as yes too (``sequential=false`` is sequential): those are refused.
_YES = ("1", "true", "yes", "on")
_FLAGS = ("sequential", "paused")


class ChannelsConfigError(ValueError):
    """The channels setting cannot be used as written; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Channel:
    """One configured channel."""

    name: str
    #: Jobs of the channel and of the channels under it that may run at
    #: once; None: no limit of its own.
    capacity: int | None
    sequential: bool = False
    #: Seconds between two starts of its jobs (0: no throttle).
    throttle: int = 0
    paused: bool = False
    #: Seconds a job of the channel may run (None: no limit of its own).
    timeout: float | None = None
    #: Starts of its jobs (and of the jobs under it) allowed in any 60
    #: seconds (0: no limit); set on the channel's record only.
    rate_limit: int = 0
    source: str = dataclasses.field(default=SOURCE_CONFIGURATION, repr=False, compare=False)

    def __str__(self):
        options = [name for name in _FLAGS if getattr(self, name)]
        if self.throttle:
            options.append(f"throttle={self.throttle}")
        if self.timeout:
            options.append(f"timeout={self.timeout:g}")
        if self.rate_limit:
            options.append(f"rate_limit={self.rate_limit}")
        return ":".join([self.name, str(self.capacity or 0), *options])


class Channels:
    """The configured channels by name, ``root`` included."""

    def __init__(self, channels):
        self.channels = channels
        self._any_timeout = any(channel.timeout for channel in channels.values())

    def __str__(self):
        return ", ".join(str(channel) for channel in self.channels.values())

    @classmethod
    def parse(cls, text, source=SOURCE_CONFIGURATION):
        """Parse a setting such as ``root:4,root.mail:1:sequential``; raise ChannelsConfigError.

        ``source`` names where the setting comes from (``SOURCE_*``).
        """
        channels = {ROOT: Channel(ROOT, 1, source=SOURCE_DEFAULT)}
        configured = set()
        for entry in text.replace("\n", ",").split(","):
            if entry.strip():
                channel = dataclasses.replace(_parse_entry(entry), source=source)
                if channel.name in configured:
                    _logger.warning(
                        "queue_job channels: %r is configured twice: its last entry applies",
                        channel.name,
                    )
                configured.add(channel.name)
                channels[channel.name] = channel
        return cls(channels)

    @property
    def capacities(self):
        """{name: capacity} of the channels that have a capacity of their own."""
        return {
            name: channel.capacity
            for name, channel in self.channels.items()
            if channel.capacity is not None
        }

    @property
    def given(self):
        """The channels that the setting names (root's default is not)."""
        return [channel for channel in self.channels.values() if channel.source != SOURCE_DEFAULT]

    @property
    def root_capacity(self):
        return self.channels[ROOT].capacity

    def lineage(self, job_channel):
        """Configured channels a job of ``job_channel`` goes through, its own first, root last."""
        parts = (job_channel or "").split(".")
        prefixes = (".".join(parts[:end]) for end in range(len(parts), 1, -1))
        return [name for name in prefixes if name in self.channels] + [ROOT]

    def timeout_of(self, job_channel):
        """Seconds a job of ``job_channel`` may run by default: the ``timeout``
        of the nearest channel of its lineage that has one, else None."""
        if not self._any_timeout:  # read for every job: the usual case costs nothing
            return None
        return next(
            (
                self.channels[name].timeout
                for name in self.lineage(job_channel)
                if self.channels[name].timeout
            ),
            None,
        )

    def channel_of(self, job_channel):
        """The nearest configured channel whose capacity a job of ``job_channel`` uses."""
        capacities = self.capacities
        return next(name for name in self.lineage(job_channel) if name in capacities)


def _parse_entry(entry):
    name, *items = (item.strip() for item in entry.split(":"))
    if not name:
        raise ChannelsConfigError("a channel entry has no name")
    if name != ROOT and not name.startswith(ROOT + "."):
        name = f"{ROOT}.{name}"
    capacity = _parse_capacity(name, items[0]) if items else 1
    options = {}
    for item in items[1:]:
        key, equals, value = (part.strip() for part in item.partition("="))
        if "=" in value:
            raise ChannelsConfigError(f"channel {name!r}: invalid option {item!r}")
        if key in options or key in ("name", "capacity"):
            raise ChannelsConfigError(f"channel {name!r}: option {key!r} is given twice")
        options[key] = value if equals else None
    channel = Channel(
        name,
        capacity,
        sequential=_parse_flag(name, "sequential", options),
        throttle=_parse_throttle(name, options),
        paused=_parse_flag(name, "paused", options),
        timeout=_parse_timeout(name, options),
    )
    for key in options.keys() - {"sequential", "throttle", "paused", "timeout", ""}:
        _logger.warning(
            "queue_job channels: channel %r: unknown option %r ignored, as OCA does", name, key
        )
    if channel.sequential and capacity != 1:
        raise ChannelsConfigError(
            f"channel {name!r}: a sequential channel must have a capacity of 1, not {capacity or 0}"
        )
    return channel


def _parse_capacity(name, text):
    try:
        capacity = int(text)
    except ValueError:
        capacity = -1
    if capacity < 0 or (capacity == 0 and name == ROOT):
        raise ChannelsConfigError(
            f"channel {name!r}: capacity must be a positive integer"
            + (
                ", the number of jobs a runner runs at once"
                if name == ROOT
                else ", or 0 for no limit"
            )
            + f", not {text!r}"
        )
    return capacity or None


def _parse_flag(name, key, options):
    if key not in options:
        return False
    value = options[key]
    if value is not None and value.lower() not in _YES:
        raise ChannelsConfigError(
            f"channel {name!r}: '{key}={value}' is ambiguous (OCA's runner reads any value"
            f" but an empty one as yes): write ':{key}' or leave it out"
        )
    return True


def _parse_throttle(name, options):
    if "throttle" not in options:
        return 0
    value = options["throttle"]
    if value is None:  # the bare option, as OCA reads it
        return 1
    try:
        seconds = int(value)
    except ValueError:
        seconds = -1
    if seconds < 0:
        raise ChannelsConfigError(
            f"channel {name!r}: throttle must be a whole number of seconds, not {value!r}"
        )
    return seconds


def _parse_timeout(name, options):
    if "timeout" not in options:
        return None
    value = options["timeout"]
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise ChannelsConfigError(
            f"channel {name!r}: timeout must be a positive number of seconds, not {value!r}"
        )
    return seconds


def configured_channels(config_file=None, environ=os.environ):
    """The ``channels`` setting (see ``settings.py``), else ``root:1``.

    Raise ChannelsConfigError naming where the faulty setting comes from.
    """
    source, text = settings.lookup("channels", config_file, environ)
    if not text:
        return Channels.parse(DEFAULT, SOURCE_DEFAULT)
    origin = SOURCE_ENVIRONMENT if source == settings.environ_key_of("channels") else SOURCE_FILE
    try:
        return Channels.parse(text, origin)
    except ChannelsConfigError as exc:
        raise ChannelsConfigError(f"invalid queue_job channels in {source}: {exc}") from None
