# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The channels setting: parsing, mapping of job channels, full channels, where it is read."""

import doctest

import pytest

from queue_job.core import channels as channels_module
from queue_job.core.channels import (
    Channel,
    Channels,
    ChannelsConfigError,
    configured_channels,
)


def test_doctests():
    results = doctest.testmod(channels_module)
    assert results.attempted > 0
    assert results.failed == 0


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("root:4", "root:4"),
        ("root:4,root.mail:1", "root:4, root.mail:1"),
        (" root : 4 , root.mail : 2 ,", "root:4, root.mail:2"),
        ("root:3\n  root.a\n\n  root.a.b:2\n", "root:3, root.a:1, root.a.b:2"),
        ("root.mail:2", "root:1, root.mail:2"),
        ("root", "root:1"),
        ("", "root:1"),
        ("root:2,root.sale_order-bulk:1", "root:2, root.sale_order-bulk:1"),
        # OCA's: root may be left out, any name goes, 0 is no limit of its own.
        ("root:4,sub:2,sub.x:1", "root:4, root.sub:2, root.sub.x:1"),
        ("root:4,foo bar:1", "root:4, root.foo bar:1"),
        ("root:4,root.a:0", "root:4, root.a:0"),
        # OCA's options.
        ("root:4,root.a:1:sequential", "root:4, root.a:1:sequential"),
        ("root:4,root.a:1: sequential = true", "root:4, root.a:1:sequential"),
        ("root:1:sequential", "root:1:sequential"),
        ("root:4,root.a:2:throttle=3", "root:4, root.a:2:throttle=3"),
        ("root:4,root.a:0:throttle = 3", "root:4, root.a:0:throttle=3"),
        ("root:4,root.a:2:throttle", "root:4, root.a:2:throttle=1"),
        ("root:4,root.a:2:throttle=0", "root:4, root.a:2"),
        ("root:4,root.a:1:sequential:throttle=2", "root:4, root.a:1:sequential:throttle=2"),
        ("root:4,root.a:2:paused", "root:4, root.a:2:paused"),
        ("root:4:paused", "root:4:paused"),
        # What OCA ignores: unknown options, an empty one, a repeated channel
        # (the last entry applies).
        ("root:4,root.a:2:k=v", "root:4, root.a:2"),
        ("root:4,root.a:2:", "root:4, root.a:2"),
        ("root:4,root.a:2:throttle=3,a:1", "root:4, root.a:1"),
        ("root:4,root:2", "root:2"),
    ],
)
def test_parse(text, parsed):
    assert str(Channels.parse(text)) == parsed


def test_parse_reads_every_option():
    [root, a, b, c] = Channels.parse(
        "root:4, a:1:sequential, b:0:throttle=3, c:2:paused"
    ).channels.values()
    assert root == Channel("root", 4)
    assert a == Channel("root.a", 1, sequential=True)
    assert b == Channel("root.b", None, throttle=3)
    assert c == Channel("root.c", 2, paused=True)


