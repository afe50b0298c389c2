"""The overview's Nodes table in a real browser: two nodes on one real PostgreSQL whose
configurations differ, the warning that says so, and the warning gone once they agree."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from postbackd.testing import PostbackdDaemon, WebhookReceiver, free_port
from tests.configs import webhook_config
from tests.pg_fixtures import pg_cluster, pg_url
from tests.ui.conftest import TOKEN, log_in

__all__ = ["pg_cluster", "pg_url"]

EXTRA = """
[[trigger]]
name = "acme-extra"
customer = "acme"
events = ["order.cancelled"]
template = "builtin:order-status-json"
delivery = "webhook"
[trigger.options]
url = "URL"
"""


@pytest.fixture
def two_nodes(
    tmp_path: Path, pg_url: str, receiver: WebhookReceiver
) -> Iterator[tuple[PostbackdDaemon, PostbackdDaemon]]:
    nodes = []
    for name in ("node-a", "node-b"):
        port = free_port()
        daemon = PostbackdDaemon(tmp_path / name, port, token=TOKEN)
        daemon.write_files(
            webhook_config(
                receiver.url(),
                port=port,
                spool=pg_url,
                token=TOKEN,
                daemon_extra=f'node = "{name}"',
            )
        )
        nodes.append(daemon)
    nodes[1].write("extra.toml", EXTRA.replace("URL", receiver.url("/extra")))
    yield nodes[0], nodes[1]
    for daemon in nodes:
        daemon.stop()


async def test_the_overview_lists_the_nodes_and_warns_while_they_differ(
    two_nodes: tuple[PostbackdDaemon, PostbackdDaemon], page: Page
) -> None:
    a, b = two_nodes
    a.launch()
    b.launch()
    await a.wait_ready(30)
    await b.wait_ready(30)
    await log_in(page, a)
    nodes = page.get_by_role("table").filter(has_text="Generation").filter(has_text="node-a")
    await expect(nodes.get_by_role("row")).to_have_count(3)  # the header and two nodes
    await expect(nodes.get_by_role("row", name="node-a (this node)")).to_be_visible()
    await expect(nodes.get_by_role("row", name="node-b")).to_contain_text("2")  # its triggers
    warning = page.locator("#nodes-warning")
    await expect(warning).to_contain_text("2 different configurations")
    await expect(warning).to_contain_text("node-a")

    (b.conf_dir / "extra.toml").unlink()  # B's watcher reloads: the same tables as A now
    deadline = time.monotonic() + 20
    while True:
        status, config = await b.get("/v1/config")
        if status == 200 and config["nodes_warning"] is None:
            break
        assert time.monotonic() < deadline, config
        await asyncio.sleep(0.1)
    await page.reload()
    await expect(page.locator("#nodes-warning")).to_have_count(0)
    await expect(nodes.get_by_role("row")).to_have_count(3)
