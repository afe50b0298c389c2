"""The load generator process: posts event batches to the daemon, or plays the reference client.

`post` sends `count` events in batches of `batch`, either as fast as `concurrency` requests in
flight allow (`rate` None) or open-loop at a constant `rate` events/s (a batch every
batch/rate seconds, whatever the answers' latency). Nothing is retried: an event the daemon
refused is counted as refused, and only accepted events are expected at the receiver.

`reference` is the practical ceiling of the steady scenario: the same rendered bodies, from
the same configuration, POSTed by a plain aiohttp client at the same concurrency — no spool.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from bench.child import new_event_loop, reply, reply_error
from bench.events import customer_id, make_event
from postbackd.jsoncodec import dumps, loads


async def post_events(job: dict[str, Any]) -> dict[str, Any]:
    urls = [url + "/v1/events" for url in job.get("urls", [job["url"]])]  # batches take turns
    count, batch, start = job["count"], job["batch"], job.get("start", 0)
    end = start + count
    customers, prefix, rate = job["customers"], job["prefix"], job.get("rate")
    tally: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    refusals: dict[str, str] = {}  # the first answer of each refusing status
    headers = {"Content-Type": "application/json"}

    async def send(session: aiohttp.ClientSession, first: int) -> None:
        posted = time.time()
        last = min(end, first + batch)
        events = [make_event(prefix, i, customers, posted) for i in range(first, last)]
        url = urls[(first - start) // batch % len(urls)]
        try:
            async with session.post(url, data=dumps(events), headers=headers) as answer:
                text = await answer.read()
                statuses[answer.status] += 1
                if answer.status == 202:
                    result = loads(text)
                    tally["accepted"] += len(result["accepted"])
                    tally["duplicates"] += len(result["duplicates"])
                else:
                    tally["refused"] += len(events)
                    refusals.setdefault(str(answer.status), text[:300].decode(errors="replace"))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            tally["errors"] += len(events)
            tally[f"error:{type(exc).__name__}"] += 1

    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=0)
    started = time.time()
    late = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        firsts = range(start, end, batch)
        if rate is None:
            queue = iter(firsts)

            async def worker() -> None:
                for first in queue:
                    await send(session, first)

            await asyncio.wait_for(
                asyncio.gather(*(worker() for _ in range(job["concurrency"]))), job["deadline"]
            )
        else:
            interval = batch / rate
            pending: set[asyncio.Task[None]] = set()
            for k, first in enumerate(firsts):
                delay = started + k * interval - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    late += 1
                while len(pending) >= job["concurrency"]:
                    _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                pending.add(asyncio.create_task(send(session, first)))
                if time.time() - started > job["deadline"]:
                    break
            if pending:
                await asyncio.wait_for(asyncio.gather(*pending), job["deadline"])
    ended = time.time()
    return {
        "sent": count,
        "accepted": tally["accepted"],
        "duplicates": tally["duplicates"],
        "refused": tally["refused"],
        "errors": tally["errors"],
        "error_kinds": {k: v for k, v in tally.items() if k.startswith("error:")},
        "statuses": {str(k): v for k, v in statuses.items()},
        "refusals": refusals,
        "late_batches": late,
        "started": started,
        "ended": ended,
    }


def render_requests(conf_dir: Path, job: dict[str, Any]) -> list[tuple[bytes, dict[str, str]]]:
    """The bodies and headers the daemon would send for the events of `job`, rendered once."""
    from postbackd.deliveries.webhook.signing import signature_header
    from postbackd.events import parse_event
    from postbackd.generation import load_generation, open_plugins

    plugins = open_plugins(conf_dir)
    generation = load_generation(conf_dir, plugins, 1)
    triggers = generation.config.triggers
    timestamp = int(time.time())
    requests = []
    for index in range(job["count"]):
        event = parse_event(make_event(job["prefix"], index, job["customers"], time.time()))
        for new in generation.router.route(event):
            assert new.body is not None
            secret = triggers[new.trigger].options.get("secret")
            headers = {
                "Content-Type": new.content_type,
                "User-Agent": "postbackd-bench-reference",
                "webhook-id": new.id,
                "webhook-timestamp": str(timestamp),
            }
            if secret:
                headers["webhook-signature"] = signature_header(secret, new.id, timestamp, new.body)
            requests.append((new.body, headers))
    return requests


async def reference(job: dict[str, Any]) -> dict[str, Any]:
    requests = render_requests(Path(job["conf_dir"]), job)
    url = job["target"]
    statuses: Counter[int] = Counter()
    errors = 0
    queue = iter(requests)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        for body, headers in queue:
            try:
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    statuses[answer.status] += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                errors += 1

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started, cpu = time.time(), time.process_time()
        await asyncio.wait_for(
            asyncio.gather(*(worker(session) for _ in range(job["concurrency"]))), job["deadline"]
        )
        ended, cpu = time.time(), time.process_time() - cpu
    return {
        "requests": len(requests),
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors,
        "started": started,
        "ended": ended,
        "cpu_seconds": cpu,
    }


def build_messages(count: int) -> list[bytes]:
    """Mail like the daemon's: headers, and a JSON order status of about the same size."""
    from email.message import EmailMessage
    from email.utils import formatdate

    messages = []
    for index in range(count):
        message = EmailMessage()
        message["From"] = "Bench Print Co. <postbacks@print.example>"
        message["To"] = f"orders+{customer_id(index % 1000)}@customer.example"
        message["Subject"] = f"Order REF-{index:08d}: shipped"
        message["Date"] = formatdate()
        message["Message-ID"] = f"<reference-{index}@print.example>"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(dumps(make_event("reference", index, 1000, time.time())).decode())
        messages.append(bytes(message))
    return messages


async def smtp_reference(job: dict[str, Any]) -> dict[str, Any]:
    import aiosmtplib

    messages = build_messages(job["count"])
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=job["port"], use_tls=False, timeout=30)
    await smtp.connect()
    started = time.time()
    try:
        for data in messages:
            await smtp.sendmail(
                "postbacks@print.example", ["orders@customer.example"], data, timeout=30
            )
        ended = time.time()
    finally:
        await smtp.quit()
    return {
        "messages": len(messages),
        "message_bytes": round(sum(map(len, messages)) / max(1, len(messages))),
        "started": started,
        "ended": ended,
    }


JOBS = {"post": post_events, "reference": reference, "smtp_reference": smtp_reference}


def serve(conn: Connection) -> None:
    """The load generator process: one job at a time, each answered with its figures."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    reply(conn, None)
    try:
        while True:
            try:
                request = conn.recv()
            except EOFError:
                return
            if request[0] == "stop":
                return
            try:
                reply(conn, loop.run_until_complete(JOBS[request[0]](request[1])))
            except Exception as exc:
                reply_error(conn, exc)
    finally:
        loop.close()
