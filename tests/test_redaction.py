"""Secrets masked by value (`postbackd.redaction`) and where the loader finds them."""

from __future__ import annotations

from pathlib import Path

from postbackd.config import ConfigError, load_config
from postbackd.plugin import Outcome
from postbackd.redaction import MASK, NO_SECRETS, Redactor, masked_outcome


def test_a_value_is_masked_in_every_form_it_shows_in() -> None:
    redactor = Redactor.of(["p@ss word/1", "ab"])
    assert redactor.text("https://u:p%40ss%20word%2F1@host/") == "https://u:***@host/"
    assert redactor.text("got 'p@ss word/1' here") == "got '***' here"
    assert redactor.text("p%40ss+word%2F1") == "***"
    # too short to hunt inside texts, but masked where it is the whole value
    assert redactor.text("about abc") == "about abc"
    assert redactor.text("ab") == MASK


def test_the_longer_secret_wins_and_trees_keep_their_keys() -> None:
    redactor = Redactor.of(["secret", "secret-and-more"])
    record = {"headers": {"X-Credentials": "secret-and-more"}, "list": ["a secret b", 3]}
    assert redactor.tree(record) == {"headers": {"X-Credentials": MASK}, "list": ["a *** b", 3]}
    assert NO_SECRETS.tree(record) is record
    assert (Redactor.of(["aaaa"]) | Redactor.of(["bbbb"])).values == {"aaaa", "bbbb"}


def test_an_outcome_is_masked_whatever_the_plugin_did() -> None:
    outcome = Outcome.retry(
        "refused: token s3cr3t-token",
        request={"headers": {"X-Whatever": "s3cr3t-token"}},
        response={"body": "echo s3cr3t-token"},
    )
    masked = masked_outcome(outcome, NO_SECRETS, Redactor.of(["s3cr3t-token"]))
    assert masked.error == "refused: token ***"
    assert masked.request == {"headers": {"X-Whatever": MASK}}
    assert masked.response == {"body": "echo ***"}
    assert masked_outcome(outcome, NO_SECRETS) is outcome


def _write(conf: Path, text: str) -> None:
    conf.mkdir(exist_ok=True)
    (conf / "a.toml").write_text(text)


TRIGGER = """
[[customer]]
id = "acme"
name = "Acme"

[[lookup]]
name = "carriers"
key = "shipmentMethodUid"
values = { "dhl_key" = "DHL" }

[[trigger]]
name = "t"
customer = "acme"
events = ["order.*"]
template = "builtin:order-status-json"
delivery = "webhook"
[trigger.options]
url = "https://example.com/hook"
headers = { "X-Credentials" = "${env:CRED}", "X-Api-Key" = "written-in-clear" }
secret = ["whsec_one", "whsec_two"]

[smtp]
password = "${file:pw.txt}"
username = "u"
"""


def test_the_loader_collects_references_and_settings_marked_secret(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    _write(conf, TRIGGER)
    (conf / "pw.txt").write_text("smtp-password\n")
    config = load_config(conf, environ={"CRED": "cred-value"})
    trigger = config.triggers["t"]
    assert trigger.redactor.values == {"cred-value", "written-in-clear", "whsec_one", "whsec_two"}
    assert config.shared_redactor.values == {"smtp-password"}
    assert config.redactor.values == trigger.redactor.values | {"smtp-password"}
    # names and data are not secrets, even under a key called "key"
    assert "shipmentMethodUid" not in config.redactor.values


def test_a_rejected_configuration_does_not_print_its_secrets(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    _write(
        conf,
        TRIGGER.replace('url = "https://example.com/hook"', 'url = "htps://u:${env:PW}@h/x"'),
    )
    (conf / "pw.txt").write_text("smtp-password\n")

    def validate(options: object) -> list[str]:
        return [f"url: must start with http:// or https:// (got {options['url']!r})"]  # type: ignore[index]

    try:
        load_config(
            conf, environ={"CRED": "cred-value", "PW": "pw-Kx7"}, deliveries={"webhook": validate}
        )
    except ConfigError as exc:
        (message,) = [d.message for d in exc.errors]
    else:
        raise AssertionError("the configuration was accepted")
    assert "pw-Kx7" not in message and "htps://u:***@h/x" in message
