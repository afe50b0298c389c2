"""Hot reload of a running daemon: files dropped in, changed, deleted, broken; SIGHUP;
`postbackd reload`; events during rapid reloads; editors' temporary files; listener rebinding.

Each test runs the daemon as a subprocess on a generated configuration directory and watches
what a user would: the webhooks that arrive, GET /v1/config, /metrics, the CLI's exit code.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from postbackd.testing import PostbackdDaemon, free_port
from tests.configs import event

SETTLE = 1.0  # longer than the watcher's debounce, with a margin


def customer_file(customer: str, url: str, *, schedule: str = '["200ms"]') -> str:
    return f"""
[[customer]]
id = "{customer}"
name = "{customer.title()} Prints"

[[trigger]]
name = "{customer}-all"
customer = "{customer}"
events = ["order.*"]
template = "builtin:order-status-json"
delivery = "webhook"
retry_schedule = {schedule}
[trigger.options]
url = "{url}"
"""


def customer_event(event_id: str, customer: str, order: str = "o-1") -> dict[str, Any]:
    return {**event(event_id, order=order), "customer": customer}


async def generation(daemon: PostbackdDaemon) -> int:
    status, body = await daemon.get("/v1/config")
    assert status == 200, body
    return int(body["generation"])


async def wait_config(daemon: PostbackdDaemon, check: Any, timeout: float = 5.0) -> dict[str, Any]:
    """Poll GET /v1/config until `check(body)` holds; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = await daemon.get("/v1/config")
        if status == 200 and check(body):
            return body
        assert time.monotonic() < deadline, f"config never matched; last: {body}"
        await asyncio.sleep(0.05)


async def metric(daemon: PostbackdDaemon, name: str, **labels: str) -> float:
    status, text = await daemon.get("/metrics")
    assert status == 200
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "postbackd",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_customer_file_added_changed_and_deleted(receiver, daemon_factory):
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    beta = daemon.conf_dir / "beta.toml"

    beta.write_text(customer_file("beta", receiver.url("/beta")))
    written = time.monotonic()
    await wait_config(daemon, lambda c: "beta" in c["customers"], timeout=2.0)
    assert await daemon.post(customer_event("b-1", "beta")) == (
        202,
        {"accepted": ["b-1"], "duplicates": []},
    )
    await receiver.wait_for(1, path="/beta", timeout=5)
    assert time.monotonic() - written < 5

    before = await generation(daemon)
    beta.write_text(customer_file("beta", receiver.url("/beta-v2")))
    await wait_config(daemon, lambda c: c["generation"] > before)
    await daemon.post(customer_event("b-2", "beta", order="o-2"))
    (request,) = await receiver.wait_for(1, path="/beta-v2", timeout=5)
    assert json.loads(request.body)["orderId"] == "o-2"

    # A delivery waiting for its retry when the file goes: cancelled, with the reason.
    receiver.respond("/beta-v3", 500)
    beta.write_text(customer_file("beta", receiver.url("/beta-v3"), schedule='["1h"]'))
    await wait_config(daemon, lambda c: c["generation"] > before + 1)
    await daemon.post(customer_event("b-3", "beta", order="o-3"))
    await receiver.wait_for(1, path="/beta-v3", timeout=5)
    waiting = await _deliveries(daemon, "beta", lambda d: d["event_id"] == "b-3" and d["attempts"])
    assert waiting["state"] == "pending"
    beta.unlink()
    await wait_config(daemon, lambda c: "beta" not in c["customers"])
    cancelled = await _deliveries(daemon, "beta", lambda d: d["event_id"] == "b-3")
    assert cancelled["state"] == "cancelled"
    assert cancelled["last_error"] == "trigger beta-all was removed from the configuration"
    assert await daemon.post(customer_event("b-4", "beta", order="o-4")) == (
        202,
        {"accepted": ["b-4"], "duplicates": []},
    )
    await daemon.post(event("a-1"))  # acme, untouched by all this, still flows
    await receiver.wait_for(1, path="/hook", timeout=5)
    await asyncio.sleep(0.5)
    assert not [r for r in receiver.requests if r.path.startswith("/beta") and b"o-4" in r.body]


