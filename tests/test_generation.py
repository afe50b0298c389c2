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
