"""The batcher on a real SQLite spool and a real configuration, without a daemon: a window
closed into one file, a file whose retries run out ends `dead` with all its rows, and the
operational alerts hear of it once, with the file's name."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from postbackd.batching.batcher import Batcher
from postbackd.generation import ConfigHolder, Plugins, load_generation
from postbackd.metrics import Metrics
from postbackd.plugin import Delivery
from postbackd.router import Router
from postbackd.spool import DeliveryState, open_spool
from postbackd.testing import make_event, plugin_host

CONF = """
[daemon]
spool = "{spool}"

[[customer]]
id = "acme"

[[template]]
name = "rows"
format = "text"
header = "orderId"
body = "{{{{ orderId }}}}"

[[trigger]]
name = "files"
customer = "acme"
events = ["order.shipped"]
template = "rows"
delivery = "directory"
batch = "1s"
retry = false
options = {{ path = "{share}" }}
"""


class Watch:
    def __init__(self) -> None:
        self.dead: list[tuple[Delivery, str, str | None]] = []

    def breaker_opened(self, destination: str, error: str | None) -> None:
        raise AssertionError("no breaker for files")

    def delivery_dead(self, delivery: Delivery, destination: str, error: str | None) -> None:
        self.dead.append((delivery, destination, error))


async def test_a_dead_file_ends_its_rows_and_is_told_to_the_alerts(tmp_path: Path) -> None:
    share = tmp_path / "missing"
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "p.toml").write_text(CONF.format(spool=tmp_path / "s.db", share=share))
    plugins = Plugins(plugin_host(), ConfigHolder())
    plugins.build_deliveries({})
    generation = load_generation(conf, plugins, 1)
    plugins.holder.value = generation.config
    plugins.build_deliveries(generation.config.deliveries)
    router: Router = generation.router
    async with await open_spool(tmp_path / "s.db", exclusive=True) as spool:
        events = [make_event(f"e{n}", order=f"o-{n}") for n in range(2)]
        # routing fixes each row's 1 s window: route both just after a second begins, so that
        # they share one window however busy the machine (two files otherwise)
        await asyncio.sleep(1.0 - time.time() % 1.0 + 0.01)
        routed = [router.route(event) for event in events]
        for event, deliveries in zip(events, routed, strict=True):
            await spool.submit(event, deliveries, source="test")
        watch = Watch()
        batcher = Batcher(
            spool, lambda: generation, plugins.deliveries, plugins.host.hook, Metrics()
        )
        batcher.watch = watch
        await batcher.run_once(time.time() + 2)  # the window has ended: one file, one attempt
        page, _ = await spool.list_deliveries()
        assert {d.state for d in page} == {DeliveryState.DEAD}
        ((delivery, destination, error),) = watch.dead
        assert delivery.file_name is not None and delivery.file_name.startswith("files-")
        assert destination == f"directory:{share}"
        assert error is not None and "does not exist" in error
        detail: Any = await spool.get_delivery(page[0].id)
        assert detail.attempts[0].request["file"] == delivery.file_name
