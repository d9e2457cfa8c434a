# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The channels setting: parsing, mapping of job channels, full channels, where it is read."""

import doctest

import pytest

from queue_job.jobrunner import channels as channels_module
from queue_job.jobrunner.channels import Channels, ChannelsConfigError, configured_channels


def test_doctests():
    results = doctest.testmod(channels_module)
    assert results.attempted > 0
    assert results.failed == 0


@pytest.mark.parametrize(
    "text, capacities",
    [
        ("root:4", {"root": 4}),
        ("root:4,root.mail:1", {"root": 4, "root.mail": 1}),
        (" root : 4 , root.mail : 2 ,", {"root": 4, "root.mail": 2}),
        ("root:3\n  root.a\n\n  root.a.b:2\n", {"root": 3, "root.a": 1, "root.a.b": 2}),
        ("root.mail:2", {"root.mail": 2, "root": 1}),
        ("root", {"root": 1}),
        ("", {"root": 1}),
        ("root:2,root.sale_order-bulk:1", {"root": 2, "root.sale_order-bulk": 1}),
    ],
)
def test_parse(text, capacities):
    assert Channels.parse(text).capacities == capacities


@pytest.mark.parametrize(
    "text, message",
    [
        ("root:two", "channel 'root': capacity must be a positive integer, not 'two'"),
        ("root:0", "channel 'root': capacity must be a positive integer, not '0'"),
        ("root:4,root.a:-1", "channel 'root.a': capacity must be a positive integer, not '-1'"),
        ("root:4,root.a:", "channel 'root.a': capacity must be a positive integer, not ''"),
        ("root:4,sub:2", "channel 'sub' is not under root (write 'root.sub')"),
        ("rooty:1", "channel 'rooty' is not under root"),
        ("root:1,root.a:1,root.a:2", "channel 'root.a' is configured twice"),
        ("root:1,:2", "a channel entry has no name"),
        ("root:1,root..a:2", "invalid channel name 'root..a'"),
        ("root:1,root.a b:2", "invalid channel name 'root.a b'"),
        ("root:1,root.a:2:sequential", "channel 'root.a': unknown option 'sequential'"),
        ("root:1,root.a:2:throttle=3", "unknown option 'throttle=3'"),
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
