"""The plugin API: the DESIGN §7 example as written, loading and its fail-fast checks, the
documented hook reference, `postbackd plugins`, and the one-file template plugin.

Plugins are registered inline (this module is one) and entry points are not loaded here.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import aiohttp
import pytest

import postbackd.plugin as public
from postbackd import hookspecs
from postbackd.daemon import Daemon
from postbackd.generation import ConfigHolder, Plugins
from postbackd.plugins import DISABLE_ENV, OriginKind, PluginError, instantiate, load_plugins
from postbackd.testing import free_port
from tests.configs import event

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "plugins.md"

# ---------------------------------------------------------------- DESIGN §7, verbatim
# fmt: off
import asyncio  # noqa: E402, I001  (the example's own imports, which §7 leaves out)

from postbackd.plugin import hookimpl, Delivery, Outcome  # noqa: E402


class FileDelivery:
    """Writes each postback to a directory (a 20-line example)."""

    def __init__(self, settings: dict) -> None:      # the [deliveries.file] table, or {}
        self.settings = settings

    def validate_options(self, options: dict) -> list[str]:
        return [] if "directory" in options else ["options.directory is required"]

    async def deliver(self, delivery: Delivery, options: dict) -> Outcome:
        path = Path(options["directory"]) / f"{delivery.id}.{delivery.format}"
        await asyncio.to_thread(path.write_bytes, delivery.body)
        return Outcome.ok(detail=str(path))           # or Outcome.retry(error, after=None)
                                                     # or Outcome.fail(error)  (permanent: dead)
    async def close(self) -> None: ...

@hookimpl
def postbackd_register_deliveries(register):
    register("file", FileDelivery)
# fmt: on


# ---------------------------------------------------------------- the example, running


async def test_design_example_delivers_through_a_running_daemon(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "postbackd.toml").write_text(
        textwrap.dedent(f"""
        [daemon]
        spool = "{tmp_path / "spool.db"}"
        [sources.http]
        listen = "127.0.0.1:{port}"
        [[customer]]
        id = "acme"
        name = "Acme"
        [[trigger]]
        name = "acme-files"
        customer = "acme"
        events = ["order.*"]
        template = "builtin:order-status-json"
        delivery = "file"
        [trigger.options]
        directory = "{out}"
        """)
    )
    host = load_plugins(use_entry_points=False, extra=[sys.modules[__name__]])
    plugins = Plugins(host, ConfigHolder())
    plugins.build_deliveries({})
    daemon = Daemon(conf, plugins)
    running = asyncio.create_task(daemon.run())
    try:
        async with aiohttp.ClientSession() as session:
            await _until_ready(session, f"http://127.0.0.1:{port}", running)
            async with session.post(
                f"http://127.0.0.1:{port}/v1/events", json=event("evt-file", order="o-42")
            ) as answer:
                assert answer.status == 202, await answer.text()
            written = await _until_file(out)
            # the file is written by the attempt; its outcome is committed a moment later
            deadline = time.monotonic() + 10
            while True:
                async with session.get(f"http://127.0.0.1:{port}/v1/deliveries") as answer:
                    (delivery,) = (await answer.json())["deliveries"]
                if delivery["state"] == "done" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(running, 20) == 0
    assert written.name == f"{delivery['id']}.json"
    assert json.loads(written.read_bytes())["orderId"] == "o-42"
    assert delivery["state"] == "done"


async def _until_ready(session: aiohttp.ClientSession, base: str, task: asyncio.Task) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert not task.done(), f"the daemon stopped: {task.result()}"
        try:
            async with session.get(f"{base}/readyz") as answer:
                if answer.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the daemon did not become ready")


async def _until_file(directory: Path) -> Path:
    for _ in range(500):
        found = [p for p in directory.iterdir() if p.suffix == ".json"]
        if found:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing was written to {directory}")


# ---------------------------------------------------------------- the API and its reference


def test_public_surface_is_what_design_promises():
    promised = {"hookimpl", "Event", "Delivery", "Outcome", "Submit", "SubmitResult"}
    promised |= {"EventRejected", "SpoolUnavailable", "API_VERSION", "PluginContext"}
    assert promised <= set(public.__all__)
    assert all(hasattr(public, name) for name in public.__all__)
    assert public.API_VERSION == 1


@pytest.mark.parametrize("name", hookspecs.hook_names())
def test_every_hook_is_typed_and_documented(name):
    spec = getattr(hookspecs, name)
    signature = inspect.signature(spec)
    assert signature.return_annotation is not inspect.Signature.empty
    assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values())
    doc = inspect.getdoc(spec) or ""
    assert "When:" in doc and "Returns:" in doc and "async" in doc
    for parameter in signature.parameters:
        assert f"{parameter}:" in doc, f"{name}: argument {parameter} is not described"


@pytest.mark.parametrize("name", hookspecs.hook_names())
def test_the_guide_documents_every_hook(name):
    guide = GUIDE.read_text()
    arguments = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
    assert f"### `{name}({arguments})`" in guide


def test_the_guide_documents_no_hook_that_does_not_exist():
    headings = [line for line in GUIDE.read_text().splitlines() if line.startswith("### `postb")]
    assert {h.split("`")[1].split("(")[0] for h in headings} == set(hookspecs.hook_names())


def test_example_plugins_import_only_the_public_surface():
    checked = 0
    for path in sorted((REPO / "plugins").rglob("*.py")):
        if "tests" in path.relative_to(REPO / "plugins").parts:
            continue
        checked += 1
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for module in names:
                if module == "postbackd" or module.startswith("postbackd."):
                    assert module == "postbackd.plugin", f"{path}: imports {module}"
    assert checked >= 5


# ---------------------------------------------------------------- loading and its checks


def write_plugin(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def hook_plugin(directory: Path, name: str, hook: str) -> Path:
    """A plugin file whose only content is one ``@hookimpl`` function (`hook`)."""
    source = "from postbackd.plugin import hookimpl\n\n@hookimpl\n" + textwrap.dedent(hook)
    return write_plugin(directory, name, source)


def test_plugin_dirs_load_files_and_packages_with_their_origin(tmp_path):
    hook_plugin(
        tmp_path,
        "solo.py",
        """\
        def postbackd_register_template_filters(register):
            register("shout", str.upper)
        __version__ = "2.1"
        """,
    )
    hook_plugin(
        tmp_path / "bundle",
        "__init__.py",
        """\
        def postbackd_register_deliveries(register):
            from .impl import Quiet
            register("quiet", Quiet)
        """,
    )
    write_plugin(tmp_path / "bundle", "impl.py", "class Quiet:\n    pass\n")
    write_plugin(tmp_path, "_private.py", "raise RuntimeError('never imported')\n")
    host = load_plugins([tmp_path], use_entry_points=False, disabled=())
    assert host.origins["solo"].kind is OriginKind.FILE
    assert host.origins["solo"].version == "2.1"
    assert host.origins["bundle"].version == "-"
    assert host.registered_by("solo") == {"template_filters": ["shout"]}
    assert host.deliveries["quiet"].plugin == "bundle"
    assert host.origins["postbackd.sources.http"].kind is OriginKind.BUILTIN


def test_disabled_plugins_are_skipped_by_name(tmp_path, monkeypatch):
    write_plugin(tmp_path, "broken.py", "raise RuntimeError('boom')\n")
    monkeypatch.setenv(DISABLE_ENV, "broken, postbackd.sources.amqp")
    host = load_plugins([tmp_path], use_entry_points=False)
    assert "broken" not in host.origins
    assert "amqp" not in host.sources and "http" in host.sources


def load_dir(directory: Path) -> None:
    load_plugins([directory], use_entry_points=False, disabled=())


def test_import_error_names_plugin_file_and_line(tmp_path):
    path = write_plugin(tmp_path, "broken.py", "import os\n\nraise RuntimeError('no key')\n")
    with pytest.raises(PluginError) as caught:
        load_dir(tmp_path)
    message = str(caught.value)
    assert f"plugin 'broken' (file {path}) failed to import: RuntimeError: no key" in message
    assert f"(at {path}:3)" in message
    assert f"{DISABLE_ENV}=broken" in message


def test_syntax_error_names_the_line(tmp_path):
    path = write_plugin(tmp_path, "typo.py", "def broken(:\n    pass\n")
    with pytest.raises(PluginError, match=rf"SyntaxError: .*\(at {path}:1\)"):
        load_dir(tmp_path)


def test_misspelled_hook_names_plugin_hook_and_guess(tmp_path):
    path = hook_plugin(
        tmp_path, "typo.py", "def postbackd_register_delivery(register):\n    pass\n"
    )
    with pytest.raises(PluginError) as caught:
        load_dir(tmp_path)
    assert str(caught.value).startswith(
        f"plugin 'typo' (file {path}): postbackd_register_delivery is not a postbackd hook "
        "— did you mean postbackd_register_deliveries?"
    )


def test_hook_without_hookimpl_is_refused(tmp_path):
    write_plugin(tmp_path, "bare.py", "def postbackd_register_deliveries(register):\n    pass\n")
    with pytest.raises(PluginError, match="postbackd_register_deliveries is not marked @hookimpl"):
        load_dir(tmp_path)


def test_async_hook_is_refused(tmp_path):
    hook_plugin(
        tmp_path, "eager.py", "async def postbackd_after_event_accepted(event):\n    pass\n"
    )
    with pytest.raises(PluginError, match="hook postbackd_after_event_accepted is async"):
        load_dir(tmp_path)


def test_hook_with_an_argument_the_spec_lacks_is_refused(tmp_path):
    hook_plugin(tmp_path, "odd.py", "def postbackd_after_delivery(delivery, result):\n    pass\n")
    with pytest.raises(PluginError, match=r"plugin 'odd' \(file .*odd.py\) has a hook that does"):
        load_dir(tmp_path)


def test_duplicate_delivery_name_names_both_plugins(tmp_path):
    for name in ("first.py", "second.py"):
        hook_plugin(
            tmp_path,
            name,
            "def postbackd_register_deliveries(register):\n    register('file', object)\n",
        )
    with pytest.raises(PluginError) as caught:
        load_dir(tmp_path)
    first, second = tmp_path / "first.py", tmp_path / "second.py"
    assert str(caught.value) == (
        f"delivery name 'file' is registered by two plugins: 'first' (file {first}) "
        f"and 'second' (file {second}); disable one with {DISABLE_ENV}"
    )


def test_duplicate_builtin_name_is_refused(tmp_path):
    hook_plugin(
        tmp_path, "mine.py", "def postbackd_register_sources(register):\n    register('http', 1)\n"
    )
    with pytest.raises(PluginError, match=r"'postbackd.sources.http' \(built-in\) and 'mine'"):
        load_dir(tmp_path)


def test_two_plugin_files_with_one_name_are_refused(tmp_path):
    write_plugin(tmp_path / "a", "same.py", "")
    write_plugin(tmp_path / "b", "same.py", "")
    with pytest.raises(PluginError, match="two plugins are named 'same'"):
        load_plugins([tmp_path / "a", tmp_path / "b"], use_entry_points=False, disabled=())


def test_raising_registration_names_plugin_and_line(tmp_path):
    path = hook_plugin(
        tmp_path,
        "angry.py",
        "def postbackd_register_sources(register):\n    raise KeyError('MIS_URL')\n",
    )
    with pytest.raises(PluginError) as caught:
        load_dir(tmp_path)
    assert str(caught.value) == (
        f"plugin 'angry' (file {path}) raised in postbackd_register_sources: "
        f"KeyError: 'MIS_URL' (at {path}:5)"
    )


def test_plugin_for_another_api_version_is_refused(tmp_path):
    write_plugin(tmp_path, "future.py", "POSTBACKD_API_VERSION = 2\n")
    with pytest.raises(PluginError, match=r"written for plugin API version 2; .* version 1"):
        load_dir(tmp_path)


def test_missing_plugin_directory_is_named(tmp_path):
    with pytest.raises(PluginError, match=f"plugin directory {tmp_path / 'nope'} does not exist"):
        load_dir(tmp_path / "nope")


def test_a_class_failing_to_build_is_named():
    class Fragile:
        def __init__(self, settings: dict) -> None:
            raise OSError("certificate file missing")

    context = public.PluginContext(config=lambda: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(PluginError, match=r"\[sources.x\]: .*Fragile raised OSError when built"):
        instantiate(Fragile, {}, context, label="[sources.x]")
    with pytest.raises(PluginError, match="Fragile: invalid settings: bad"):
        instantiate(type("Fragile", (), {"__init__": _refuse}), {}, context)


def _refuse(self: object, settings: dict) -> None:
    raise ValueError("bad")


# ---------------------------------------------------------------- the CLI


def postbackd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postbackd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def money_conf(tmp_path: Path) -> Path:
    conf = tmp_path / "conf.d"
    write_plugin(
        conf,
        "postbackd.toml",
        f"""
        [daemon]
        spool = "{tmp_path / "spool.db"}"
        plugin_dirs = ["{REPO / "plugins" / "local"}"]
        [[customer]]
        id = "acme"
        name = "Acme"
        [[template]]
        name = "invoice"
        format = "json"
        body = '''{{"total": "{{{{ totalPrice | money(currency) }}}}",
                  "to": "{{{{ country_name(shipTo.country) }}}}"}}'''
        """,
    )
    return conf


def test_plugins_lists_file_plugins_from_the_configuration(tmp_path):
    result = postbackd("plugins", "--json", "-c", str(money_conf(tmp_path)))
    assert result.returncode == 0, result.stderr
    listed = {p["name"]: p for p in json.loads(result.stdout)}
    assert listed["money"] == {
        "name": "money",
        "version": "1.0.0",
        "origin": "file",
        "where": str(REPO / "plugins" / "local" / "money.py"),
        "package": None,
        "registers": {"template_globals": ["country_name"], "template_filters": ["money"]},
        "hooks": ["postbackd_register_template_filters", "postbackd_register_template_globals"],
    }
    assert listed["postbackd.deliveries.webhook"]["origin"] == "built-in"
    table = postbackd("plugins", "--no-plugins", "-c", str(money_conf(tmp_path))).stdout
    assert "template globals: country_name; template filters: money" in table
    assert "entry point" not in table


def test_plugins_needs_no_valid_configuration(tmp_path):
    conf = write_plugin(tmp_path / "conf.d", "broken.toml", "[daemon\n").parent
    result = postbackd("plugins", "-c", str(conf))
    assert result.returncode == 0
    assert "postbackd.sources.http" in result.stdout
    assert "the configuration has errors" in result.stderr


def test_plugins_reports_a_broken_plugin(tmp_path):
    conf = money_conf(tmp_path)
    write_plugin(tmp_path / "more", "broken.py", "raise ImportError('no module named acme_sdk')\n")
    text = (conf / "postbackd.toml").read_text()
    (conf / "postbackd.toml").write_text(
        text.replace('plugin_dirs = ["', f'plugin_dirs = ["{tmp_path / "more"}", "')
    )
    result = postbackd("plugins", "-c", str(conf))
    assert result.returncode == 1
    assert "plugin 'broken'" in result.stderr and "no module named acme_sdk" in result.stderr


def test_plugins_hooks_prints_the_reference():
    result = postbackd("plugins", "--hooks", "--json")
    reference = json.loads(result.stdout)
    assert reference["api_version"] == public.API_VERSION
    assert [h["name"] for h in reference["hooks"]] == list(hookspecs.hook_names())


def test_money_plugin_renders_through_plugin_dirs(tmp_path):
    conf = money_conf(tmp_path)
    event_file = tmp_path / "event.json"
    event_file.write_text(
        json.dumps(event("evt-m", totalPrice="1234.5", currency="EUR", shipTo={"country": "DE"}))
    )
    result = postbackd("render", "invoice", "--event", str(event_file), "-c", str(conf))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"total": "€1,234.50", "to": "Germany"}
    event_file.write_text(json.dumps(event("evt-m", totalPrice="n/a", shipTo={})))
    failed = postbackd("render", "invoice", "--event", str(event_file), "-c", str(conf))
    assert failed.returncode == 1
    assert "money: 'n/a' is not a number" in failed.stderr


# ---------------------------------------------------------------- the guide, followed


def guide_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_guide_walkthrough_runs_as_written(tmp_path):
    """The guide's plugin, package metadata and tests, copied out and run with pytest."""
    blocks = guide_blocks("python")
    blocks = guide_blocks("python")
    plugin, tests = blocks[0], next(b for b in blocks if b.startswith("# test_legacy_get.py"))
    pyproject = next(b for b in guide_blocks("toml") if b.startswith("# pyproject.toml"))
    metadata = tomllib.loads(pyproject)
    assert metadata["project"]["entry-points"]["postbackd"] == {"legacy_get": "legacy_get"}
    assert len(plugin.splitlines()) <= 40
    project = tmp_path / "postbackd-legacy-get"
    project.mkdir()
    (project / "pyproject.toml").write_text(pyproject)
    (project / "legacy_get.py").write_text(plugin)
    (project / "test_legacy_get.py").write_text(tests)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_guide_settings_example_refuses_what_it_says():
    """The guide's read_settings example, run: a dict is refused naming every table key."""
    (example,) = [b for b in guide_blocks("python") if "class QueueSettings" in b]
    scope: dict = {}
    exec(compile(example, "plugins.md", "exec"), scope)
    with pytest.raises(ValueError) as caught:
        scope["QueueSource"]({"url": "http://mis", "batch": 20_000})
    assert str(caught.value).splitlines() == [
        "[sources.my-queue] url: must be an https:// URL",
        "[sources.my-queue] batch: must be at most 10000, got 20000",
    ]


