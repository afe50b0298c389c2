"""`postbackd customer add`, run as a real subprocess against real configuration directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from postbackd.config import load_config
from tests.paths import example_conf


def postbackd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTBACKD_")}
    return subprocess.run(
        [sys.executable, "-m", "postbackd", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A copy of the repository's example configuration."""
    return example_conf(tmp_path)


def test_webhook_customer(conf: Path, tmp_path: Path) -> None:
    added = postbackd(
        "customer", "add", "globex", "--name", "Globex Corp",
        "--webhook", "https://globex.example/hooks/orders",
        "--events", "order.shipped, Order delivered",
        "-c", str(conf), cwd=tmp_path,
    )  # fmt: skip
    path = conf / "customers" / "globex.toml"
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == str(path)
    document = tomllib.loads(path.read_text())
    assert document["customer"] == [{"id": "globex", "name": "Globex Corp"}]
    assert document["template"][0]["name"] == "globex-default"
    assert document["template"][0]["format"] == "json"
    assert document["trigger"] == [
        {
            "name": "globex-postbacks",
            "customer": "globex",
            "events": ["order.shipped", "Order delivered"],
            "template": "globex-default",
            "delivery": "webhook",
            "options": {"url": "https://globex.example/hooks/orders"},
        }
    ]
    config = load_config(conf, environ={})
    assert config.triggers["globex-postbacks"].events == ("order.shipped", "order.delivered")
    assert sorted(p.name for p in (conf / "customers").iterdir()) == [
        "acme.toml",
        "globex.toml",
        "vandelay.toml",
    ]

    checked = postbackd("check", "-c", str(conf), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rendered = postbackd(
        "render", "globex-default", "--sample", "order.shipped", "--customer", "globex",
        "-c", str(conf), cwd=tmp_path,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    body = json.loads(rendered.stdout)
    assert body["event"] == "order.shipped"
    assert body["orderReferenceId"] == "ACME-100234"


def test_email_customer(conf: Path, tmp_path: Path) -> None:
    added = postbackd(
        "customer", "add", "initech", "--name", "Initech",
        "--email", "Initech Ops <ops@initech.example>", "--events", "order.*",
        "-c", str(conf), cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    config = load_config(conf, environ={})
    trigger = config.triggers["initech-postbacks"]
    assert (trigger.delivery, trigger.template) == ("email", "initech-default")
    assert trigger.options == {"to": "Initech Ops <ops@initech.example>"}
    template = config.templates["initech-default"]
    assert template.format == "text" and template.subject
    rendered = postbackd(
        "render", "initech-default", "--sample", "order.cancelled", "--customer", "initech",
        "-c", str(conf), cwd=tmp_path,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout.startswith("Subject: Order ACME-")


def test_named_template_writes_no_template(conf: Path, tmp_path: Path) -> None:
    added = postbackd(
        "customer", "add", "hooli", "--name", "Hooli", "--webhook", "http://127.0.0.1:9999/h",
        "--events", "order.shipped", "--template", "builtin:order-status-json",
        "-c", str(conf), cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    document = tomllib.loads((conf / "customers" / "hooli.toml").read_text())
    assert "template" not in document
    assert document["trigger"][0]["template"] == "builtin:order-status-json"
    load_config(conf, environ={})


def test_refuses_to_overwrite(conf: Path, tmp_path: Path) -> None:
    path = conf / "customers" / "acme.toml"
    before = path.read_bytes()
    added = postbackd(
        "customer", "add", "acme", "--name", "Acme", "--email", "a@acme.example",
        "--events", "order.shipped", "-c", str(conf), cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 1
    assert added.stderr.strip() == f"{path}: already exists; edit it, or remove it first"
    assert path.read_bytes() == before


def test_invalid_result_writes_nothing(conf: Path, tmp_path: Path) -> None:
    (conf / "more.toml").write_text('[[customer]]\nid = "globex"\n')
    added = postbackd(
        "customer", "add", "globex", "--name", "Globex", "--webhook", "https://globex.example/h",
        "--events", "shipped", "--template", "globex-shipped", "-c", str(conf), cwd=tmp_path,
    )  # fmt: skip
    path = conf / "customers" / "globex.toml"
    assert added.returncode == 1
    assert not path.exists()
    trigger = '[[trigger]] "globex-postbacks"'
    assert added.stderr.splitlines() == [
        f"{path}: not written, the configuration would be invalid:",
        f'  {path}:12: {trigger} events[0]: unknown event type "shipped" (did you mean '
        '"order.shipped"?): use a type like "order.shipped", an alias like "Order shipped", '
        'a glob like "order.*", or "namespace.name" for a custom type',
        f'  {path}:14: {trigger} template: no template "globex-shipped"',
        f'  {conf / "more.toml"}:2: [[customer]] "globex" id: duplicate customer id "globex": '
        f"also defined at {path}:4",
    ]
    assert sorted(p.name for p in (conf / "customers").iterdir()) == ["acme.toml", "vandelay.toml"]


def test_usage_errors(conf: Path, tmp_path: Path) -> None:
    cases = {
        ("../etc", "--webhook", "https://x.example"): "customer id '../etc' may hold only",
        ("ok", "--webhook", "ftp://x.example"): "--webhook 'ftp://x.example' is not an http",
        ("ok", "--email", "nobody"): "--email 'nobody' is not an email address",
    }
    for (customer_id, option, target), message in cases.items():
        added = postbackd(
            "customer", "add", customer_id, "--name", "X", option, target,
            "--events", "order.shipped", "-c", str(conf), cwd=tmp_path,
        )  # fmt: skip
        assert added.returncode == 2
        assert message in added.stderr
    missing = postbackd(
        "customer", "add", "ok", "--name", "X", "--email", "a@b.example",
        "--events", "order.shipped", "-c", str(tmp_path / "nope"), cwd=tmp_path,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "configuration directory not found" in missing.stderr
    assert sorted(p.name for p in (conf / "customers").iterdir()) == ["acme.toml", "vandelay.toml"]


def test_unset_secrets_elsewhere_do_not_block_adding(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "smtp.toml").write_text('[smtp]\nusername = "u"\npassword = "${env:SMTP_PASSWORD}"\n')
    added = postbackd(
        "customer", "add", "acme", "--name", "Acme", "--email", "a@acme.example",
        "--events", "order.failed", "-c", str(conf), cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    config = load_config(conf, environ={"SMTP_PASSWORD": "pw"})
    assert config.customers["acme"].name == "Acme"