async def _deliveries(daemon: PostbackdDaemon, customer: str, match: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        status, body = await daemon.get(f"/v1/deliveries?customer={customer}&limit=100")
        assert status == 200, body
        found = [d for d in body["deliveries"] if match(d)]
        if found:
            return found[0]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


async def test_broken_file_keeps_the_running_config(receiver, daemon_factory):
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    start = await generation(daemon)
    broken = daemon.conf_dir / "broken.toml"
    broken.write_text('[[customer]]\nid = "broken"\n\n[[trigger]]\nname = "x"\ncustomer = 7\n')
    body = await wait_config(daemon, lambda c: c["last_error"] is not None)
    assert body["generation"] == start
    assert f"{broken}:6:" in body["last_error"]
    assert await metric(daemon, "postbackd_config_reloads_total", result="rejected") == 1
    assert f"{broken}:6:" in daemon.logs()
    assert "reload rejected" in daemon.logs()

    await daemon.post(event("still-1"))  # the old configuration still delivers
    await receiver.wait_for(1, timeout=5)

    code, out, err = await run_cli("reload", "-c", str(daemon.conf_dir))
    assert code == 1, (out, err)
    assert f"{broken}:6:" in err
    # The same, answered by the daemon itself (its own validation of the directory).
    code, out, err = await run_cli("reload", "-c", str(daemon.conf_dir), "--url", daemon.base_url)
    assert code == 1, (out, err)
    assert f"{broken}:6:" in err and "keeps generation" in err
    assert await metric(daemon, "postbackd_config_reloads_total", result="rejected") >= 2

    broken.unlink()
    body = await wait_config(daemon, lambda c: c["last_error"] is None)
    assert body["generation"] > start

    # Sources are part of the transaction: one that no plugin provides is refused up front.
    stranger = daemon.conf_dir / "stranger.toml"
    stranger.write_text('[sources.carrier-pigeon]\nloft = "roof"\n')
    refused = await wait_config(daemon, lambda c: c["last_error"] is not None)
    assert refused["generation"] == body["generation"]
    assert f"{stranger}:1: [sources.carrier-pigeon]: no source plugin" in refused["last_error"]
    stranger.unlink()
    body = await wait_config(daemon, lambda c: c["last_error"] is None)
    code, out, err = await run_cli("reload", "-c", str(daemon.conf_dir))
    assert code == 0, err
    assert out.startswith("reloaded: generation ")
    assert await metric(daemon, "postbackd_config_generation") == await generation(daemon)


async def test_sighup_reloads_and_editor_files_do_not(receiver, daemon_factory):
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    first = await wait_config(daemon, lambda c: True)
    daemon.signal(signal.SIGHUP)
    second = await wait_config(daemon, lambda c: c["generation"] == first["generation"] + 1)
    assert second["loaded_at"] >= first["loaded_at"]
    assert second["last_error"] is None
    assert second["customers"] == ["acme"]
    assert second["triggers"]["acme-all"]["delivery"] == "webhook"
    assert await metric(daemon, "postbackd_config_reloads_total", result="applied") == 1

    (daemon.conf_dir / ".acme.toml.swp").write_text("swap")
    (daemon.conf_dir / "acme.toml~").write_text("backup")
    (daemon.conf_dir / "4913.tmp").write_text("")
    await asyncio.sleep(SETTLE)
    assert await generation(daemon) == second["generation"]


async def test_events_during_rapid_reloads_are_all_delivered(receiver, daemon_factory):
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    start = await generation(daemon)
    acme = daemon.conf_dir / "acme.toml"
    text = acme.read_text()

    async def reload_twenty_times() -> int:
        """File edits (coalesced by the watcher), SIGHUPs and API calls; returns the latter two."""
        distinct = 0
        async with aiohttp.ClientSession() as session:
            for index in range(20):
                if index % 3 == 0:
                    acme.write_text(f"{text}\n# edit {index}\n")
                elif index % 3 == 1:
                    daemon.signal(signal.SIGHUP)
                    distinct += 1
                else:
                    async with session.post(f"{daemon.base_url}/v1/reload") as response:
                        assert response.status == 200, await response.text()
                    distinct += 1
                await asyncio.sleep(0.1)
        return distinct

    async def post_all() -> list[tuple[int, Any]]:
        answers = []
        for batch in range(40):
            events = [event(f"r-{batch}-{i}", order=f"o-{batch}-{i}") for i in range(5)]
            answers.append(await daemon.post(events))
            await asyncio.sleep(0.02)
        return answers

    distinct, answers = await asyncio.gather(reload_twenty_times(), post_all())
    assert [status for status, _ in answers] == [202] * 40
    await receiver.wait_for(200, timeout=30)
    orders = {json.loads(r.body)["orderId"] for r in receiver.requests}
    assert len(orders) == 200
    await wait_config(daemon, lambda c: c["generation"] >= start + distinct + 1)
    assert await metric(daemon, "postbackd_config_reloads_total", result="rejected") == 0


async def test_changed_listen_rebinds_and_unchanged_keeps_connections(receiver, daemon_factory):
    daemon = daemon_factory(receiver.url("/hook"))
    daemon.launch()
    await daemon.wait_ready()
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    try:
        assert (await _get(reader, writer, "/healthz"))[0] == 200
        before = await generation(daemon)
        daemon.signal(signal.SIGHUP)  # nothing changed: the listener keeps serving
        await wait_config(daemon, lambda c: c["generation"] == before + 1)
        status, body = await _get(reader, writer, "/v1/config")  # the same TCP connection
        assert status == 200 and json.loads(body)["generation"] == before + 1

        settings = daemon.conf_dir / "daemon.toml"  # a new token, the same listen
        settings.write_text(settings.read_text() + 'token = "rotated-token"\n')
        daemon.token = "rotated-token"
        await wait_config(daemon, lambda c: c["generation"] == before + 2)
        status, _ = await _get(reader, writer, "/v1/config")  # still the same connection
        assert status == 401  # and the new token is in force
    finally:
        writer.close()

    old_port, new_port = daemon.port, free_port()
    settings.write_text(settings.read_text().replace(f":{old_port}", f":{new_port}"))
    daemon.port = new_port
    await daemon.wait_ready(timeout=5)
    assert await generation(daemon) == before + 3
    try:
        await asyncio.open_connection("127.0.0.1", old_port)
        raise AssertionError("the old port still accepts connections")
    except OSError:
        pass
    await daemon.post(event("moved-1"))
    await receiver.wait_for(1, timeout=5)


async def _get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection; the status and the body."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    length = int(headers.get("Content-Length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 5)
    return int(lines[0].split()[1]), body