def test_parse_warns_of_what_it_ignores(caplog):
    Channels.parse("root:4,root.a:2:throtle=3,root.a:1")
    assert [record.getMessage() for record in caplog.records] == [
        "queue_job channels: channel 'root.a': unknown option 'throtle' ignored, as OCA does",
        "queue_job channels: 'root.a' is configured twice: its last entry applies",
    ]
    assert {record.levelname for record in caplog.records} == {"WARNING"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("root:two", "channel 'root': capacity must be a positive integer, the number of jobs"),
        ("root:0", "channel 'root': capacity must be a positive integer, the number of jobs"),
        (
            "root:4,root.a:-1",
            "channel 'root.a': capacity must be a positive integer, or 0 for no limit, not '-1'",
        ),
        ("root:4,root.a:", "channel 'root.a': capacity must be a positive integer"),
        ("root:4,root.a::sequential", "channel 'root.a': capacity must be a positive integer"),
        ("root:4,root.a:1.5", "channel 'root.a': capacity must be a positive integer"),
        ("root:1,:2", "a channel entry has no name"),
        # OCA's refusals.
        ("root:4,root.a:2:sequential", "a sequential channel must have a capacity of 1, not 2"),
        ("root:4,root.a:0:sequential", "a sequential channel must have a capacity of 1, not 0"),
        ("root:4,root.a:1:throttle=x", "throttle must be a whole number of seconds, not 'x'"),
        ("root:4,root.a:1:throttle=", "throttle must be a whole number of seconds, not ''"),
        ("root:4,root.a:1:throttle=2.5", "throttle must be a whole number of seconds"),
        ("root:4,root.a:1:a=b=c", "channel 'root.a': invalid option 'a=b=c'"),
        ("root:4,root.a:1:paused:paused", "channel 'root.a': option 'paused' is given twice"),
        ("root:4,root.a:1:capacity=2", "channel 'root.a': option 'capacity' is given twice"),
        # What OCA would read as something else than written.
        ("root:4,root.a:1:sequential=false", "'sequential=false' is ambiguous"),
        ("root:4,root.a:1:paused=0", "'paused=0' is ambiguous"),
        ("root:4,root.a:1:throttle=-1", "throttle must be a whole number of seconds, not '-1'"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(ChannelsConfigError) as error:
        Channels.parse(text)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    assert isinstance(error.value, ValueError)


CHANNELS = Channels.parse("root:4,root.mail:2,root.mail.bulk:1,root.sale:1")


@pytest.mark.parametrize(
    "job_channel, channel",
    [
        ("root", "root"),
        ("root.mail", "root.mail"),
        ("root.mail.bulk", "root.mail.bulk"),
        ("root.mail.bulk.x.y", "root.mail.bulk"),
        ("root.mail.other", "root.mail"),
        ("root.mailbox", "root"),
        ("root.sale", "root.sale"),
        ("root.purchase", "root"),
        ("mail", "root"),
        ("mail.bulk", "root"),
        ("", "root"),
        (None, "root"),
    ],
)
def test_channel_of(job_channel, channel):
    assert CHANNELS.channel_of(job_channel) == channel


def test_lineage_lists_configured_ancestors_up_to_root():
    assert CHANNELS.lineage("root.mail.bulk.x") == ["root.mail.bulk", "root.mail", "root"]
    assert CHANNELS.lineage("root.other") == ["root"]


def test_channel_of_is_the_nearest_with_a_capacity_of_its_own():
    channels = Channels.parse("root:4,root.mail:2,root.mail.bulk:0:throttle=5")
    assert channels.lineage("root.mail.bulk.x") == ["root.mail.bulk", "root.mail", "root"]
    assert channels.channel_of("root.mail.bulk.x") == "root.mail"


def test_configured_channels_prefers_the_environment(tmp_path):
    config_file = tmp_path / "odoo.conf"
    config_file.write_text("[options]\ndb_name = x\n[queue_job]\nchannels = root:3,root.a:1\n")
    environ = {"ODOO_QUEUE_JOB_CHANNELS": "root:5"}
    assert configured_channels(str(config_file), environ).capacities == {"root": 5}
    assert configured_channels(str(config_file), {}).capacities == {"root": 3, "root.a": 1}
    assert configured_channels(str(config_file), {"ODOO_QUEUE_JOB_CHANNELS": ""}).capacities == {
        "root": 3,
        "root.a": 1,
    }


def test_configured_channels_defaults_to_root_1(tmp_path):
    config_file = tmp_path / "odoo.conf"
    config_file.write_text("[options]\ndb_name = x\n")
    assert configured_channels(str(config_file), {}).capacities == {"root": 1}
    assert configured_channels(None, {}).capacities == {"root": 1}
    assert configured_channels(str(tmp_path / "missing.conf"), {}).capacities == {"root": 1}


def test_configured_channels_error_names_its_source(tmp_path):
    config_file = tmp_path / "odoo.conf"
    config_file.write_text("[queue_job]\nchannels = root:0\n")
    with pytest.raises(ChannelsConfigError, match=r"odoo.conf \[queue_job\] channels: channel"):
        configured_channels(str(config_file), {})
    with pytest.raises(ChannelsConfigError, match="^invalid queue_job channels in ODOO_QUEUE_JOB"):
        configured_channels(None, {"ODOO_QUEUE_JOB_CHANNELS": "root:x"})
