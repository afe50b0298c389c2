"""`postbackd customer add ID ...`: write a new customer file into the configuration directory.

The file (``customers/ID.toml``) holds the customer, one trigger named ``ID-postbacks`` and,
unless ``--template`` names one, a starting template ``ID-default`` to edit: JSON for a
webhook, text with a subject for email. The whole directory is validated with the new file in
place *before* anything is written; on any error nothing is written and the errors are shown.
The file appears atomically (a running daemon never reads half of it) and an existing file is
never overwritten.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from postbackd.commands.common import add_conf_dir_option, resolve_conf_dir
from postbackd.config import CUSTOMER_ID, ConfigError, load_config_with_warnings

WEBHOOK_TEMPLATE = """\
{
  "event": "{{ event.type }}",
  "eventId": "{{ event.id }}",
  "orderId": "{{ orderId }}",
  "orderReferenceId": "{{ orderReferenceId }}",
  "status": "{{ fulfillmentStatus }}",
  "time": "{{ event.time }}"
}
"""
EMAIL_SUBJECT = "Order {{ orderReferenceId }}: {{ event.type }}"
EMAIL_TEMPLATE = """\
Hello,

order {{ orderReferenceId }} (id {{ orderId }}) has a new status: {{ event.type }}.

Status: {{ fulfillmentStatus }}
Time:   {{ event.time }}
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("customer", help="manage customers in the configuration")
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", required=True)
    add = verbs.add_parser(
        "add",
        help="write customers/ID.toml with the customer, a trigger and a starting template",
        description="Write customers/ID.toml: the customer, one trigger (ID-postbacks) and, "
        "without --template, a template (ID-default) to edit. The configuration is validated "
        "with the new file first; nothing is written when it would be invalid.",
    )
    add.add_argument("id", metavar="ID", help="customer id (letters, digits, '_', '.', '-')")
    add.add_argument("--name", required=True, help="the customer's display name")
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--webhook", metavar="URL", help="POST postbacks to this URL")
    target.add_argument("--email", metavar="ADDR", help="email postbacks to this address")
    add.add_argument(
        "--events",
        required=True,
        help='comma-separated event types, e.g. "order.shipped,order.delivered" or "order.*"',
    )
    add.add_argument(
        "--template", help="use this template (configured or builtin:...) instead of a new one"
    )
    add_conf_dir_option(add)
    add.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    problem = _usage_problem(args)
    if problem:
        print(f"postbackd customer add: {problem}", file=sys.stderr)
        return 2
    conf_dir = resolve_conf_dir(args.conf_dir)
    if not conf_dir.is_dir():
        print(f"{conf_dir}: configuration directory not found (pass -c DIR)", file=sys.stderr)
        return 1
    path = conf_dir / "customers" / f"{args.id}.toml"
    if path.exists():
        print(f"{path}: already exists; edit it, or remove it first", file=sys.stderr)
        return 1
    text = customer_file(args)
    try:
        result = load_config_with_warnings(conf_dir, pending={path: text}, expand_secrets=False)
    except ConfigError as exc:
        print(f"{path}: not written, the configuration would be invalid:", file=sys.stderr)
        for diagnostic in exc.diagnostics:
            print(f"  {diagnostic}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        _write_new(path, text)
    except FileExistsError:
        print(f"{path}: already exists; edit it, or remove it first", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{path}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _usage_problem(args: argparse.Namespace) -> str | None:
    if not CUSTOMER_ID.fullmatch(args.id) or args.id.startswith("."):
        return f"customer id {args.id!r} may hold only letters, digits, '_', '.' and '-'"
    if not args.name.strip():
        return "--name must not be empty"
    if args.webhook is not None:
        parts = urlsplit(args.webhook)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"--webhook {args.webhook!r} is not an http:// or https:// URL"
    if args.email is not None and "@" not in args.email:
        return f"--email {args.email!r} is not an email address"
    if not _events(args.events):
        return '--events names no event type; e.g. --events "order.shipped"'
    return None


def _events(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def customer_file(args: argparse.Namespace) -> str:
    """The TOML text of the new customer file, laid out as a person would write it."""
    customer_id: str = args.id
    webhook = args.webhook is not None
    template = args.template or f"{customer_id}-default"
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"# Customer {customer_id}, written by `postbackd customer add` on {written}.\n"
        "# Edit freely: `postbackd check` validates, a running daemon reloads it by itself.\n",
        _table("[[customer]]", {"id": customer_id, "name": args.name.strip()}),
    ]
    if args.template is None:
        fields: dict[str, Any] = {"name": template, "format": "json" if webhook else "text"}
        if not webhook:
            fields["subject"] = EMAIL_SUBJECT
        body = WEBHOOK_TEMPLATE if webhook else EMAIL_TEMPLATE
        parts.append(_table("[[template]]", fields) + f"body = '''\n{body}'''\n")
    trigger = {
        "name": f"{customer_id}-postbacks",
        "customer": customer_id,
        "events": _events(args.events),
        "template": template,
        "delivery": "webhook" if webhook else "email",
    }
    options = {"url": args.webhook} if webhook else {"to": args.email}
    parts.append(_table("[[trigger]]", trigger) + _table("[trigger.options]", options))
    return "\n".join(parts)


def _table(header: str, values: dict[str, Any]) -> str:
    return f"{header}\n{tomli_w.dumps(values)}"


def _write_new(path: Path, text: str) -> None:
    """Create `path` with `text` atomically; FileExistsError when it appeared meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("x", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
