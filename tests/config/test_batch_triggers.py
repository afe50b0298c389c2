"""A batching trigger's keys (``batch``, ``batch_file``) and the file deliveries' options, as
`postbackd check` reports them: at the key's file:line, saying what to write instead."""

from __future__ import annotations

import sys

import pytest

from postbackd.deliveries.directory import DirectoryDelivery
from postbackd.deliveries.sftp import SftpDelivery
from tests.config.test_load import CUSTOMER, Conf, conf

__all__ = ["conf"]

FILE_DELIVERIES = {
    "directory": DirectoryDelivery({}).validate_options,
    "sftp": SftpDelivery({}).validate_options,
}
BATCHING = """
[[trigger]]
name = "ship-file"
customer = "acme"
events = ["order.shipped"]
template = "acme-shipped"
delivery = "directory"
batch = "1h"
options = { path = "/srv/share/out" }
"""


def test_a_batching_trigger_is_read(conf: Conf) -> None:
    conf.write("acme.toml", CUSTOMER + BATCHING + 'batch_file = "{customer}-{end:%Y%m%d}.csv"\n')
    trigger = conf.load().triggers["ship-file"]
    assert trigger.batch is not None and trigger.batch.interval == 3600
    assert trigger.batch_file == "{customer}-{end:%Y%m%d}.csv"


def test_bad_batch_keys_are_reported_at_their_line(conf: Conf) -> None:
    conf.write(
        "acme.toml",
        CUSTOMER
        + BATCHING.replace('batch = "1h"', 'batch = "every hour"')
        + 'batch_file = "../{trigger}.csv"\n',
    )
    errors = conf.errors()
    assert errors[0].startswith(
        "acme.toml:16: [[trigger]] \"ship-file\" batch: invalid batch 'every hour': write an "
        'interval like "1h" or "15m", or a daily time like "daily 18:00"'
    )
    assert errors[1].startswith(
        'acme.toml:18: [[trigger]] "ship-file" batch_file: file name pattern '
        "'../{trigger}.csv' gives '../ship-file.csv': a file name may hold only letters"
    )
    assert len(errors) == 2


def test_a_batching_trigger_cannot_be_ordered(conf: Conf) -> None:
    conf.write("acme.toml", CUSTOMER + BATCHING + "ordered = true\n")
    assert conf.errors() == [
        'acme.toml:18: [[trigger]] "ship-file" ordered: a batching trigger cannot be ordered: '
        "its deliveries go out together, in one file"
    ]


def test_batch_file_needs_batch(conf: Conf) -> None:
    conf.write(
        "acme.toml",
        CUSTOMER + BATCHING.replace('batch = "1h"\n', "") + 'batch_file = "x.csv"\n',
    )
    assert conf.errors() == [
        'acme.toml:17: [[trigger]] "ship-file" batch_file: batch_file needs batch '
        '(e.g. batch = "1h")'
    ]


def test_an_sftp_trigger_must_pin_the_host_key(conf: Conf) -> None:
    sftp = BATCHING.replace('"directory"', '"sftp"').replace(
        'options = { path = "/srv/share/out" }',
        'options = { host = "sftp.example.com", username = "psp", password = "pw" }',
    )
    conf.write("acme.toml", CUSTOMER + sftp)
    (error,) = conf.errors(deliveries=FILE_DELIVERIES)
    assert "pin the server's host key: set options.host_key" in error
    assert error.startswith('acme.toml:17: [[trigger]] "ship-file" options: ')


def test_sftp_without_asyncssh_says_what_to_install(
    conf: Conf, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "asyncssh", None)  # as if it were not installed
    sftp = BATCHING.replace('"directory"', '"sftp"')
    conf.write("acme.toml", CUSTOMER + sftp)
    (error,) = conf.errors(deliveries=FILE_DELIVERIES)
    assert error.endswith(
        "the sftp delivery needs the asyncssh package: install postbackd[sftp] "
        "(pip install 'postbackd[sftp]')"
    )
