"""The command line through real subprocesses: check, render, samples, --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import example_conf

# The hosted platform's "Order Shipped" example, exactly as its help page prints it.
PLATFORM_SHIPPED = (
    '{ "event": "Ordre sendt", "orderId": "##{{ orderId }}", "orderReferenceId": '
    '"##{{ orderReferenceId }}", "timestamp": "##{{ created }}", "status": '
    '"##{{ fulfillmentStatus }}", "trackingInfo": { {% for item in items %} {% for fulfillment '
    'in item.fulfillments %} "trackingCode": "##{{ fulfillment.trackingCode }}", "trackingUrl": '
    '"##{{ fulfillment.trackingUrl }}", "carrier": "##{{ fulfillment.carrierName }}" '
    "{% endfor %} {% endfor %} }}"
)


def postbackd(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postbackd", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=cwd,
        timeout=60,
    )


def write_conf(tmp_path: Path, files: dict[str, str]) -> Path:
    conf = tmp_path / "conf.d"
    for name, text in files.items():
        path = conf / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return conf


def test_help_lists_every_command():
    result = postbackd("--help")
    assert result.returncode == 0
    for command in ("run", "check", "render", "test", "send", "samples", "customer"):
        assert command in result.stdout


def test_example_configuration_checks_from_another_directory(tmp_path):
    example = example_conf(tmp_path / "checkout")
    (tmp_path / "elsewhere").mkdir()
    result = postbackd("check", "-c", str(example), cwd=tmp_path / "elsewhere")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 customers, 10 triggers, 6 templates, 2 lookups" in result.stdout
    assert result.stdout.strip().endswith("ok")


def test_check_reports_every_error_with_file_and_line(tmp_path):
    conf = write_conf(
        tmp_path,
        {
            "broken.toml": "[[customer]\nid = 'x'\n",
            "a.toml": (
                '[[customer]]\nid = "acme"\nname = "Acme"\nnmae = "typo"\n\n'
                '[[trigger]]\nname = "t1"\ncustomer = "nobody"\nevents = ["Order shiped"]\n'
                'template = "missing"\ndelivery = "webhok"\nretry_schedule = ["5 parsecs"]\n'
                '[trigger.options]\nurl = "https://example.com/"\n'
            ),
            "b.toml": '[[customer]]\nid = "acme"\nname = "Acme again"\n',
        },
    )
    result = postbackd("check", "-c", str(conf))
    assert result.returncode == 1
    out = result.stdout
    a = conf / "a.toml"
    expected = [
        f"{conf / 'broken.toml'}:1:",
        f"{a}:4:",  # unknown key nmae, did you mean name
        'did you mean "name"',
        f"{a}:8:",  # customer nobody
        f"{a}:9:",  # bad event name
        f"{a}:10:",  # template missing
        f"{a}:11:",  # delivery webhok
        f"{a}:12:",  # bad duration
        f"{conf / 'b.toml'}:2:",  # duplicate customer, naming both files
    ]
    for fragment in expected:
        assert fragment in out, f"{fragment!r} not in:\n{out}"
    duplicate = next(line for line in out.splitlines() if "b.toml:2:" in line)
    assert "a.toml" in duplicate


def test_missing_secret_is_named_never_shown(tmp_path):
    conf = write_conf(
        tmp_path, {"d.toml": '[smtp]\npassword = "${env:POSTBACKD_TEST_UNSET}"\nusername = "u"\n'}
    )
    result = postbackd("check", "-c", str(conf))
    assert result.returncode == 1
    assert f"{conf / 'd.toml'}:2:" in result.stdout
    assert "${env:POSTBACKD_TEST_UNSET}" in result.stdout


def test_strict_fails_on_undefined_template_variables(tmp_path):
    conf = write_conf(
        tmp_path,
        {
            "c.toml": (
                '[[customer]]\nid = "acme"\nname = "Acme"\n'
                '[[template]]\nname = "t"\nformat = "json"\nbody = \'{"x": "{{ orderIdd }}"}\'\n'
                '[[trigger]]\nname = "tr"\ncustomer = "acme"\nevents = ["order.shipped"]\n'
                'template = "t"\ndelivery = "webhook"\n[trigger.options]\nurl = "https://example.com/h"\n'
            )
        },
    )
    relaxed = postbackd("check", "-c", str(conf))
    assert relaxed.returncode == 0, relaxed.stdout
    assert "warning:" in relaxed.stdout and "orderIdd" in relaxed.stdout
    strict = postbackd("check", "--strict", "-c", str(conf))
    assert strict.returncode == 1


@pytest.fixture
def platform_conf(tmp_path: Path) -> Path:
    return write_conf(
        tmp_path,
        {
            "t.toml": (
                '[[template]]\nname = "platform-shipped"\nformat = "json"\n'
                f"body = '''{PLATFORM_SHIPPED}'''\n"
            )
        },
    )


def _order(fulfillments: int) -> str:
    return json.dumps(
        {
            "id": "evt-1",
            "type": "Order shipped",
            "customer": "acme",
            "data": {
                "orderId": "o-1",
                "orderReferenceId": "R-1",
                "created": "2026-11-28T10:00:00Z",
                "fulfillmentStatus": "shipped",
                "items": [
                    {
                        "fulfillments": [
                            {
                                "trackingCode": f"T{n}",
                                "trackingUrl": f"https://t.example/{n}",
                                "carrierName": "DHL",
                            }
                            for n in range(fulfillments)
                        ]
                    }
                ],
            },
        }
    )


def test_platform_template_renders_one_fulfillment(platform_conf):
    result = postbackd(
        "render", "platform-shipped", "--event", "-", "-c", str(platform_conf), stdin=_order(1)
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["trackingInfo"] == {
        "trackingCode": "T0",
        "trackingUrl": "https://t.example/0",
        "carrier": "DHL",
    }


def test_platform_template_explains_two_fulfillments(platform_conf):
    result = postbackd(
        "render", "platform-shipped", "--event", "-", "-c", str(platform_conf), stdin=_order(2)
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "invalid JSON at line" in result.stderr and "column" in result.stderr


def test_render_tricky_value_round_trips(tmp_path):
    value = 'He said "hi" \\ <b>&</b>\n'
    conf = write_conf(
        tmp_path,
        {
            "t.toml": (
                '[[template]]\nname = "j"\nformat = "json"\nbody = \'{"note": "{{ note }}"}\'\n'
                '[[template]]\nname = "x"\nformat = "xml"\nbody = \'<n>{{ note }}</n>\'\n'
            )
        },
    )
    event = json.dumps(
        {"id": "e", "type": "order.shipped", "customer": "c", "data": {"note": value}}
    )
    as_json = postbackd("render", "j", "--event", "-", "-c", str(conf), stdin=event)
    assert json.loads(as_json.stdout)["note"] == value
    as_xml = postbackd("render", "x", "--event", "-", "-c", str(conf), stdin=event)
    import xml.etree.ElementTree as ET

    assert ET.fromstring(as_xml.stdout.rstrip("\n")).text == value


def test_render_email_template_prints_subject(tmp_path):
    result = postbackd(
        "render",
        "builtin:shipped-email",
        "--sample",
        "order.shipped",
        "-c",
        str(example_conf(tmp_path / "checkout")),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Subject: ")
    assert "\n\n" in result.stdout


def test_samples_never_read_configuration(tmp_path):
    listed = postbackd("samples", cwd=tmp_path)
    assert listed.returncode == 0
    assert "order.shipped" in listed.stdout.split()
    one = postbackd("samples", "Order shipped", cwd=tmp_path)
    assert json.loads(one.stdout)["type"] == "order.shipped"
