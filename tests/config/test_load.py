"""The configuration loader: merging conf.d, every kind of error with its file:line, defaults,
relative paths, and the example configuration of the repository."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from postbackd.config.load import (
    BUILTIN_TEMPLATE_NAMES,
    ConfigError,
    Diagnostic,
    config_files,
    load_config,
    load_config_with_warnings,
)
from postbackd.config.model import AllowedDestination, Config, SmtpConfig
from postbackd.config.tomllines import TomlLines, declared_names
from postbackd.generation import ConfigHolder, Plugins
from postbackd.plugins import load_plugins
from tests.paths import example_conf

# the built-in sources and deliveries read their tables, as in `postbackd check`
BUILTIN = Plugins(load_plugins((), use_entry_points=False), ConfigHolder()).classes()

CUSTOMER = """
[[customer]]
id = "acme"
name = "Acme Prints"

[[template]]
name = "acme-shipped"
format = "json"
body = '{ "orderId": "{{ orderId }}" }'
"""

TRIGGER = """
[[trigger]]
name = "acme-order-shipped"
customer = "acme"
events = ["order.shipped"]
template = "acme-shipped"
delivery = "webhook"
"""


class Conf:
    """A configuration directory under tmp_path, written file by file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    def load(self, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Config:
        return load_config(self.root, environ=environ or {}, classes=BUILTIN, **kwargs)

    def rel(self, diagnostic: Diagnostic) -> str:
        return f"{diagnostic.path.relative_to(self.root)}:{diagnostic.line}: {diagnostic.message}"

    def errors(self, **kwargs: Any) -> list[str]:
        with pytest.raises(ConfigError) as info:
            self.load(**kwargs)
        assert info.value.errors, "ConfigError without errors"
        return [self.rel(d) for d in info.value.errors]

    def warnings(self, **kwargs: Any) -> list[str]:
        environ = kwargs.pop("environ", {})
        result = load_config_with_warnings(self.root, environ=environ, classes=BUILTIN, **kwargs)
        return [self.rel(d) for d in result.warnings]


@pytest.fixture
def conf(tmp_path: Path) -> Conf:
    root = tmp_path / "conf.d"
    root.mkdir()
    return Conf(root)


def webhook_validator(options: Mapping[str, Any]) -> list[str]:
    problems = []
    if "url" not in options:
        problems.append('url: required, e.g. url = "https://example.com/hook"')
    elif not str(options["url"]).startswith(("http://", "https://")):
        problems.append("url: must start with http:// or https://")
    return problems


DELIVERIES = {"webhook": webhook_validator, "email": lambda options: []}


# --- a whole, valid configuration -------------------------------------------------------------


def test_design_example_loads_typed(conf: Conf, tmp_path: Path) -> None:
    conf.write(
        "postbackd.toml",
        """
        [daemon]
        spool = "/var/lib/postbackd/spool.db"
        plugin_dirs = ["/etc/postbackd/plugins"]
        allow_private_destinations = false
        allow_destinations = ["10.1.2.0/24", "192.0.2.7"]
        breaker_failures = 10
        breaker_cooldown = "30s"
        retention = "30d"
        admin_listen = "127.0.0.1:8787"
        concurrency = 256
        per_destination = 8
        grace = "10s"
        min_free = "64MiB"
        proxy = "http://127.0.0.1:4750"
        synchronous = "NORMAL"

        [sources.http]
        listen = "0.0.0.0:8787"
        token = "${env:POSTBACKD_TOKEN}"
        max_body = "1MiB"

        [sources.amqp]
        url = "amqp://guest:guest@localhost/"
        queue = "order-events"
        prefetch = 64

        [ui]
        enabled = false

        [smtp]
        host = "smtp.example.com"
        port = 587
        username = "postbacks@example.com"
        password = "${env:SMTP_PASSWORD}"
        from_address = "postbacks@example.com"
        from_name = "Example Print Co."
        tls = "starttls"
        timeout = "1m"
        """,
    )
    conf.write(
        "customers/acme.toml",
        CUSTOMER
        + """
        [[trigger]]
        name = "acme-order-shipped"
        customer = "acme"
        events = ["Order shipped", "order.*"]
        status = "inactive"
        template = "acme-shipped"
        delivery = "webhook"
        retry = false
        retry_schedule = ["5s", "1h30m"]
        ordered = true
        supersede = true
        [trigger.options]
        url = "https://acme.example.com/hooks/orders"
        headers = { "X-Api-Key" = "${env:ACME_KEY}" }

        [[lookup]]
        name = "carriers"
        key = "shipmentMethodUid"
        customer = "acme"
        values = { "dhl_express_uid" = "DHL Express" }
        """,
    )
    env = {"POSTBACKD_TOKEN": "tok", "SMTP_PASSWORD": "pw", "ACME_KEY": "key"}
    config = conf.load(environ=env, deliveries=DELIVERIES)
    daemon = config.daemon
    assert daemon.spool == Path("/var/lib/postbackd/spool.db")
    assert daemon.plugin_dirs == (Path("/etc/postbackd/plugins"),)
    assert daemon.allow_destinations == (
        AllowedDestination(ipaddress.ip_network("10.1.2.0/24")),
        AllowedDestination(ipaddress.ip_network("192.0.2.7/32")),
    )
    assert (daemon.breaker_cooldown, daemon.retention, daemon.grace) == (30, 30 * 86400, 10)
    assert daemon.min_free == 64 * 1024 * 1024
    assert daemon.synchronous == "NORMAL"
    assert daemon.admin_token == "tok"  # defaults to the [sources.http] token
    assert config.sources["http"].settings["token"] == "tok"
    assert config.sources["amqp"].settings == {
        "url": "amqp://guest:guest@localhost/",
        "queue": "order-events",
        "prefetch": 64,
    }
    assert config.ui.enabled is False
    smtp = config.smtp
    assert (smtp.host, smtp.port, smtp.password, smtp.tls, smtp.timeout) == (
        "smtp.example.com",
        587,
        "pw",
        "starttls",
        60,
    )
    trigger = config.triggers["acme-order-shipped"]
    assert trigger.events == ("order.shipped", "order.*")
    assert trigger.retry_schedule == (5, 5400)
    assert trigger.delays == ()
    assert (trigger.status, trigger.ordered, trigger.supersede) == ("inactive", True, True)
    assert trigger.options["headers"] == {"X-Api-Key": "key"}
    assert trigger.location.path == conf.root / "customers/acme.toml"
    assert trigger.location.line == 10
    assert config.customers["acme"].name == "Acme Prints"
    assert config.templates["acme-shipped"].format == "json"
    assert config.lookups["carriers"].values == {"dhl_express_uid": "DHL Express"}


def test_defaults_without_any_table(conf: Conf, tmp_path: Path, monkeypatch: Any) -> None:
    conf.write("empty.toml", "# nothing yet\n")
    monkeypatch.chdir(tmp_path)
    config = conf.load()
    assert config.daemon.spool == tmp_path / "var" / "spool.db"
    assert config.smtp == SmtpConfig()
    assert config.smtp.host == "localhost" and config.smtp.port == 25
    assert config.ui.enabled is True
    assert config.triggers == {} and config.sources == {}
    state = conf.load(environ={"STATE_DIRECTORY": "/var/lib/postbackd:/var/lib/other"})
    assert state.daemon.spool == Path("/var/lib/postbackd/spool.db")


def test_empty_directory_is_a_warning_and_a_missing_one_an_error(conf: Conf) -> None:
    assert conf.warnings() == [".:0: no *.toml files: running with the defaults"]
    with pytest.raises(ConfigError) as info:
        load_config(conf.root / "nope", environ={})
    assert "configuration directory not found" in str(info.value)


def test_diagnostic_text() -> None:
    diagnostic = Diagnostic(Path("conf.d/a.toml"), 7, "bad")
    assert str(diagnostic) == "conf.d/a.toml:7: bad"
    assert diagnostic.is_error
    assert str(Diagnostic(Path("conf.d"), 0, "gone", "warning")) == "conf.d: gone"


# --- which files are read ---------------------------------------------------------------------


def test_files_recursive_sorted_and_ignored(conf: Conf) -> None:
    for name in (
        "b.toml",
        "a/z.toml",
        "a.toml",
        ".hidden.toml",
        "draft.toml~",
        "x.toml.swp",
        "x.toml.tmp",
        ".git/config.toml",
        "notes.txt",
    ):
        conf.write(name, "")
    assert [p.relative_to(conf.root).as_posix() for p in config_files(conf.root)] == [
        "a/z.toml",
        "a.toml",
        "b.toml",
    ]
    conf.write(".hidden.toml", "this is not toml at all")
    conf.write("a.toml.swp", "neither is this")
    conf.load()


# --- syntax errors and cascades ---------------------------------------------------------------


def test_syntax_error_has_its_line_and_other_files_are_still_checked(conf: Conf) -> None:
    conf.write("broken.toml", '[daemon]\nspool = "x"\ngrace = \n')
    conf.write("other.toml", "[smtp]\nprot = 25\n")
    assert conf.errors() == [
        "broken.toml:3: TOML syntax error: Invalid value (column 9)",
        'other.toml:2: [smtp] prot: unknown key "prot" (did you mean "port"?)',
    ]


def test_references_into_a_broken_file_do_not_cascade(conf: Conf) -> None:
    conf.write(
        "customers/acme.toml",
        '[[customer]]\nid = "acme"\nname = "Acme"\n\n[[template]]\nname = "acme-shipped"\n'
        "format = json\n",
    )
    conf.write(
        "triggers.toml",
        TRIGGER
        + """
        [[trigger]]
        name = "globex"
        customer = "globex"
        events = ["order.shipped"]
        template = "acme-shipped"
        delivery = "webhook"
        """,
    )
    assert conf.errors() == [
        "customers/acme.toml:7: TOML syntax error: Invalid value (column 10)",
        'triggers.toml:10: [[trigger]] "globex" customer: no customer "globex"; '
        f"{conf.root / 'customers/acme.toml'} could not be read and may define it",
    ]


def test_declared_names_of_a_broken_file() -> None:
    text = (
        '[[customer]]\nid = "acme"\n[daemon]\nname = "not-a-template"\n'
        "[[template]]\nname = 'shipped'\nformat = \n"
    )
    names = declared_names(text)
    assert names["customer"] == {"acme"} and names["template"] == {"shipped"}


def test_not_utf8_names_the_line(conf: Conf) -> None:
    (conf.root / "latin1.toml").write_bytes(b'[smtp]\nfrom_name = "K\xf8benhavn"\n')
    assert conf.errors() == ["latin1.toml:2: not UTF-8 text (byte 21): save the file as UTF-8"]


# --- structure: tables, keys, types -----------------------------------------------------------


def test_unknown_tables_and_top_level_keys(conf: Conf) -> None:
    conf.write("a.toml", 'spool = "x"\n\n[deamon]\ngrace = "1s"\n\n[[triger]]\nname = "x"\n')
    errors = conf.errors()
    allowed = (
        "a file may hold [daemon], [smtp], [ui], [alerts], [sources.NAME], [deliveries.NAME], "
        "[[customer]], [[template]], [[trigger]], [[lookup]], [[sla]]"
    )
    assert errors == [
        f"a.toml:1: unknown table [spool]: {allowed}",
        f"a.toml:3: unknown table [deamon] (did you mean [daemon]?): {allowed}",
        f"a.toml:6: unknown table [triger] (did you mean [[trigger]]?): {allowed}",
    ]


def test_table_forms(conf: Conf) -> None:
    conf.write(
        "a.toml",
        """
        [[daemon]]
        grace = "1s"

        [customer]
        id = "acme"

        [sources]
        listen = "127.0.0.1:1"
        """,
    )
    assert conf.errors() == [
        "a.toml:1: write [daemon] (one table), not [[daemon]]",
        "a.toml:4: write [[customer]] (one per customer), not [customer]",
        "a.toml:8: [sources] holds only tables: write [sources.listen] and its keys",
    ]


def test_unknown_keys_with_did_you_mean(conf: Conf) -> None:
    conf.write("acme.toml", CUSTOMER + TRIGGER + "retyr = true\nwhatever = 1\n")
    errors = conf.errors()
    assert errors[0] == (
        'acme.toml:16: [[trigger]] "acme-order-shipped" retyr: unknown key "retyr" '
        '(did you mean "retry"?)'
    )
    assert errors[1].startswith(
        'acme.toml:17: [[trigger]] "acme-order-shipped" whatever: unknown key "whatever" '
        "(known: batch, batch_file, customer, delivery, events,"
    )


def test_wrong_types(conf: Conf) -> None:
    conf.write(
        "a.toml",
        """
        [smtp]
        port = "25"
        from_name = 7

        [daemon]
        allow_private_destinations = "yes"
        plugin_dirs = "/opt/plugins"
        concurrency = 0

        [ui]
        enabled = 1
        """,
    )
    assert conf.errors() == [
        "a.toml:2: [smtp] port: expected an integer, got a string ('25')",
        "a.toml:3: [smtp] from_name: expected a string, got an integer (7)",
        "a.toml:6: [daemon] allow_private_destinations: expected true or false, "
        "got a string ('yes')",
        "a.toml:7: [daemon] plugin_dirs: expected an array of strings, got a string "
        "('/opt/plugins')",
        "a.toml:8: [daemon] concurrency: must be at least 1, got 0",
        "a.toml:11: [ui] enabled: expected true or false, got an integer (1)",
    ]


def test_missing_required_keys_point_at_the_table(conf: Conf) -> None:
    conf.write(
        "a.toml",
        CUSTOMER
        + """
        [[trigger]]
        name = "t"
        customer = "acme"
        events = []
        delivery = "webhook"

        [[lookup]]
        key = "shipmentMethodUid"
        """,
    )
    assert conf.errors() == [
        'a.toml:10: [[trigger]] "t": missing required key "template"',
        'a.toml:13: [[trigger]] "t" events: empty: name at least one event type, '
        'e.g. ["order.shipped"]',
        'a.toml:16: [[lookup]] #1: missing required key "name"',
        'a.toml:16: [[lookup]] #1: missing required key "values"',
    ]


# --- duplicates -------------------------------------------------------------------------------


def test_single_tables_at_most_once(conf: Conf) -> None:
    conf.write("a.toml", '# daemon settings\n[daemon]\ngrace = "1s"\n')
    conf.write("b/c.toml", '[smtp]\nport = 25\n\n[daemon]\ngrace = "2s"\n')
    assert conf.errors() == [
        f"b/c.toml:4: [daemon] is already set in {conf.root / 'a.toml'}:2: "
        "it may appear only once in the directory"
    ]


def test_duplicate_names_across_files_name_both(conf: Conf) -> None:
    conf.write("a.toml", CUSTOMER + TRIGGER + '\n[sources.http]\nlisten = "127.0.0.1:1"\n')
    conf.write(
        "b.toml",
        '[[customer]]\nid = "acme"\n\n[[trigger]]\nname = "x"\n\n'
        '[sources.http]\nlisten = "127.0.0.1:2"\n' + TRIGGER,
    )
    a = conf.root / "a.toml"
    assert conf.errors() == [
        f'b.toml:2: [[customer]] "acme" id: duplicate customer id "acme": also defined at {a}:1',
        'b.toml:4: [[trigger]] "x": missing required key "customer"',
        'b.toml:4: [[trigger]] "x": missing required key "events"',
        'b.toml:4: [[trigger]] "x": missing required key "template"',
        'b.toml:4: [[trigger]] "x": missing required key "delivery"',
        f"b.toml:7: duplicate [sources.http]: also defined at {a}:17",
        f'b.toml:11: [[trigger]] "acme-order-shipped" name: duplicate trigger name '
        f'"acme-order-shipped": also defined at {a}:10',
    ]


def test_duplicate_in_one_file(conf: Conf) -> None:
    conf.write("a.toml", CUSTOMER + CUSTOMER.replace("acme-shipped", "other"))
    path = conf.root / "a.toml"
    assert conf.errors() == [
        f'a.toml:11: [[customer]] "acme" id: duplicate customer id "acme": also defined at {path}:1'
    ]


# --- triggers and their references ------------------------------------------------------------


def test_trigger_references(conf: Conf) -> None:
    conf.write("acme.toml", CUSTOMER)
    conf.write(
        "triggers.toml",
        """
        [[trigger]]
        name = "t1"
        customer = "acmee"
        events = ["order.shipped"]
        template = "acme-shiped"
        delivery = "webhok"

        [[trigger]]
        name = "t2"
        customer = "acme"
        events = ["order.shipped"]
        template = "builtin:order-status-jsn"
        delivery = "email"
        """,
    )
    known = ", ".join(sorted(BUILTIN_TEMPLATE_NAMES))
    assert conf.errors(deliveries=DELIVERIES) == [
        'triggers.toml:3: [[trigger]] "t1" customer: no customer "acmee" (did you mean "acme"?)',
        'triggers.toml:5: [[trigger]] "t1" template: no template "acme-shiped" '
        '(did you mean "acme-shipped"?)',
        "triggers.toml:6: [[trigger]] \"t1\" delivery: unknown delivery 'webhok' "
        "(known: email, webhook)",
        'triggers.toml:12: [[trigger]] "t2" template: no built-in template '
        f'"builtin:order-status-jsn" (did you mean "builtin:order-status-json"?) (known: {known})',
    ]


def test_builtin_templates_and_unchecked_deliveries(conf: Conf) -> None:
    conf.write("acme.toml", CUSTOMER)
    for index, name in enumerate(sorted(BUILTIN_TEMPLATE_NAMES)):
        conf.write(
            f"t{index}.toml",
            TRIGGER.replace("acme-shipped", name)
            .replace("acme-order-shipped", f"t{index}")
            .replace('"webhook"', '"carrier-pigeon"'),
        )
    config = conf.load()
    assert {t.template for t in config.triggers.values()} == BUILTIN_TEMPLATE_NAMES


def test_delivery_options_are_validated_by_the_plugin(conf: Conf) -> None:
    conf.write(
        "acme.toml",
        CUSTOMER
        + TRIGGER
        + '[trigger.options]\nurl = "ftp://acme.example"\n'
        + TRIGGER.replace("acme-order-shipped", "no-options"),
    )
    assert conf.errors(deliveries=DELIVERIES) == [
        'acme.toml:17: [[trigger]] "acme-order-shipped" options.url: '
        "must start with http:// or https://",
        'acme.toml:19: [[trigger]] "no-options" options: url: required, '
        'e.g. url = "https://example.com/hook"',
    ]


def test_a_failing_validator_is_an_error_not_a_crash(conf: Conf) -> None:
    def broken(options: Mapping[str, Any]) -> list[str]:
        raise KeyError("boom")

    conf.write("acme.toml", CUSTOMER + TRIGGER)
    assert conf.errors(deliveries={"webhook": broken}) == [
        "acme.toml:10: [[trigger]] \"acme-order-shipped\" options: delivery 'webhook' failed "
        "to check these options: KeyError: 'boom'"
    ]


def test_delivery_tables_are_free_form_but_named(conf: Conf) -> None:
    conf.write(
        "d.toml",
        '[deliveries.webhook]\nuser_agent = "x"\nca_file = "certs/ca.pem"\n\n'
        '[deliveries.sms]\nkey = "k"\n',
    )
    errors = conf.errors(deliveries=DELIVERIES)
    assert errors == ["d.toml:5: [deliveries.sms]: unknown delivery 'sms' (known: email, webhook)"]
    config = conf.load()
    assert config.deliveries["webhook"] == {
        "user_agent": "x",
        "ca_file": str(conf.root.resolve() / "certs/ca.pem"),
    }


def test_supersede_needs_ordered(conf: Conf) -> None:
    conf.write("acme.toml", CUSTOMER + TRIGGER + "supersede = true\n")
    assert conf.errors() == [
        'acme.toml:16: [[trigger]] "acme-order-shipped" supersede: supersede = true needs '
        "ordered = true: only an ordered queue has an older status to replace"
    ]


def test_event_names(conf: Conf) -> None:
    conf.write(
        "acme.toml",
        CUSTOMER
        + TRIGGER.replace(
            '["order.shipped"]',
            """[
            "Order Delivered",
            "received",
            "order.*",
            "order.shiped",
            "invoice.paid",
            "Order shiped",
            "shipped",
            "",
            "billing.*",
        ]""",
        ),
    )
    hints = (
        ': use a type like "order.shipped", an alias like "Order shipped", a glob like '
        '"order.*", or "namespace.name" for a custom type'
    )
    trigger = '[[trigger]] "acme-order-shipped"'
    assert conf.errors() == [
        f'acme.toml:19: {trigger} events[5]: unknown event type "Order shiped" '
        f'(did you mean "order shipped"?){hints}',
        f'acme.toml:20: {trigger} events[6]: unknown event type "shipped" '
        f'(did you mean "order.shipped"?){hints}',
        f"acme.toml:21: {trigger} events[7]: empty event name",
    ]
    conf.write(
        "acme.toml",
        (conf.root / "acme.toml")
        .read_text()
        .replace('    "Order shiped",\n', "")
        .replace('    "shipped",\n', "")
        .replace('    "",\n', ""),
    )
    routed = "; it is routed only if a plugin or a client sends that type"
    assert conf.warnings() == [
        f'acme.toml:17: {trigger} events[3]: no known source emits "order.shiped" '
        f'(did you mean "order.shipped"?){routed}',
        f'acme.toml:18: {trigger} events[4]: no known source emits "invoice.paid"{routed}',
        f'acme.toml:19: {trigger} events[5]: no known source emits events matching "billing.*"',
    ]
    events = conf.load().triggers["acme-order-shipped"].events
    assert events == (
        "order.delivered",
        "order.received",
        "order.*",
        "order.shiped",
        "invoice.paid",
        "billing.*",
    )


# --- values: units, enums, networks, listeners ------------------------------------------------


def test_bad_durations_and_sizes(conf: Conf) -> None:
    conf.write(
        "a.toml",
        """
        [daemon]
        breaker_cooldown = "5x"
        min_free = "lots"
        retention = true
        """,
    )
    conf.write(
        "acme.toml",
        CUSTOMER + TRIGGER + 'retry_schedule = [\n  "5s",\n  "soon",\n  10,\n  "-1m",\n]\n',
    )
    errors = conf.errors()
    assert errors[:3] == [
        "a.toml:2: [daemon] breaker_cooldown: invalid duration '5x': use a number with a unit "
        '(ms, s, m, h, d, w), e.g. "30s", "5m", "1h30m"',
        'a.toml:3: [daemon] min_free: invalid size \'lots\': use e.g. "512KiB", "1MiB", "64MB"',
        'a.toml:4: [daemon] retention: expected a duration like "30s", got a boolean',
    ]
    trigger = '[[trigger]] "acme-order-shipped"'
    assert errors[3].startswith(
        f"acme.toml:18: {trigger} retry_schedule[1]: invalid duration 'soon'"
    )
    assert errors[4].startswith(
        f"acme.toml:20: {trigger} retry_schedule[3]: invalid duration '-1m'"
    )
    assert len(errors) == 5


def test_empty_retry_schedule(conf: Conf) -> None:
    conf.write("acme.toml", CUSTOMER + TRIGGER + "retry_schedule = []\n")
    assert conf.errors() == [
        'acme.toml:16: [[trigger]] "acme-order-shipped" retry_schedule: empty: list at least one '
        "delay, or set retry = false"
    ]


def test_bad_enum_values(conf: Conf) -> None:
    conf.write(
        "a.toml",
        """
        [smtp]
        tls = "starttsl"

        [daemon]
        synchronous = "OFF"

        [[customer]]
        id = "acme"

        [[template]]
        name = "t"
        format = "jsno"
        body = "{}"

        [[trigger]]
        name = "x"
        customer = "acme"
        events = ["order.shipped"]
        template = "t"
        delivery = "webhook"
        status = "paused"
        """,
    )
    assert conf.errors() == [
        "a.toml:2: [smtp] tls: expected one of starttls, implicit, none; got 'starttsl' "
        '(did you mean "starttls"?)',
        "a.toml:5: [daemon] synchronous: expected one of FULL, NORMAL; got 'OFF'",
        'a.toml:12: [[template]] "t" format: expected one of json, xml, text, html, csv; '
        "got 'jsno' "
        '(did you mean "json"?)',
        "a.toml:21: [[trigger]] \"x\" status: expected one of active, inactive; got 'paused'",
    ]


def test_bad_networks(conf: Conf) -> None:
    conf.write(
        "a.toml",
        '[daemon]\nallow_destinations = ["10.1.2.0/24", "10.1.2.3/24", "intranet", 10]\n',
    )
    assert conf.errors() == [
        "a.toml:2: [daemon] allow_destinations[3]: expected a string, got an integer",
    ]
    conf.write(
        "a.toml",
        '[daemon]\nallow_destinations = [\n  "10.1.2.0/24",\n  "10.1.2.3/24",\n  "intranet",\n]\n',
    )
    assert conf.errors() == [
        'a.toml:4: [daemon] allow_destinations[1]: not a network like "10.1.2.0/24" or an '
        'address: 10.1.2.3/24 has host bits set (did you mean "10.1.2.0/24"?)',
        "a.toml:5: [daemon] allow_destinations[2]: a host name needs a port ('intranet' would "
        'trust every port of whatever it resolves to): write "intranet:443" (the receiver\'s '
        "port), or use an address",
    ]


def test_http_source_listen_token_and_body_size(conf: Conf) -> None:
    conf.write(
        "a.toml",
        """
        [sources.http]
        listen = "0.0.0.0:8787"
        max_body = "huge"

        [daemon]
        admin_listen = "8787"
        proxy = "socks5://127.0.0.1:1080"
        """,
    )
    errors = conf.errors()
    assert errors[0].startswith(
        "a.toml:2: [sources.http] listen: listens on 0.0.0.0, which is not loopback, without a "
        'token: anyone who can reach it could submit events. Set token = "${env:POSTBACKD_TOKEN}"'
    )
    assert errors[1:] == [
        'a.toml:3: [sources.http] max_body: invalid size \'huge\': use e.g. "512KiB", "1MiB", '
        '"64MB"',
        'a.toml:6: [daemon] admin_listen: expected "host:port" like "127.0.0.1:8787", got \'8787\'',
        'a.toml:7: [daemon] proxy: expected an http:// or https:// URL like "http://127.0.0.1:4750"',
    ]
    for listen in ("127.0.0.1:8787", "[::1]:8787", "localhost:8787"):
        conf.write("a.toml", f'[sources.http]\nlisten = "{listen}"\n')
        assert conf.load().daemon.admin_token is None
    conf.write("a.toml", '[sources.http]\nlisten = "[::]:8787"\ntoken = "t"\n')
    assert conf.load().daemon.admin_token == "t"
    conf.write(
        "a.toml", '[sources.http]\nlisten = "[::]:8787"\ntoken = "t"\n[daemon]\nadmin_token = "a"\n'
    )
    assert conf.load().daemon.admin_token == "a"


def test_smtp_checks(conf: Conf) -> None:
    conf.write(
        "a.toml",
        '[smtp]\nport = 70000\nfrom_address = "postbacks"\nusername = "u"\ntimeout = "x"\n',
    )
    errors = conf.errors()
    assert errors[:3] == [
        "a.toml:2: [smtp] port: not a port number: 70000",
        "a.toml:3: [smtp] from_address: not an email address: 'postbacks'",
        "a.toml:4: [smtp] username: username and password go together: set password as well "
        '(e.g. password = "${env:SMTP_PASSWORD}")',
    ]
    assert errors[3].startswith("a.toml:5: [smtp] timeout: invalid duration 'x'")


# --- items ------------------------------------------------------------------------------------


def test_template_checks(conf: Conf) -> None:
    conf.write(
        "t.toml",
        """
        [[template]]
        name = "both"
        format = "json"
        body = "{}"
        body_file = "x.json"

        [[template]]
        name = "neither"
        format = "text"

        [[template]]
        name = "missing-file"
        format = "text"
        body_file = "templates/nope.txt"

        [[template]]
        name = "builtin:mine"
        body = "x"
        """,
    )
    nope = conf.root.resolve() / "templates/nope.txt"
    assert conf.errors() == [
        't.toml:5: [[template]] "both" body_file: set body or body_file, not both',
        "t.toml:7: [[template]] \"neither\": missing the body: set body = '''...''' or "
        'body_file = "path"',
        f't.toml:14: [[template]] "missing-file" body_file: cannot read {nope}: '
        "No such file or directory",
        't.toml:16: [[template]] "builtin:mine": missing required key "format"',
        't.toml:17: [[template]] "builtin:mine" name: "builtin:" is reserved for built-in '
        "templates; rename it",
    ]


def test_customer_and_lookup_checks(conf: Conf) -> None:
    conf.write(
        "c.toml",
        """
        [[customer]]
        id = "acme prints"

        [[customer]]
        id = ""

        [[lookup]]
        name = "carriers"
        key = "shipmentMethodUid"
        customer = "globex"
        values = { "dhl" = "DHL", "ups" = 5 }
        """,
    )
    assert conf.errors() == [
        "c.toml:2: [[customer]] \"acme prints\" id: 'acme prints' may hold only letters, digits, "
        "'_', '.' and '-'",
        "c.toml:5: [[customer]] #2 id: must not be empty",
        'c.toml:11: [[lookup]] "carriers" values.ups: expected a string, got an integer',
    ]
    conf.write("c.toml", (conf.root / "c.toml").read_text().replace(', "ups" = 5', ""))
    conf.write("c.toml", "\n".join((conf.root / "c.toml").read_text().splitlines()[6:]) + "\n")
    assert conf.errors() == ['c.toml:4: [[lookup]] "carriers" customer: no customer "globex"']


def test_customer_name_defaults_to_its_id(conf: Conf) -> None:
    conf.write("c.toml", '[[customer]]\nid = "acme.eu_1-x"\n')
    assert conf.load().customers["acme.eu_1-x"].name == "acme.eu_1-x"


# --- relative paths ---------------------------------------------------------------------------


def test_relative_paths_resolve_against_their_file(conf: Conf, tmp_path: Path) -> None:
    conf.write(
        "sub/daemon.toml",
        """
        [daemon]
        spool = "../../state/spool.db"
        plugin_dirs = ["plugins", "/abs/plugins"]

        [sources.mydrop]   # a third-party source that reads its table without the reader
        directory = "../../incoming"
        archive_dir = "done"
        key_path = "/etc/key.pem"
        label = "relative/but/not/a/path"
        """,
    )
    conf.write("customers/templates/shipped.json.j2", '{ "id": "{{ orderId }}" }\n')
    conf.write(
        "customers/acme.toml",
        CUSTOMER.replace(
            'body = \'{ "orderId": "{{ orderId }}" }\'', 'body_file = "templates/shipped.json.j2"'
        ),
    )
    config = conf.load()
    root = tmp_path.resolve()
    assert config.daemon.spool == root / "state/spool.db"
    assert config.daemon.plugin_dirs == (root / "conf.d/sub/plugins", Path("/abs/plugins"))
    assert config.sources["mydrop"].settings == {
        "directory": str(root / "incoming"),
        "archive_dir": str(root / "conf.d/sub/done"),
        "key_path": "/etc/key.pem",
        "label": "relative/but/not/a/path",
    }
    template = config.templates["acme-shipped"]
    assert template.body == '{ "id": "{{ orderId }}" }\n'
    assert template.body_location is not None
    assert template.body_location.path == root / "conf.d/customers/templates/shipped.json.j2"


def test_relative_conf_dir_from_its_parent(conf: Conf, tmp_path: Path, monkeypatch: Any) -> None:
    conf.write("a.toml", '[daemon]\nspool = "spool.db"\n[smtp]\nport = "x"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(Path("conf.d"), environ={})
    assert (
        str(info.value) == "conf.d/a.toml:4: [smtp] port: expected an integer, got a string ('x')"
    )
    conf.write("a.toml", '[daemon]\nspool = "spool.db"\n')
    assert (
        load_config(Path("conf.d"), environ={}).daemon.spool
        == tmp_path.resolve() / "conf.d/spool.db"
    )


# --- the line locator -------------------------------------------------------------------------


def test_toml_lines_map_keys_tables_and_elements() -> None:
    text = dedent(
        '''\
        title = "x"  # comment with key = "value"
        [daemon]
        spool = "a"
        "quoted key" = 1
        dotted.inner = 2

        [[trigger]]
        name = "one"
        body = """
        fake = "not a key"
        [not.a.table]
        """
        [trigger.options]
        url = 'https://x'
        headers = { "X-Key" = "v", other = { deep = 1 } }

        [[trigger]]
        name = "two"
        retry_schedule = [
          "5s",  # first
          [1, 2],
          "soon",
        ]
        [ trigger . options ]
        literal = \'\'\'
        still = "inside"
        \'\'\'
        after = true
        '''
    )
    lines = TomlLines.scan(text)
    assert lines.line_of("title") == 1
    assert lines.line_of("daemon") == 2
    assert lines.line_of("daemon", "spool") == 3
    assert lines.line_of("daemon", "quoted key") == 4
    assert lines.line_of("daemon", "dotted", "inner") == 5
    assert lines.line_of("trigger") == 7
    assert lines.line_of("trigger", 0) == 7
    assert lines.line_of("trigger", 0, "body") == 9
    assert lines.line_of("fake") == 0 and lines.line_of("not") == 0
    assert lines.line_of("trigger", 0, "options") == 13
    assert lines.line_of("trigger", 0, "options", "url") == 14
    assert lines.line_of("trigger", 0, "options", "headers", "X-Key") == 15
    assert lines.line_of("trigger", 0, "options", "headers", "other", "deep") == 15
    assert lines.line_of("trigger", 1) == 17
    assert lines.line_of("trigger", 1, "name") == 18
    assert lines.line_of("trigger", 1, "retry_schedule", 0) == 20
    assert lines.line_of("trigger", 1, "retry_schedule", 1, 1) == 21
    assert lines.line_of("trigger", 1, "retry_schedule", 2) == 22
    assert lines.line_of("trigger", 1, "options") == 24
    assert lines.line_of("trigger", 1, "options", "literal") == 25
    assert lines.line_of("trigger", 1, "options", "after") == 28
    assert lines.line_of("trigger", 1, "options", "missing") == 24
    assert lines.line_of("trigger", 5) == 7


# --- the example configuration of the repository ---------------------------------------------

_EXAMPLE_PROBE = """
import json, sys
from pathlib import Path
from postbackd.config.load import load_config_with_warnings
result = load_config_with_warnings(Path(sys.argv[1]))
config = result.config
print(json.dumps({
    "warnings": [str(w) for w in result.warnings],
    "spool": str(config.daemon.spool),
    "sources": {name: dict(s.settings) for name, s in config.sources.items()},
    "triggers": {name: [t.delivery, t.template, list(t.events), dict(t.options)]
                 for name, t in config.triggers.items()},
    "templates": {name: [t.format, t.subject is not None] for name, t in config.templates.items()},
    "lookups": sorted(config.lookups),
    "smtp": [config.smtp.host, config.smtp.port, config.smtp.tls],
    "private": config.daemon.allow_private_destinations,
}))
"""


def test_example_conf_d_loads_from_any_directory_without_environment(tmp_path: Path) -> None:
    example = example_conf(tmp_path / "checkout")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    completed = subprocess.run(
        [sys.executable, "-c", _EXAMPLE_PROBE, str(example)],
        cwd=elsewhere,
        env={},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    probe = json.loads(completed.stdout)
    assert probe["warnings"] == []
    assert probe["spool"] == str(elsewhere.resolve() / "var/spool.db")
    assert probe["sources"]["http"]["listen"] == "127.0.0.1:8787"
    assert probe["sources"]["filedrop"]["directory"] == str(example.parent / "var/incoming")
    assert probe["smtp"] == ["localhost", 1025, "none"]
    assert probe["private"] is True
    assert probe["lookups"] == ["carriers", "vandelay-cxml"]
    triggers = probe["triggers"]
    assert triggers["acme-order-shipped"][:3] == [
        "webhook",
        "acme-order-shipped",
        ["order.shipped"],
    ]
    assert triggers["acme-order-shipped"][3]["url"] == "http://127.0.0.1:9999/hooks/orders"
    assert sorted(triggers["acme-order-tracking-xml"][2]) == ["order.delivered", "order.in_transit"]
    email = triggers["acme-order-problems"]
    assert email[0] == "email" and email[3] == {"to": "Acme Ops <ops@acme.example>"}
    assert probe["templates"]["acme-order-problem-email"] == ["text", True]
    assert probe["templates"]["acme-order-tracking-xml"] == ["xml", False]


_SCALARS = st.one_of(
    st.text(max_size=20),
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
_KEYS = st.text(min_size=1, max_size=12)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, min_size=1, max_size=6), st.booleans())
def test_toml_lines_finds_every_key_of_any_document(
    document: dict[str, Any], multiline: bool
) -> None:
    text = tomli_w.dumps(document, multiline_strings=multiline)
    lines = TomlLines.scan(text).lines
    for path in _key_paths(document):
        assert path in lines, (path, text)
        if isinstance(path[-1], str):
            written = tomli_w.dumps({path[-1]: 0}).split(" = ")[0]
            assert written in text.split("\n")[lines[path] - 1], (path, text)


def _key_paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    paths: list[tuple[str | int, ...]] = []
    children = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in children:
        paths.append((*prefix, key))
        if isinstance(value, dict | list):
            paths.extend(_key_paths(value, (*prefix, key)))
    return paths


# --- tokens that would leave the door open (issue 14, item 3) ----------------------------------


@pytest.mark.parametrize("written", ['""', '"  "', '"${env:ADMIN}"'])
def test_blank_admin_token_is_refused_at_its_line(conf: Conf, written: str) -> None:
    conf.write("a.toml", f'[daemon]\nadmin_listen = "127.0.0.1:8787"\nadmin_token = {written}\n')
    errors = conf.errors(environ={"ADMIN": ""})
    assert len(errors) == 1
    said = "'${env:ADMIN}' resolves to" if "$" in written else "is"
    assert errors[0].startswith(f"a.toml:3: [daemon] admin_token: {said} an empty string")
    assert errors[0].endswith("or remove admin_token")


def test_blank_http_token_is_refused_even_on_loopback(conf: Conf) -> None:
    conf.write("a.toml", '[sources.http]\nlisten = "127.0.0.1:8787"\ntoken = "${env:TOKEN}"\n')
    assert conf.errors(environ={"TOKEN": ""}) == [
        "a.toml:3: [sources.http] token: '${env:TOKEN}' resolves to an empty string, which would "
        "leave the routes it guards open: set a non-empty token (e.g. export the variable with a "
        "value) or remove token"
    ]
    assert conf.load(environ={"TOKEN": "t0k"}).daemon.admin_token == "t0k"


def test_admin_listen_off_loopback_needs_a_token(conf: Conf) -> None:
    conf.write("a.toml", '[daemon]\nspool = "s.db"\nadmin_listen = "0.0.0.0:8787"\n')
    (error,) = conf.errors()
    assert error.startswith(
        "a.toml:3: [daemon] admin_listen: listens on 0.0.0.0, which is not loopback, without a "
        "token"
    )
    conf.write("a.toml", '[daemon]\nadmin_listen = "[::]:8787"\nadmin_token = "${env:ADMIN}"\n')
    assert conf.load(environ={"ADMIN": "s3cret"}).daemon.admin_token == "s3cret"
    # with an HTTP source the admin routes live on its listener, which has its own check
    conf.write(
        "a.toml",
        '[daemon]\nadmin_listen = "0.0.0.0:8787"\n[sources.http]\nlisten = "127.0.0.1:8787"\n',
    )
    assert conf.load().daemon.admin_token is None


def test_workers_are_bounded_and_run_on_either_spool(conf: Conf) -> None:
    conf.write("a.toml", '[daemon]\nspool = "s.db"\nworkers = 2\n')
    assert conf.load().daemon.workers == 2  # SQLite: attempt workers
    conf.write("a.toml", '[daemon]\nspool = "postgresql://pb@db.internal/pb"\nworkers = 0\n')
    assert conf.errors() == ["a.toml:3: [daemon] workers: must be at least 1, got 0"]
    conf.write("a.toml", '[daemon]\nspool = "postgresql://pb@db.internal/pb"\nworkers = 65\n')
    (error,) = conf.errors()
    assert error.startswith("a.toml:3: [daemon] workers: ")
    assert "64" in error
    conf.write("a.toml", '[daemon]\nspool = "postgresql://pb@db.internal/pb"\nworkers = 2\n')
    assert conf.load().daemon.workers == 2
    conf.write("a.toml", '[daemon]\nspool = "s.db"\n')
    assert conf.load().daemon.workers == 1
