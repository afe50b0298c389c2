"""Secret references: each scheme, the plugin hook, errors that name the reference and the
key's file:line, and never a secret value in any message."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from postbackd.config.load import ConfigError, load_config
from postbackd.config.secrets import SecretError, SecretResolver

SECRET = "s3cr3t-value-do-not-print"


def test_env_file_and_credential(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "smtp").write_text("from-credential\r\n")
    resolver = SecretResolver({"TOKEN": "from-env", "CREDENTIALS_DIRECTORY": str(credentials)})
    assert resolver.expand("Bearer ${env:TOKEN}", tmp_path) == "Bearer from-env"
    assert resolver.expand("${file:token}", tmp_path) == "from-file"
    assert resolver.expand(f"${{file:{tmp_path}/token}}", Path("/")) == "from-file"
    assert resolver.expand("${credential:smtp}", tmp_path) == "from-credential"
    assert resolver.expand("a ${env:TOKEN} b ${file:token}", tmp_path) == "a from-env b from-file"
    assert resolver.expand("no references here", tmp_path) == "no references here"


def test_only_one_trailing_newline_is_stripped(tmp_path: Path) -> None:
    (tmp_path / "two").write_text("value\n\n")
    (tmp_path / "none").write_text("value")
    resolver = SecretResolver({})
    assert resolver.expand("${file:two}", tmp_path) == "value\n"
    assert resolver.expand("${file:none}", tmp_path) == "value"


def test_escape_and_missing_scheme(tmp_path: Path) -> None:
    resolver = SecretResolver({"X": "x"})
    assert resolver.expand("literal $${env:X} and ${env:X}", tmp_path) == "literal ${env:X} and x"
    with pytest.raises(SecretError) as info:
        resolver.expand("${SMTP_PASSWORD}", tmp_path)
    assert info.value.reference == "${SMTP_PASSWORD}"
    assert "write ${env:SMTP_PASSWORD}" in info.value.reason


def test_failures_name_the_reference(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    resolver = SecretResolver({})
    cases = {
        "${env:NOPE}": "environment variable NOPE is not set",
        "${file:missing.txt}": f"file not found: {tmp_path / 'missing.txt'}",
        "${file:dir}": f"is a directory, not a file: {tmp_path / 'dir'}",
        "${credential:smtp}": "CREDENTIALS_DIRECTORY is not set",
        "${vault:kv/smtp}": "unknown secret scheme 'vault'",
    }
    for reference, reason in cases.items():
        with pytest.raises(SecretError) as info:
            resolver.expand(f"prefix {reference}", tmp_path)
        assert info.value.reference == reference
        assert reason in info.value.reason


def test_credential_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(SECRET)
    inner = tmp_path / "creds"
    inner.mkdir()
    resolver = SecretResolver({"CREDENTIALS_DIRECTORY": str(inner)})
    with pytest.raises(SecretError) as info:
        resolver.expand("${credential:../secret}", tmp_path)
    assert "plain file name" in info.value.reason


def test_plugin_schemes(tmp_path: Path) -> None:
    seen: list[str] = []

    def vault(reference: str) -> str | None:
        seen.append(reference)
        scheme, _, path = reference.partition(":")
        if scheme != "vault":
            return None
        if path == "kv/missing":
            raise LookupError("no such secret kv/missing")
        return f"vault<{path}>"

    resolver = SecretResolver({}, vault)
    assert resolver.expand("${vault:kv/smtp}", tmp_path) == "vault<kv/smtp>"
    with pytest.raises(SecretError) as info:
        resolver.expand("${aws:sm/x}", tmp_path)
    assert "unknown secret scheme 'aws'" in info.value.reason
    with pytest.raises(SecretError) as info:
        resolver.expand("${vault:kv/missing}", tmp_path)
    assert info.value.reason == "LookupError: no such secret kv/missing"
    assert seen == ["vault:kv/smtp", "aws:sm/x", "vault:kv/missing"]


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    root = tmp_path / "conf.d"
    root.mkdir()
    return root


def messages(conf: Path, environ: Mapping[str, str], **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(conf, environ=environ, **kwargs)
    text = str(info.value)
    assert SECRET not in text
    return [f"{d.path.relative_to(conf)}:{d.line}: {d.message}" for d in info.value.diagnostics]


ACME = """
[[customer]]
id = "acme"