async def test_a_sqlite_node_lists_itself_with_each_generation(receiver, daemon_factory):
    """One daemon on its own spool file is the one live node; a reload updates its heartbeat
    (generation and fingerprint) at once, and there is nothing to warn about."""
    daemon = daemon_factory(receiver.url("/hook"), daemon_extra='node = "solo"')
    daemon.launch()
    await daemon.wait_ready()
    first = await wait_config(daemon, lambda c: len(c["nodes"]) == 1)
    (node,) = first["nodes"]
    assert node["node"] == "solo" == first["node"]
    assert node["generation"] == first["generation"]
    assert node["fingerprint"] == first["fingerprint"] and first["nodes_warning"] is None
    assert node["triggers"] == ["acme-all"]

    (daemon.conf_dir / "beta.toml").write_text(customer_file("beta", receiver.url("/beta")))
    second = await wait_config(daemon, lambda c: c["generation"] > first["generation"])
    (node,) = second["nodes"]
    assert node["generation"] == second["generation"]
    assert node["fingerprint"] == second["fingerprint"] != first["fingerprint"]
    assert node["triggers"] == ["acme-all", "beta-all"] == sorted(second["triggers"])
    assert node["started_at"] <= node["last_seen"]


async def test_a_hostile_node_name_is_shown_as_text(receiver, daemon_factory):
    """The node name is the operator's, but it reaches the UI: it is escaped, never markup."""
    name = 'solo"><script>alert(1)</script>'
    daemon = daemon_factory(receiver.url("/hook"), daemon_extra=f"node = '{name}'")
    daemon.launch()
    await daemon.wait_ready()
    config = await wait_config(daemon, lambda c: len(c["nodes"]) == 1)
    assert config["nodes"][0]["node"] == name
    status, page = await daemon.get("/ui/")
    assert status == 200
    assert "<script>alert(1)" not in page
    assert "solo&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt; (this node)" in page
    assert (await daemon.post(event("after-ui", order="o-1")))[0] == 202
    await receiver.wait_for(1, timeout=10)
