"""The typed settings reader offered to plugins: a file's `Table` and a plain mapping's
`MappingReader` find the same problems in the same settings; the loader reads each plugin's
table with its ``read_settings`` (each problem at its key's line, in ``postbackd check`` too);
a source's `AdminEndpoint` takes the place of ``[daemon] admin_listen``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from textwrap import dedent
from typing import Any, ClassVar

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postbackd.commands.common import admin_base_url
from postbackd.config import ConfigError, PluginClasses, load_config
from postbackd.config.reader import MappingReader
from postbackd.plugin import AdminEndpoint, SettingsReader, read_mapping

KEYS = ("name", "flag", "count", "wait", "limit", "mode", "tags", "where", "listen", "door")


def read_everything(reader: SettingsReader) -> tuple[Any, ...]:
    """Every typed read of the protocol, once."""
    reader.check_keys(KEYS)
    return (
        reader.string("name", required=True),
        reader.boolean("flag", False),
        reader.integer("count", 1, maximum=100),
        reader.duration("wait", 2.0),
        reader.size("limit", 1024),
        reader.choice("mode", ("fast", "slow"), "fast"),
        reader.strings("tags"),
        reader.path_value("where"),
        reader.listen("listen", "127.0.0.1:8787"),
        reader.token("door"),  # not "token": the loader masks its values
    )


class Probe:
    """A source plugin that reads its table with `read_everything` and remembers the result."""

    read: ClassVar[list[tuple[Any, ...]]] = []

    @classmethod
    def read_settings(cls, reader: SettingsReader) -> tuple[Any, ...]:
        value = read_everything(reader)
        cls.read.append(value)
        return value


def from_file(conf_dir: Path, table: dict[str, Any]) -> tuple[list[str], tuple[Any, ...]]:
    """What the loader reports for ``[sources.probe]`` = `table`, and what it read."""
    (conf_dir / "a.toml").write_text(tomli_w.dumps({"sources": {"probe": table}}))
    Probe.read.clear()
    try:
        load_config(conf_dir, environ={}, classes=PluginClasses(sources={"probe": Probe}))
    except ConfigError as exc:
        return [d.message for d in exc.errors], Probe.read[0]
    return [], Probe.read[0]


def from_mapping(conf_dir: Path, table: dict[str, Any]) -> tuple[list[str], tuple[Any, ...]]:
    reader = MappingReader(table, "[sources.probe]", conf_dir)
    return reader.problems, read_everything(reader)


TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=6)
VALUES = st.one_of(
    st.booleans(),
    st.integers(-3, 200),
    TEXT,
    st.sampled_from(["30s", "0s", "soon", "1MiB", "huge", "fast", "slow", "fsat", " ", ""]),
    st.sampled_from(["127.0.0.1:80", "[::1]:8787", "0.0.0.0:1", "8787", "host:99999"]),
    st.sampled_from(["rel/dir", "/abs/dir"]),
    st.lists(st.one_of(TEXT, st.integers(0, 9)), max_size=3),
)
TABLES = st.dictionaries(st.sampled_from((*KEYS, "nmae", "colour")), VALUES, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TABLES)
def test_a_file_and_a_mapping_read_alike(table: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        conf_dir = Path(tmp).resolve()
        file_problems, file_value = from_file(conf_dir, table)
        mapping_problems, mapping_value = from_mapping(conf_dir, table)
    assert sorted(file_problems) == sorted(mapping_problems)
    assert file_value == mapping_value


def test_read_mapping_lists_every_problem_naming_table_and_key() -> None:
    with pytest.raises(ValueError) as caught:
        read_mapping(read_everything, {"count": 0, "mode": "fsat", "nmae": "x"}, "[sources.p]")
    assert str(caught.value).splitlines() == [
        '[sources.p] nmae: unknown key "nmae" (did you mean "name"?)',
        '[sources.p]: missing required key "name"',
        "[sources.p] count: must be at least 1, got 0",
        "[sources.p] mode: expected one of fast, slow; got 'fsat' (did you mean \"fast\"?)",
    ]
    value = read_mapping(read_everything, {"name": "n", "where": "d"}, "[sources.p]")
    assert value[0] == "n" and value[7] == Path.cwd().resolve() / "d"


def test_a_plugin_that_raises_while_reading_is_reported_at_its_table(tmp_path: Path) -> None:
    class Broken:
        @classmethod
        def read_settings(cls, reader: SettingsReader) -> None:
            raise RuntimeError("boom")

    (tmp_path / "a.toml").write_text("\n[deliveries.broken]\nx = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, environ={}, classes=PluginClasses(deliveries={"broken": Broken}))
    (error,) = caught.value.errors
    assert error.line == 2
    assert error.message.endswith("Broken.read_settings raised RuntimeError: boom")


class AdminSource:
    """A third-party source that serves the admin API on its own listener."""

    @classmethod
    def read_settings(cls, reader: SettingsReader) -> AdminEndpoint:
        return AdminEndpoint(reader.listen("bind", "127.0.0.1:9000"), reader.token("key"))

    @classmethod
    def admin_endpoint(cls, settings: AdminEndpoint) -> AdminEndpoint:
        return settings


def test_a_source_admin_endpoint_replaces_admin_listen(tmp_path: Path) -> None:
    classes = PluginClasses(sources={"web": AdminSource})
    conf = tmp_path / "a.toml"
    conf.write_text('[daemon]\nadmin_listen = "0.0.0.0:8787"\n[sources.web]\nkey = "k"\n')
    config = load_config(tmp_path, environ={}, classes=classes)
    # [daemon] admin_listen is not opened, so not judged; the source's token is the admin token
    assert config.admin_endpoint == AdminEndpoint("127.0.0.1:9000", "k")
    assert config.daemon.admin_token == "k"
    # without the plugin, nothing is known of the table: [daemon] admin_listen serves
    with pytest.raises(ConfigError, match=r"admin_listen: listens on 0\.0\.0\.0"):
        load_config(tmp_path, environ={})

    conf.write_text('[sources.web]\nbind = "0.0.0.0:9000"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, environ={}, classes=classes)
    (error,) = caught.value.errors
    assert (error.line, error.message.split(" without")[0]) == (
        1,
        "[sources.web]: serves the admin API on 0.0.0.0, which is not loopback,",
    )
    conf.write_text('[sources.web]\nbind = "0.0.0.0:9000"\n[daemon]\nadmin_token = "a"\n')
    assert load_config(tmp_path, environ={}, classes=classes).daemon.admin_token == "a"


def test_check_reports_a_bad_source_setting_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "sources.toml").write_text(
        dedent(
            """\
            [sources.http]
            listen = "127.0.0.1:8787"
            max_body = "huge"

            [sources.filedrop]
            directory = "incoming"
            keep_processed = "a week"

            [sources.amqp]
            queue = "orders"
            prefetch = 0
            routing_key = "x"

            [deliveries.email]
            pool_size = 0
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "postbackd", "check", "-c", str(tmp_path), "--no-plugins"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "POSTBACKD_DISABLE_PLUGINS": ""},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    where = f"{tmp_path}/sources.toml"
    lines = done.stdout.splitlines()
    assert lines == [
        f"{where}:3: [sources.http] max_body: invalid size 'huge': use e.g. \"512KiB\", "
        '"1MiB", "64MB"',
        f"{where}:7: [sources.filedrop] keep_processed: invalid duration 'a week': use a "
        'number with a unit (ms, s, m, h, d, w), e.g. "30s", "5m", "1h30m"',
        f"{where}:11: [sources.amqp] prefetch: must be at least 1, got 0",
        f"{where}:12: [sources.amqp] routing_key: only used with declare = true (without it "
        "the queue is consumed as it exists on the broker); set declare = true or remove it",
        f"{where}:12: [sources.amqp] routing_key: needs exchange: the exchange to bind the "
        "queue to",
        f"{where}:15: [deliveries.email] pool_size: must be at least 1, got 0",
    ]


def test_reload_and_send_find_the_admin_api_where_it_is_served(tmp_path: Path) -> None:
    conf = tmp_path / "a.toml"
    conf.write_text('[daemon]\nadmin_listen = "127.0.0.1:9001"\nadmin_token = "a"\n')
    assert admin_base_url(tmp_path) == ("http://127.0.0.1:9001", "a")
    conf.write_text('[sources.http]\nlisten = "[::]:9002"\ntoken = "t"\n')
    assert admin_base_url(tmp_path) == ("http://127.0.0.1:9002", "t")
