"""The incremental load: `load_config(..., cache=)` sees every change and re-reads nothing else.

Each test compares against what a load without a cache says, so the cache can only ever be a
faster way to the same answer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

import postbackd.config.cache as config_cache
from postbackd.config import ConfigCache, ConfigError, load_config, load_config_with_warnings
from postbackd.config.model import Config
from tests.paths import example_conf

TEMPLATES = """
[[template]]
name = "shipped"
format = "json"
body = '{ "orderId": {{ orderId | tojson }} }'
"""


def customer(cid: str, name: str | None = None, template: str = "shipped") -> str:
    return f"""
[[customer]]
id = "{cid}"
name = "{name or cid.title()}"

[[trigger]]
name = "{cid}-shipped"
customer = "{cid}"
events = ["order.shipped"]
template = "{template}"
delivery = "webhook"
[trigger.options]
url = "https://{cid}.example/hook"
"""


def url_validator(options: Mapping[str, Any]) -> list[str]:
    url = str(options.get("url", ""))
    return [] if url.startswith("https://") else [f"url: must start with https://, got {url!r}"]


DELIVERIES = {"webhook": url_validator}


class CachedConf:
    """A conf dir loaded with one cache throughout, each load checked against a cold load."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = ConfigCache()

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    def load(self, environ: Mapping[str, str] | None = None) -> Config:
        kwargs: dict[str, Any] = {"environ": environ or {}, "deliveries": DELIVERIES}
        cold = _outcome(lambda: load_config(self.root, **kwargs))
        warm = _outcome(lambda: load_config(self.root, cache=self.cache, **kwargs))
        assert _same(warm, cold), (warm, cold)
        if isinstance(warm, ConfigError):
            raise warm
        return warm

    def errors(self, environ: Mapping[str, str] | None = None) -> list[str]:
        with pytest.raises(ConfigError) as info:
            self.load(environ)
        return [f"{d.path.relative_to(self.root)}:{d.line}: {d.message}" for d in info.value.errors]

    def parsed(self) -> list[str]:
        return sorted(
            Path(name).relative_to(self.root).as_posix() for name in self.cache.last_parsed
        )

    def read(self) -> list[str]:
        return sorted(Path(name).relative_to(self.root).as_posix() for name in self.cache.last_read)


def _outcome(load: Any) -> Config | ConfigError:
    try:
        result: Config = load()
    except ConfigError as exc:
        return exc
    return result


def _same(one: Config | ConfigError, other: Config | ConfigError) -> bool:
    if isinstance(one, ConfigError) and isinstance(other, ConfigError):
        return one.diagnostics == other.diagnostics
    return one == other


@pytest.fixture
def conf(tmp_path: Path) -> CachedConf:
    root = tmp_path / "conf.d"
    root.mkdir()
    conf = CachedConf(root)
    conf.write("templates.toml", TEMPLATES)
    for cid in ("acme", "globex", "initech"):
        conf.write(f"customers/{cid}.toml", customer(cid))
    return conf


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files count as written long ago: their stamps are trusted at once (no racy re-read)."""
    monkeypatch.setattr(config_cache, "RACY_NS", 0)


def test_unchanged_files_are_neither_parsed_nor_read_again(conf: CachedConf, settled: None) -> None:
    conf.load()
    assert conf.parsed() == [
        "customers/acme.toml",
        "customers/globex.toml",
        "customers/initech.toml",
        "templates.toml",
    ]
    config = conf.load()
    assert conf.parsed() == [] and conf.read() == []
    assert sorted(config.customers) == ["acme", "globex", "initech"]


def test_a_changed_file_is_seen_and_only_it_is_parsed(conf: CachedConf, settled: None) -> None:
    conf.load()
    conf.write("customers/globex.toml", customer("globex", name="Globex Corporation"))
    config = conf.load()
    assert config.customers["globex"].name == "Globex Corporation"
    assert conf.parsed() == ["customers/globex.toml"]


def test_a_touched_file_is_read_again_but_not_parsed(conf: CachedConf, settled: None) -> None:
    conf.load()
    os.utime(conf.root / "customers/acme.toml")
    conf.load()
    assert conf.read() == ["customers/acme.toml"] and conf.parsed() == []


def test_same_size_rewrite_with_the_same_mtime_is_seen(conf: CachedConf) -> None:
    path = conf.root / "customers/acme.toml"
    conf.load()
    before = path.stat()
    conf.write("customers/acme.toml", customer("acme", name="Acne"))  # "Acme" → "Acne"
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    assert conf.load().customers["acme"].name == "Acne"


def test_same_size_replacement_by_rename_with_the_same_mtime_is_seen(conf: CachedConf) -> None:
    path = conf.root / "customers/acme.toml"
    conf.load()
    before = path.stat()
    new = conf.write("customers/.acme.toml.tmp", customer("acme", name="Acne"))
    os.utime(new, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(new, path)
    assert conf.load().customers["acme"].name == "Acne"


def test_a_rewrite_within_one_timestamp_tick_is_seen(
    conf: CachedConf, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst case: the stamp is the same (as after two writes in one tick of a coarse
    clock). A file written this recently is racy, so it is read again and compared."""
    monkeypatch.setattr(
        config_cache.FileStamp,
        "of",
        classmethod(lambda cls, st: cls(st.st_dev, st.st_ino, st.st_size, 0, 0)),
    )
    conf.load()
    conf.write("customers/acme.toml", customer("acme", name="Acne"))
    assert conf.load().customers["acme"].name == "Acne"
    assert conf.parsed() == ["customers/acme.toml"]


