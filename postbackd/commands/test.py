"""`postbackd test TRIGGER`: render and send one real postback now, and show what happened.
(A batching trigger sends a shipment file of this one event, named ``test-…``.)

Works whatever the trigger's status (it is how a new trigger is tried before it is made
active) and never touches the spool. Prints the final request (secrets masked) and the
response: status, latency and an excerpt — or the SMTP conversation for email.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from postbackd import jsoncodec
from postbackd.commands.common import add_conf_dir_option, add_plugin_options, open_or_report
from postbackd.commands.render import read_event_arg
from postbackd.plugin import Delivery, DeliveryPlugin, Outcome
from postbackd.redaction import masked_outcome

if TYPE_CHECKING:
    from postbackd.config import Trigger
    from postbackd.generation import Generation


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("test", help="send one real postback of a trigger now")
    parser.add_argument("trigger", help="trigger name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--event", metavar="FILE", help="event JSON file; - reads stdin")
    source.add_argument("--sample", metavar="TYPE", help="a sample event type (see `samples`)")
    add_conf_dir_option(parser)
    add_plugin_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from postbackd.config import ConfigError
    from postbackd.generation import load_generation
    from postbackd.templates import RenderError

    opened = open_or_report(args, stream=sys.stderr)
    if opened is None:
        return 1
    conf_dir, plugins = opened
    try:
        generation = load_generation(conf_dir, plugins, 1)
    except ConfigError as exc:
        for diagnostic in exc.errors:
            print(diagnostic, file=sys.stderr)
        return 1
    config = generation.config
    trigger = config.triggers.get(args.trigger)
    if trigger is None:
        print(
            f"no trigger named {args.trigger!r}; known: {', '.join(sorted(config.triggers))}",
            file=sys.stderr,
        )
        return 1
    customer = None if args.event else trigger.customer
    try:
        event = read_event_arg(args.event, args.sample, customer)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    outcome = generation.router.render(trigger, event)
    if outcome.rendered is None:
        print(f"render error: {outcome.error}", file=sys.stderr)
        return 1
    rendered = outcome.rendered
    plugins.holder.value = config
    plugins.build_deliveries(config.deliveries)
    delivery = Delivery(
        id=str(uuid.uuid4()),
        event_id=event.id,
        event_type=event.type,
        customer=event.customer,
        trigger=trigger.name,
        attempt=1,
        format=rendered.format,
        content_type=rendered.content_type,
        subject=rendered.subject,
        body=rendered.body,
        order_id=event.order_id,
    )
    if trigger.batch is not None:
        try:
            delivery = _as_test_file(generation, trigger, delivery)
        except (RenderError, ValueError) as exc:
            print(f"shipment file: {exc}", file=sys.stderr)
            return 1
    plugin = plugins.deliveries[trigger.delivery]
    result, seconds = asyncio.run(_send(plugin, trigger.delivery, delivery, trigger.options))
    result = masked_outcome(result, trigger.redactor, config.shared_redactor)
    _print(plugin, delivery, result, seconds)
    return 0 if result.succeeded else 1


def _as_test_file(generation: Generation, trigger: Trigger, delivery: Delivery) -> Delivery:
    """A batching trigger is tried with a file of one row — this event's — framed like the
    current window's file and named like it with ``test-`` in front, so it cannot replace a
    real shipment file on the receiving side."""
    from postbackd.batching import EXTENSIONS, file_name
    from postbackd.batching.batcher import SHIPMENT_FILE
    from postbackd.templates import FileFrame, compose_file

    assert trigger.batch is not None
    end = trigger.batch.end_after(time.time())
    start = trigger.batch.start_of(end)
    customer = generation.config.customers.get(trigger.customer)
    name = "test-" + file_name(
        trigger.batch_file,
        trigger=trigger.name,
        customer=trigger.customer,
        start=start,
        end=end,
        part=1,
        ext=EXTENSIONS.get(delivery.format, "txt"),
    )
    frame = FileFrame(
        trigger=trigger.name,
        customer=trigger.customer,
        customer_name=customer.name if customer else trigger.customer,
        file_name=name,
        window_start=start,
        window_end=end,
        rows=1,
    )
    body = compose_file(generation.router.engine, trigger.template, frame, [delivery.body])
    return replace(delivery, body=body, file_name=name, event_type=SHIPMENT_FILE)


async def _send(
    plugin: DeliveryPlugin, name: str, delivery: Delivery, options: Any
) -> tuple[Outcome, float]:
    started = time.perf_counter()
    try:
        outcome = await plugin.deliver(delivery, options)
    except Exception as exc:
        outcome = Outcome.retry(f"plugin {name!r} raised {type(exc).__name__}: {exc}")
    finally:
        await plugin.close()
    return outcome, time.perf_counter() - started


def _print(plugin: DeliveryPlugin, delivery: Delivery, outcome: Outcome, seconds: float) -> None:
    """The plugin's own account of the attempt (`test_summary`), else request and response."""
    out = sys.stdout
    summarize = getattr(plugin, "test_summary", None)
    summary = summarize(outcome) if summarize is not None else None
    if summary is not None:
        out.write(summary + f"\nlatency  {seconds * 1000:.1f} ms\n")
        return
    out.write("== request\n")
    _write_fields(out, outcome.request)
    if delivery.subject is not None:
        out.write(f"subject: {delivery.subject}\n")
    out.write("\n" + delivery.body.decode("utf-8", "replace").rstrip("\n") + "\n\n")
    out.write("== response\n")
    _write_fields(out, outcome.response)
    out.write(f"latency: {seconds * 1000:.1f} ms\n")
    verdict = {
        "ok": "delivered",
        "retry": "failed (would be retried)",
        "fail": "failed permanently (would be dead)",
    }[str(outcome.kind)]
    out.write(f"outcome: {verdict}" + (f": {outcome.error}" if outcome.error else "") + "\n")


def _write_fields(out: TextIO, fields: Mapping[str, Any] | None) -> None:
    """One ``key: value`` line each; headers one per line below their key, as sent."""
    for key, value in (fields or {}).items():
        if key == "headers" and isinstance(value, Mapping):
            out.write("headers:\n")
            for name, header in value.items():
                out.write(f"  {name}: {header}\n")
        else:
            out.write(f"{key}: {_text(value)}\n")


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return jsoncodec.dumps_any_keys(value).decode()
    return str(value)
