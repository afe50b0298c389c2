"""The named items of a configuration: `[[customer]]`, `[[template]]`, `[[trigger]]`,
`[[lookup]]`, `[[sla]]`, each read from one `Table` into its frozen value (None when it is
unusable).

What one item can check about itself is checked here; references between items (a trigger's
customer, template and delivery) and uniqueness of names are checked by `postbackd.config.load`,
which sees the whole directory.

Event names in a trigger: a canonical type, an alias or a glob (``order.*``) is accepted; any
other name written ``namespace.name`` is accepted with a warning (a plugin source may emit it);
anything else is an error with the nearest known name as a hint.

Event names in an `[[sla]]` rule are stricter: a rule waits for exact types, so a glob is an
error, and so is a custom name close to a known one (a typo in `expect` would make every
order look late); `emit` must be a known type, whose sample templates are checked against.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, cast

from postbackd.batching import DEFAULT_FILE_NAME, BatchWindow, check_file_name, parse_batch
from postbackd.config.bounded_read import TEMPLATE_FILE_LIMIT, NotReadable, read_regular_text
from postbackd.config.model import (
    DEFAULT_RETRY_SCHEDULE,
    Customer,
    Location,
    Lookup,
    SlaRule,
    TemplateConfig,
    Trigger,
)
from postbackd.config.reader import kind_of
from postbackd.config.report import did_you_mean
from postbackd.config.table import Table
from postbackd.events import ALIASES, CANONICAL_TYPES, SYSTEM_TYPES, canonical_type
from postbackd.redaction import Redactor
from postbackd.units import parse_duration

CUSTOMER_ID = re.compile(r"[A-Za-z0-9_.-]+")
CUSTOMER_KEYS = ("id", "name")
TEMPLATE_KEYS = ("name", "format", "body", "body_file", "subject", "header", "footer")
TEMPLATE_FORMATS = ("json", "xml", "text", "html", "csv")
TRIGGER_KEYS = (
    "name",
    "customer",
    "events",
    "status",
    "template",
    "delivery",
    "retry",
    "retry_schedule",
    "ordered",
    "supersede",
    "options",
    "batch",
    "batch_file",
)
TRIGGER_STATUSES = ("active", "inactive")
LOOKUP_KEYS = ("name", "key", "customer", "values")
SLA_KEYS = ("name", "customer", "after", "expect", "within", "emit")
BUILTIN_PREFIX = "builtin:"
_GLOB_CHARS = "*?["
_EVENT_NAMES = (*CANONICAL_TYPES, *SYSTEM_TYPES, *ALIASES)
_KNOWN_TYPES = (*CANONICAL_TYPES, *SYSTEM_TYPES)


def build_customer(table: Table) -> Customer | None:
    table.check_keys(CUSTOMER_KEYS)
    customer_id = table.string("id", required=True)
    name = table.string("name")
    if customer_id is None:
        return None
    if not CUSTOMER_ID.fullmatch(customer_id):
        table.error(f"{table.shown('id')} may hold only letters, digits, '_', '.' and '-'", "id")
        return None
    return Customer(id=customer_id, name=name or customer_id, location=table.location)


def build_template(table: Table) -> TemplateConfig | None:
    table.check_keys(TEMPLATE_KEYS)
    name = table.string("name", required=True)
    template_format = (
        table.choice("format", TEMPLATE_FORMATS, "") if table.require("format") else ""
    )
    subject = table.string("subject")
    header = table.string("header")
    footer = table.string("footer")
    body, body_location = _template_body(table)
    if name is not None and name.startswith(BUILTIN_PREFIX):
        table.error(f'"{BUILTIN_PREFIX}" is reserved for built-in templates; rename it', "name")
        return None
    if name is None or not template_format or body is None:
        return None
    return TemplateConfig(
        name=name,
        format=cast(Any, template_format),
        body=body,
        location=table.location,
        subject=subject,
        body_location=body_location,
        header=header,
        footer=footer,
    )


def _template_body(table: Table) -> tuple[str | None, Location | None]:
    has_body, has_file = "body" in table.raw, "body_file" in table.raw
    if has_body and has_file:
        table.error("set body or body_file, not both", "body_file")
        return None, None
    if not has_body and not has_file:
        table.error("missing the body: set body = '''...''' or body_file = \"path\"")
        return None, None
    if has_body:
        return table.string("body"), None
    path = table.path_value("body_file")
    if path is None:
        return None, None
    try:
        return read_regular_text(path, TEMPLATE_FILE_LIMIT), Location(path, 1)
    except UnicodeDecodeError:
        table.error(f"{path} is not UTF-8 text", "body_file")
    except NotReadable as exc:
        table.error(str(exc), "body_file")
    except OSError as exc:
        table.error(f"cannot read {path}: {exc.strerror or exc}", "body_file")
    return None, None


def build_trigger(table: Table) -> Trigger | None:
    table.check_keys(TRIGGER_KEYS)
    name = table.string("name", required=True)
    customer = table.string("customer", required=True)
    events = _events(table)
    template = table.string("template", required=True)
    delivery = table.string("delivery", required=True)
    status = table.choice("status", TRIGGER_STATUSES, "active")
    retry = table.boolean("retry", True)
    schedule = _retry_schedule(table)
    ordered = table.boolean("ordered", False)
    supersede = table.boolean("supersede", False)
    if supersede and not ordered:
        table.error(
            "supersede = true needs ordered = true: only an ordered queue has an older status "
            "to replace",
            "supersede",
        )
    options = table.table("options")
    batch = _batch(table)
    batch_file = table.string("batch_file")
    if batch_file is not None:
        problem = check_file_name(batch_file, name or "trigger", customer or "customer")
        if problem:
            table.error(problem, "batch_file")
            batch_file = None
        elif batch is None:
            table.error('batch_file needs batch (e.g. batch = "1h")', "batch_file")
    if batch is not None and ordered:
        table.error(
            "a batching trigger cannot be ordered: its deliveries go out together, in one file",
            "ordered",
        )
    if None in (name, customer, events, template, delivery, schedule):
        return None
    return Trigger(
        name=cast(str, name),
        customer=cast(str, customer),
        events=cast(tuple[str, ...], events),
        template=cast(str, template),
        delivery=cast(str, delivery),
        location=table.location,
        status=cast(Any, status),
        retry=retry,
        retry_schedule=cast(tuple[float, ...], schedule),
        ordered=ordered,
        supersede=supersede,
        options=options or {},
        batch=batch,
        batch_file=batch_file or DEFAULT_FILE_NAME,
        redactor=Redactor.of(table.secret_values()),
    )


def _batch(table: Table) -> BatchWindow | None:
    text = table.string("batch")
    if text is None:
        return None
    try:
        return parse_batch(text)
    except ValueError as exc:
        table.error(str(exc), "batch")
        return None


def _retry_schedule(table: Table) -> tuple[float, ...] | None:
    if "retry_schedule" not in table.data:
        return DEFAULT_RETRY_SCHEDULE
    steps = table.typed("retry_schedule", list, 'an array of durations like ["5s", "5m"]', None)
    if steps is None:
        return None
    if not steps:
        table.error("empty: list at least one delay, or set retry = false", "retry_schedule")
        return None
    delays: list[float] = []
    for index, step in enumerate(steps):
        try:
            if not isinstance(step, str | int | float):
                raise ValueError(f'expected a duration like "5m", got {kind_of(step)}')
            delays.append(parse_duration(step))
        except ValueError as exc:
            table.error(str(exc), "retry_schedule", index)
    return tuple(delays) if len(delays) == len(steps) else None


def _events(table: Table) -> tuple[str, ...] | None:
    names = table.strings("events", required=True)
    if names is None:
        return None
    if not names:
        table.error('empty: name at least one event type, e.g. ["order.shipped"]', "events")
        return None
    events = [_event(table, index, name) for index, name in enumerate(names)]
    if None in events:
        return None
    return tuple(cast(list[str], events))


def _event(table: Table, index: int, name: str) -> str | None:
    """The stored form of one event name, reporting it when it is odd; None when it is wrong."""
    stripped = name.strip()
    if not stripped:
        table.error("empty event name", "events", index)
        return None
    canonical = canonical_type(stripped)
    if canonical in _KNOWN_TYPES:
        return canonical
    if any(ch in stripped for ch in _GLOB_CHARS):
        if not any(fnmatch.fnmatchcase(known, stripped) for known in _KNOWN_TYPES):
            table.warning(f'no known source emits events matching "{stripped}"', "events", index)
        return stripped
    hint = did_you_mean(stripped.casefold(), _EVENT_NAMES)
    if "." in stripped and not any(ch.isspace() for ch in stripped):
        table.warning(
            f'no known source emits "{stripped}"{hint}; it is routed only if a plugin or a '
            "client sends that type",
            "events",
            index,
        )
        return stripped
    table.error(
        f'unknown event type "{stripped}"{hint}: use a type like "order.shipped", an alias '
        'like "Order shipped", a glob like "order.*", or "namespace.name" for a custom type',
        "events",
        index,
    )
    return None


def build_lookup(table: Table) -> Lookup | None:
    table.check_keys(LOOKUP_KEYS)
    name = table.string("name", required=True)
    key = table.string("key", required=True)
    customer = table.string("customer")
    values = table.table("values") if table.require("values") else None
    good = values is not None
    for value_key, value in (values or {}).items():
        if not isinstance(value, str):
            table.error(f"expected a string, got {kind_of(value)}", "values", value_key)
            good = False
    if name is None or key is None or not good:
        return None
    return Lookup(
        name=name,
        key=key,
        values=dict(values or {}),
        location=table.location,
        customer=customer,
    )


def build_sla(table: Table) -> SlaRule | None:
    """An ``[[sla]]`` rule (see `SlaRule`); its customer reference is checked by the loader."""
    table.check_keys(SLA_KEYS)
    name = table.string("name", required=True)
    customer = table.string("customer")
    after = _sla_event(table, "after")
    expect = _sla_expect(table)
    within = _sla_within(table)
    emit = table.string("emit", required=True)
    if emit is not None:
        canonical = canonical_type(emit.strip())
        if canonical not in CANONICAL_TYPES:
            hint = did_you_mean(emit.strip().casefold(), _EVENT_NAMES)
            table.error(
                f'emit = "{emit}" is not a known event type{hint}: a delay alert is one of the '
                f"catalogue's types so templates can be checked against its sample (e.g. "
                '"order.delayed")',
                "emit",
            )
            emit = None
        elif canonical == after:
            table.error(
                f'emit = "{canonical}" is the event that starts the rule: emit another type, '
                'e.g. "order.delayed"',
                "emit",
            )
            emit = None
        else:
            emit = canonical
    if after is not None and expect is not None and after in expect:
        table.error(
            f'"{after}" is both after and expected: the rule would cancel its own timer',
            "expect",
        )
        return None
    if None in (name, after, expect, within, emit):
        return None
    return SlaRule(
        name=cast(str, name),
        after=cast(str, after),
        expect=cast(tuple[str, ...], expect),
        within=cast(float, within),
        emit=cast(str, emit),
        location=table.location,
        customer=customer,
    )


def _sla_event(table: Table, key: str, index: int | None = None) -> str | None:
    """One exact event type of a rule, canonical; None (reported) when it cannot be one."""
    if index is None:
        name = table.string(key, required=True)
        at: tuple[str | int, ...] = (key,)
    else:
        name = table.data[key][index]
        at = (key, index)
    if name is None:
        return None
    stripped = name.strip()
    canonical = canonical_type(stripped)
    if canonical in CANONICAL_TYPES:
        return canonical
    hint = did_you_mean(stripped.casefold(), _EVENT_NAMES)
    if not stripped or any(ch in stripped for ch in _GLOB_CHARS):
        table.error(
            f'"{stripped}" is not an event type: a rule waits for exact types like '
            '"order.shipped" (no globs)',
            *at,
        )
        return None
    if hint or "." not in stripped or any(ch.isspace() for ch in stripped):
        table.error(
            f'unknown event type "{stripped}"{hint}: use a type like "order.shipped", an alias '
            'like "Order shipped", or "namespace.name" for a type a plugin source sends',
            *at,
        )
        return None
    table.warning(
        f'no known source emits "{stripped}"; the rule sees it only if a plugin or a client '
        "sends that type",
        *at,
    )
    return stripped


def _sla_expect(table: Table) -> tuple[str, ...] | None:
    names = table.strings("expect", required=True)
    if names is None:
        return None
    if not names:
        table.error(
            'empty: name the event types that end the wait, e.g. ["order.shipped"]', "expect"
        )
        return None
    found = [_sla_event(table, "expect", index) for index in range(len(names))]
    if None in found:
        return None
    return tuple(dict.fromkeys(cast(list[str], found)))


def _sla_within(table: Table) -> float | None:
    if not table.require("within"):
        return None
    value = table.data["within"]
    try:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(f'expected a duration like "48h", got {kind_of(value)}')
        seconds = parse_duration(value)
    except ValueError as exc:
        table.error(str(exc), "within")
        return None
    if seconds <= 0:
        table.error('must be longer than zero, e.g. "48h"', "within")
        return None
    return seconds
