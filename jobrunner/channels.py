# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Channel capacities: the ``channels`` setting, and which capacities a job counts against.

The setting uses OCA queue_job's syntax: comma- or newline-separated
``name:capacity`` entries, the capacity defaulting to 1, blank entries
ignored. Every name is ``root`` or under it; ``root`` is 1 when not given.

>>> channels = Channels.parse("root:4, root.mail:1")
>>> channels.capacities
{'root': 4, 'root.mail': 1}
>>> Channels.parse('''
...     root : 2
...     root.sub
... ''').capacities
{'root': 2, 'root.sub': 1}

A job's channel maps to its longest configured prefix, anything else to root:

>>> channels.channel_of("root.mail.bulk"), channels.channel_of("root.mailbox")
('root.mail', 'root')
>>> channels.channel_of("mail"), channels.channel_of(None)
('root', 'root')

A job counts against its channel and every configured ancestor, so it may
start only when none of them is full (the claim, ``queue_job_claim`` in
``schema.py``, counts so in SQL):

>>> channels.lineage("root.mail.bulk")
['root.mail', 'root']

Settings that would silently mean something else are refused, in one line:

>>> def check(text):
...     try:
...         Channels.parse(text)
...     except ChannelsConfigError as exc:
...         print(exc)
>>> check("root:4,root.sub:2:throttle=1")
channel 'root.sub': unknown option 'throttle=1' (the only option is the capacity)
>>> check("root:4,root.sub:0")
channel 'root.sub': capacity must be a positive integer, not '0'
>>> check("root:2,mail:1")
channel 'mail' is not under root (write 'root.mail')
"""

import os
import re

from . import settings

ROOT = "root"
DEFAULT = "root:1"

_NAME = re.compile(r"[\w-]+(\.[\w-]+)*")
_CAPACITY = re.compile(r"[0-9]+")


class ChannelsConfigError(ValueError):
    """The channels setting cannot be used as written; the message is one line."""


class Channels:
    """Capacities by channel name, ``root`` included."""

    def __init__(self, capacities):
        self.capacities = capacities

    @classmethod
    def parse(cls, text):
        """Parse a setting such as ``root:4,root.mail:1``; raise ChannelsConfigError."""
        capacities = {}
        for entry in text.replace("\n", ",").split(","):
            if not entry.strip():
                continue
            name, *options = (part.strip() for part in entry.split(":"))
            _check_name(name)
            if name in capacities:
                raise ChannelsConfigError(f"channel {name!r} is configured twice")
            capacity, *unknown = options or ["1"]
            if unknown:
                raise ChannelsConfigError(
                    f"channel {name!r}: unknown option {unknown[0]!r} "
                    "(the only option is the capacity)"
                )
            capacities[name] = _parse_capacity(name, capacity)
        capacities.setdefault(ROOT, 1)
        return cls(capacities)

    @property
    def root_capacity(self):
        return self.capacities[ROOT]

    def lineage(self, job_channel):
        """Configured channels a job of ``job_channel`` counts against, its own first, root last."""
        parts = (job_channel or "").split(".")
        prefixes = (".".join(parts[:end]) for end in range(len(parts), 1, -1))
        return [name for name in prefixes if name in self.capacities] + [ROOT]

    def channel_of(self, job_channel):
        """The configured channel of a job whose ``channel`` field is ``job_channel``."""
        return self.lineage(job_channel)[0]


def _check_name(name):
    if not name:
        raise ChannelsConfigError("a channel entry has no name")
    if not _NAME.fullmatch(name):
        raise ChannelsConfigError(f"invalid channel name {name!r}")
    if name != ROOT and not name.startswith(ROOT + "."):
        raise ChannelsConfigError(f"channel {name!r} is not under root (write 'root.{name}')")


def _parse_capacity(name, text):
    if not _CAPACITY.fullmatch(text) or int(text) < 1:
        raise ChannelsConfigError(
            f"channel {name!r}: capacity must be a positive integer, not {text!r}"
            + (" (to run no jobs, do not load queue_job server-wide)" if name == ROOT else "")
        )
    return int(text)


def configured_channels(config_file=None, environ=os.environ):
    """The ``channels`` setting (see ``settings.py``), else ``root:1``.

    Raise ChannelsConfigError naming where the faulty setting comes from.
    """
    source, text = settings.lookup("channels", config_file, environ)
    if not text:
        return Channels.parse(DEFAULT)
    try:
        return Channels.parse(text)
    except ChannelsConfigError as exc:
        raise ChannelsConfigError(f"invalid queue_job channels in {source}: {exc}") from None