def test_guide_plugin_is_listed_from_plugin_dirs(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "legacy_get.py", guide_blocks("python")[0])
    conf = write_plugin(
        tmp_path / "conf.d", "daemon.toml", f'[daemon]\nplugin_dirs = ["{plugins}"]\n'
    ).parent
    listing = postbackd("plugins", "-c", str(conf)).stdout
    (line,) = [row for row in listing.splitlines() if row.startswith("legacy_get ")]
    where = str(plugins / "legacy_get.py")
    assert line.split() == ["legacy_get", "-", "file", where, "deliveries:", "legacy-get"]


async def test_guide_package_installs_and_delivers_from_its_entry_point(
    tmp_path, webhook_receiver, postbackd_daemon
):
    """Step 2 of the guide for real: pip builds and installs it; no plugin_dirs involved."""
    project = tmp_path / "postbackd-legacy-get"
    write_plugin(project, "legacy_get.py", guide_blocks("python")[0])
    pyproject = next(b for b in guide_blocks("toml") if b.startswith("# pyproject.toml"))
    write_plugin(project, "pyproject.toml", pyproject)
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, project],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    env = {"PYTHONPATH": str(site)}
    daemon = postbackd_daemon(
        env=env,
        triggers=[{"delivery": "legacy-get", "options": {"url": webhook_receiver.url("/status")}}],
    )
    listing = json.loads(daemon.command("plugins", "--json").stdout)
    (plugin,) = [p for p in listing if p["name"] == "legacy_get"]
    assert (plugin["origin"], plugin["version"], plugin["package"]) == (
        "entry point",
        "0.1.0",
        "postbackd-legacy-get",
    )
    await daemon.start()
    await daemon.submit(event("evt-erp", order="o-9"))
    (request,) = await webhook_receiver.wait_for(1, path="/status")
    (delivery,) = await daemon.wait_for_deliveries(1)
    assert request.method == "GET"
    assert request.query == {"order": "o-9", "status": "order.shipped", "id": delivery["id"]}
    assert delivery["state"] == "done"