[[trigger]]
name = "acme-shipped"
customer = "acme"
events = ["order.shipped"]
template = "builtin:order-status-json"
delivery = "webhook"
[trigger.options]
url = "https://acme.example/hooks?key=${env:ACME_URL_KEY}"
secret = ["${env:ACME_OLD}", "${file:secrets/acme-new}"]
headers = { "X-Api-Key" = "${credential:acme-key}" }
"""


def test_secrets_resolved_everywhere_in_the_config(conf: Path, tmp_path: Path) -> None:
    write(conf, "acme.toml", ACME)
    write(conf, "secrets/acme-new", "new-secret\n")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "acme-key").write_text("api-key")
    write(conf, "smtp.toml", '[smtp]\nusername = "u"\npassword = "${env:SMTP_PASSWORD}"\n')
    environ = {
        "ACME_URL_KEY": "k1",
        "ACME_OLD": "old-secret",
        "SMTP_PASSWORD": SECRET,
        "CREDENTIALS_DIRECTORY": str(credentials),
    }
    config = load_config(conf, environ=environ)
    options = config.triggers["acme-shipped"].options
    assert options == {
        "url": "https://acme.example/hooks?key=k1",
        "secret": ["old-secret", "new-secret"],
        "headers": {"X-Api-Key": "api-key"},
    }
    assert config.smtp.password == SECRET
    assert SECRET not in repr(config.smtp)


def test_missing_secrets_are_errors_at_their_key(conf: Path) -> None:
    write(conf, "acme.toml", ACME.replace("secret = [", "secret = [\n  ").replace(", ", ",\n  "))
    write(conf, "smtp.toml", '[smtp]\nusername = "u"\npassword = "${env:SMTP_PASSWORD}"\n')
    found = messages(conf, {"ACME_OLD": SECRET})
    trigger = '[[trigger]] "acme-shipped"'
    assert found == [
        f"acme.toml:11: {trigger} options.url: cannot resolve ${{env:ACME_URL_KEY}}: "
        "environment variable ACME_URL_KEY is not set",
        f"acme.toml:14: {trigger} options.secret[1]: cannot resolve ${{file:secrets/acme-new}}: "
        f"file not found: {conf.absolute() / 'secrets/acme-new'}",
        f"acme.toml:15: {trigger} options.headers.X-Api-Key: cannot resolve "
        "${credential:acme-key}: CREDENTIALS_DIRECTORY is not set: credentials come from systemd "
        "(LoadCredential=acme-key:/path/to/secret in the unit)",
        "smtp.toml:3: [smtp] password: cannot resolve ${env:SMTP_PASSWORD}: "
        "environment variable SMTP_PASSWORD is not set",
    ]


def test_delivery_validation_is_skipped_for_options_with_failed_secrets(conf: Path) -> None:
    write(conf, "acme.toml", ACME)
    checked: list[Mapping[str, object]] = []

    def validate(options: Mapping[str, object]) -> list[str]:
        checked.append(options)
        return ["url: looks wrong"]

    found = messages(conf, {}, deliveries={"webhook": validate})
    assert checked == []
    assert all("cannot resolve" in line for line in found)


def test_values_in_messages_are_shown_as_written_never_expanded(conf: Path) -> None:
    write(
        conf,
        "a.toml",
        '[smtp]\nport = "${env:SMTP_PORT}"\ntls = "${env:SMTP_TLS}"\n',
    )
    found = messages(conf, {"SMTP_PORT": SECRET, "SMTP_TLS": SECRET})
    assert found == [
        "a.toml:2: [smtp] port: expected an integer, got a string ('${env:SMTP_PORT}')",
        "a.toml:3: [smtp] tls: expected one of starttls, implicit, none; got '${env:SMTP_TLS}'",
    ]


def test_plugin_resolver_through_load_config(conf: Path) -> None:
    write(conf, "a.toml", '[smtp]\nusername = "u"\npassword = "${vault:smtp}"\n')
    config = load_config(conf, environ={}, resolve_secret=lambda ref: f"<{ref}>")
    assert config.smtp.password == "<vault:smtp>"
    assert messages(conf, {}) == [
        "a.toml:3: [smtp] password: cannot resolve ${vault:smtp}: unknown secret scheme 'vault' "
        "(known: env, file, credential, and those of installed plugins)"
    ]


def test_template_sources_are_not_expanded(conf: Path) -> None:
    write(
        conf,
        "t.toml",
        """
        [[template]]
        name = "page"
        format = "html"
        subject = "Costs ${env:PRICE}"
        body = "<script>const x = `${env:NOT_A_SECRET}`;</script>"
        """,
    )
    template = load_config(conf, environ={}).templates["page"]
    assert template.subject == "Costs ${env:PRICE}"
    assert template.body == "<script>const x = `${env:NOT_A_SECRET}`;</script>"


def test_expand_secrets_false_keeps_references(conf: Path) -> None:
    write(conf, "a.toml", '[smtp]\nusername = "u"\npassword = "${env:SMTP_PASSWORD}"\n')
    config = load_config(conf, environ={}, expand_secrets=False)
    assert config.smtp.password == "${env:SMTP_PASSWORD}"
