"""`load_generation` as a reload uses it: what one generation built, the next one reuses."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

import postbackd.config.cache as config_cache
from postbackd.events import Event
from postbackd.generation import load_generation, open_plugins

TEMPLATE = """
[[template]]
name = "shipped"
format = "json"
body = '{ "orderId": {{ orderId | tojson }}, "v": 1 }'
"""


def customer(cid: str) -> str:
    return f"""
[[customer]]
id = "{cid}"

[[trigger]]
name = "{cid}-shipped"
customer = "{cid}"
events = ["order.shipped"]
template = "shipped"
delivery = "webhook"
[trigger.options]
url = "https://{cid}.example/hook"
"""


def event(customer: str) -> Event:
    return Event("e1", "order.shipped", customer, "2026-11-28T10:00:00Z", {"orderId": "o1"})


def test_a_reload_reuses_parsed_files_and_compiled_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_cache, "RACY_NS", 0)
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "daemon.toml").write_text(f'[daemon]\nspool = "{tmp_path / "spool.db"}"\n')
    (conf / "templates.toml").write_text(dedent(TEMPLATE))
    for cid in ("acme", "globex"):
        (conf / f"{cid}.toml").write_text(dedent(customer(cid)))
    plugins = open_plugins(conf, use_entry_points=False)
    first = load_generation(conf, plugins, 1)
    assert first.router.route(event("acme"))[0].body == b'{ "orderId": "o1", "v": 1 }'
    compiles = plugins.template_cache.compiles

    second = load_generation(conf, plugins, 2)
    assert plugins.config_cache.last_parsed == []
    assert second.config == first.config
    assert second.router.route(event("globex"))[0].body == b'{ "orderId": "o1", "v": 1 }'
    assert plugins.template_cache.compiles == compiles

    (conf / "templates.toml").write_text(dedent(TEMPLATE).replace('"v": 1', '"v": 2'))
    (conf / "globex.toml").unlink()
    third = load_generation(conf, plugins, 3)
    assert plugins.config_cache.last_parsed == [str(conf / "templates.toml")]
    assert sorted(third.config.customers) == ["acme"]
    assert third.router.route(event("globex")) == []
    assert third.router.route(event("acme"))[0].body == b'{ "orderId": "o1", "v": 2 }'
    assert plugins.template_cache.compiles == compiles + 1
    assert first.router.route(event("acme"))[0].body == b'{ "orderId": "o1", "v": 1 }'


def load_dir(conf: Path, files: dict[str, str]) -> str:
    """The configuration fingerprint of a directory holding `files`."""
    conf.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (conf / name).write_text(dedent(content))
    return load_generation(conf, open_plugins(conf, use_entry_points=False), 1).fingerprint


def test_the_fingerprint_is_what_a_fleet_must_share_and_nothing_node_local(
    tmp_path: Path,
) -> None:
    shared = {"templates.toml": TEMPLATE, "acme.toml": customer("acme")}
    node_a = load_dir(
        tmp_path / "a",
        {"daemon.toml": f'[daemon]\nspool = "{tmp_path / "a.db"}"\nnode = "a"\n', **shared},
    )
    # another directory, another node name and spool, the tables split over other file names
    node_b = load_dir(
        tmp_path / "b",
        {
            "00-daemon.toml": f'[daemon]\nspool = "{tmp_path / "b.db"}"\nnode = "b"\n',
            "all.toml": TEMPLATE + customer("acme"),
        },
    )
    assert node_a == node_b and len(node_a) == 16
    two_customers = {**shared, "globex.toml": customer("globex")}
    another_trigger = load_dir(tmp_path / "c", two_customers)
    in_one_file = load_dir(
        tmp_path / "e",
        {"templates.toml": TEMPLATE, "all.toml": customer("globex") + customer("acme")},
    )
    assert in_one_file == another_trigger
    another_template = load_dir(
        tmp_path / "d",
        {"templates.toml": TEMPLATE.replace('"v": 1', '"v": 2'), "acme.toml": customer("acme")},
    )
    assert len({node_a, another_trigger, another_template}) == 3