def test_a_removed_file_takes_its_customer_and_trigger_with_it(conf: CachedConf) -> None:
    conf.load()
    (conf.root / "customers/globex.toml").unlink()
    config = conf.load()
    assert sorted(config.customers) == ["acme", "initech"]
    assert "globex-shipped" not in config.triggers


def test_an_added_file_is_seen(conf: CachedConf, settled: None) -> None:
    conf.load()
    conf.write("customers/sub/umbrella.toml", customer("umbrella"))
    assert "umbrella" in conf.load().customers
    assert conf.parsed() == ["customers/sub/umbrella.toml"]


def test_an_error_in_a_changed_file_names_file_and_line(conf: CachedConf) -> None:
    conf.load()
    broken = customer("globex").replace('name = "Globex"', 'name = "Globex"\ncolour = "red"')
    conf.write("customers/globex.toml", broken)
    assert conf.errors() == [
        'customers/globex.toml:4: [[customer]] "globex" colour: unknown key "colour" '
        "(known: id, name)"
    ]
    # still reported, at the same place, while the file stays as it is
    assert conf.errors() == [
        'customers/globex.toml:4: [[customer]] "globex" colour: unknown key "colour" '
        "(known: id, name)"
    ]
    conf.write("customers/globex.toml", customer("globex"))
    assert "globex" in conf.load().customers


def test_a_syntax_error_is_reported_at_every_load_until_fixed(conf: CachedConf) -> None:
    conf.load()
    conf.write("customers/acme.toml", customer("acme") + "\nbroken = [\n")
    first = conf.errors()
    assert len(first) == 1 and first[0].startswith("customers/acme.toml:")
    assert "TOML syntax error" in first[0]
    assert conf.errors() == first
    conf.write("customers/acme.toml", customer("acme"))
    assert "acme" in conf.load().customers


def test_a_bad_trigger_option_in_an_unchanged_file_is_still_checked(conf: CachedConf) -> None:
    conf.write("customers/acme.toml", customer("acme").replace("https://", "ftp://"))
    errors = conf.errors()
    assert errors == [
        'customers/acme.toml:12: [[trigger]] "acme-shipped" options.url: must start with '
        "https://, got 'ftp://acme.example/hook'"
    ]
    assert conf.errors() == errors


def test_cross_file_checks_run_on_the_whole_directory(conf: CachedConf) -> None:
    conf.load()
    conf.write("customers/zz-acme-again.toml", customer("acme"))
    errors = conf.errors()
    assert any(
        e.startswith("customers/zz-acme-again.toml:2:")
        and 'duplicate customer id "acme": also defined at' in e
        and "customers/acme.toml:1" in e
        for e in errors
    ), errors
    (conf.root / "customers/zz-acme-again.toml").unlink()
    conf.load()
    (conf.root / "templates.toml").unlink()
    errors = conf.errors()
    assert len(errors) == 3
    assert all('template: no template "shipped"' in e for e in errors), errors


def test_a_changed_secret_file_is_seen_without_a_toml_change(
    conf: CachedConf, settled: None
) -> None:
    secret = conf.root.parent / "hook-url"
    secret.write_text("https://one.example/hook\n")
    conf.write(
        "customers/acme.toml",
        customer("acme").replace('"https://acme.example/hook"', '"${file:../../hook-url}"'),
    )
    assert conf.load().triggers["acme-shipped"].options["url"] == "https://one.example/hook"
    secret.write_text("https://two.example/hook\n")
    assert conf.load().triggers["acme-shipped"].options["url"] == "https://two.example/hook"
    assert conf.parsed() == []
    secret.unlink()
    assert conf.errors() == [
        'customers/acme.toml:12: [[trigger]] "acme-shipped" options.url: cannot resolve '
        "${file:../../hook-url}: file not found: " + str(conf.root / "customers/../../hook-url")
    ]


def test_a_changed_environment_is_seen(conf: CachedConf, settled: None) -> None:
    conf.write(
        "customers/acme.toml",
        customer("acme").replace('"https://acme.example/hook"', '"${env:ACME_URL}"'),
    )
    config = conf.load({"ACME_URL": "https://one.example/"})
    assert config.triggers["acme-shipped"].options["url"] == "https://one.example/"
    config = conf.load({"ACME_URL": "https://two.example/"})
    assert config.triggers["acme-shipped"].options["url"] == "https://two.example/"


def test_a_changed_body_file_is_seen(conf: CachedConf, settled: None) -> None:
    body = conf.root / "bodies/page.txt"
    body.parent.mkdir()
    body.write_text("one {{ orderId }}")
    conf.write(
        "page.toml",
        """
        [[template]]
        name = "page"
        format = "text"
        body_file = "bodies/page.txt"
        """,
    )
    assert conf.load().templates["page"].body == "one {{ orderId }}"
    body.write_text("two {{ orderId }}")
    assert conf.load().templates["page"].body == "two {{ orderId }}"


def test_warnings_come_back_from_the_cache(conf: CachedConf) -> None:
    conf.write("customers/acme.toml", customer("acme").replace('"order.shipped"', '"custom.thing"'))
    first = load_config_with_warnings(conf.root, environ={}, cache=conf.cache).warnings
    again = load_config_with_warnings(conf.root, environ={}, cache=conf.cache).warnings
    assert len(first) == 1 and "custom.thing" in first[0].message
    assert again == first


def test_the_repository_example_loads_the_same_with_a_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    example = example_conf(tmp_path)
    monkeypatch.chdir(example.parent)
    cache = ConfigCache()
    cold = load_config(example, environ={})
    assert load_config(example, environ={}, cache=cache) == cold
    assert load_config(example, environ={}, cache=cache) == cold
