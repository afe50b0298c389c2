"""Take the README's screenshots of the web UI: a real daemon, real traffic, a real browser.

    .venv/bin/python scripts/screenshots.py [--minutes 3] [--out docs/screenshots]

Starts `postbackd run` on a demo configuration in a temporary directory, with three webhook
receivers on 127.0.0.1 (acme answers 200; globex fails one request in five; initech is down,
so its deliveries die and its circuit breaker opens), sends order events for `--minutes`
so the overview has a history, then logs in with headless Debian chromium
(/usr/bin/chromium; scripts/chromium.sh installs it) and saves one PNG per page.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from playwright.async_api import Page, async_playwright

TOKEN = "demo-admin-token"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ACME = """
[[customer]]
id = "acme"
name = "Acme Prints"

[[template]]
name = "acme-shipped"
format = "json"
body = '''
{% set method = items[0].fulfillments[0].shipmentMethodUid -%}
{
  "order": {{ orderId | tojson }},
  "reference": {{ orderReferenceId | tojson }},
  "status": {{ event.type | tojson }},
  "carrier": {{ lookups({"shipmentMethodUid": method}) | tojson }}
}
'''

[[lookup]]
name = "acme-carriers"
key = "shipmentMethodUid"
customer = "acme"
values = { dhl_express_uid = "DHL Express", ups_standard_uid = "UPS Standard" }

[[trigger]]
name = "acme-status"
customer = "acme"
events = ["order.*"]
template = "acme-shipped"
delivery = "webhook"
[trigger.options]
url = "RECEIVER/acme"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""
EVENT_TYPES = ("order.received", "order.in_production", "order.shipped", "order.delivered")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_config(conf: Path, port: int, receivers: dict[str, str]) -> None:
    conf.mkdir(parents=True)
    (conf / "daemon.toml").write_text(
        f"""
[daemon]
spool = "{conf.parent / "spool.db"}"
allow_private_destinations = true
breaker_failures = 5

[sources.http]
listen = "127.0.0.1:{port}"
token = "{TOKEN}"
"""
    )
    (conf / "acme.toml").write_text(ACME.replace("RECEIVER", receivers["acme"]))
    (conf / "others.toml").write_text(
        f"""
[[customer]]
id = "globex"
name = "Globex"

[[trigger]]
name = "globex-xml"
customer = "globex"
events = ["order.*"]
template = "builtin:order-status-xml"
delivery = "webhook"
retry_schedule = ["2s", "4s"]
[trigger.options]
url = "{receivers["globex"]}/globex"
headers = {{ Authorization = "Bearer globex-api-key" }}

[[customer]]
id = "initech"
name = "Initech"

[[trigger]]
name = "initech-json"
customer = "initech"
events = ["order.shipped", "order.delivered"]
template = "builtin:order-status-json"
delivery = "webhook"
retry_schedule = ["1s", "2s"]
[trigger.options]
url = "{receivers["initech"]}/initech"
"""
    )


async def start_receivers() -> tuple[web.AppRunner, dict[str, str]]:
    """One receiver app on a port per customer: each is its own destination (and breaker)."""
    rng = random.Random(5)

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        if request.path == "/initech":
            return web.Response(status=503, text="maintenance until further notice")
        if request.path == "/globex" and rng.random() < 0.2:
            return web.Response(status=500, text="internal error")
        return web.json_response({"received": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    bases = {}
    for customer in ("acme", "globex", "initech"):
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        bases[customer] = f"http://127.0.0.1:{port}"
    return runner, bases


def sample(event_type: str) -> dict:
    path = Path(__file__).parent.parent / "postbackd" / "samples" / f"{event_type}.json"
    return json.loads(path.read_text())


async def send_traffic(base: str, minutes: float) -> None:
    """Batches of events from the three customers until `minutes` have passed."""
    rng = random.Random(11)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    counter = itertools.count(1)
    deadline = time.monotonic() + minutes * 60
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            batch = []
            for _ in range(rng.randint(3, 9)):
                n = next(counter)
                event_type = rng.choice(EVENT_TYPES)
                event = sample(event_type)
                event["id"] = f"demo-{n:05d}"
                event["customer"] = rng.choice(("acme", "acme", "globex", "initech"))
                event["data"]["orderId"] = f"PO-{1000 + n // 3}"
                event["data"]["orderReferenceId"] = f"REF-{1000 + n // 3}"
                batch.append(event)
            async with session.post(f"{base}/v1/events", json=batch) as response:
                if response.status != 202:
                    raise SystemExit(f"intake refused the demo events: {await response.text()}")
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(rng.uniform(2, 6))


async def wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if process.poll() is not None:
                raise SystemExit(f"postbackd exited with {process.returncode}")
            try:
                async with session.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("postbackd did not become ready within 30 s")


async def shoot(base: str, out: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))

        await page.goto(f"{base}/ui/")
        await save(page, out / "login.png")
        await page.get_by_label("Admin token").fill(TOKEN)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(f"{base}/ui/")
        await save(page, out / "overview.png")

        await page.goto(f"{base}/ui/requests")
        await save(page, out / "requests.png", full=False)
        await page.goto(f"{base}/ui/requests?customer=initech&state=dead")
        await save(page, out / "requests-filtered.png", full=False)
        await page.locator("table.requests tbody a").first.click()
        await page.locator("details.headers").first.evaluate("d => d.open = true")
        await save(page, out / "delivery.png")

        await page.goto(f"{base}/ui/workbench?template=acme-shipped&sample=order.shipped")
        await save(page, out / "workbench.png")
        source = page.get_by_label("Source", exact=True)
        text = await source.input_value()
        await source.fill(
            text.replace(
                '"reference": {{ orderReferenceId | tojson }},',
                ('"reference": {{ orderReferenceId | tojson }}'),
            )
        )
        await page.get_by_role("button", name="Render").click()
        await page.locator("#render-error").wait_for()
        await save(page, out / "workbench-error.png")
        await page.goto(f"{base}/ui/workbench?template=acme-shipped&sample=order.shipped")
        await page.get_by_label("Trigger").select_option("acme-status")
        await page.get_by_role("button", name="Send test").click()
        await page.locator("#sent").wait_for()
        await save(page, out / "workbench-send.png")
        await browser.close()


async def save(page: Page, path: Path, full: bool = True) -> None:
    await page.screenshot(path=str(path), full_page=full)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)", flush=True)


async def main(minutes: float, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runner, receivers = await start_receivers()
    with tempfile.TemporaryDirectory(prefix="postbackd-screens-") as tmp:
        port = free_port()
        conf = Path(tmp) / "conf"
        demo_config(conf, port, receivers)
        base = f"http://127.0.0.1:{port}"
        log = (Path(tmp) / "daemon.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "postbackd", "run", "--no-plugins", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            await wait_ready(base, process)
            print(f"sending demo events for {minutes} min …", flush=True)
            await send_traffic(base, minutes)
            await asyncio.sleep(8)  # let the last retries run out
            await shoot(base, out)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to send events")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    arguments = parser.parse_args()
    asyncio.run(main(arguments.minutes, arguments.out))
