"""The template engine: an event and a template in, a payload that is valid for its format out.

Templates run in a Jinja2 sandbox (they read the event, never touch the host) with
format-aware escaping (`escape`), so no value in an event can break the JSON or XML
around it. A json/xml body is checked after rendering; anything wrong is a `RenderError` that
names the template and line, and an undefined variable is a `TemplateWarning`.

The engine is built from one configuration and never changes: each template is compiled on
first use and the compiled form is reused; a reload builds a new engine, which takes the
templates whose source did not change from the `CompiledCache` it is given.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from jinja2 import Template
from jinja2.exceptions import UndefinedError
from jinja2.sandbox import SecurityError

from postbackd.changes import compute_changes
from postbackd.config import Customer, Lookup, TemplateConfig, TemplateFormat, Trigger
from postbackd.events import Event
from postbackd.templates.builtin import BUILTIN_TEMPLATES
from postbackd.templates.compile import (
    CompiledCache,
    source_key,
    template_filename,
    tracked_variant,
)
from postbackd.templates.errors import (
    RenderError,
    TemplateFault,
    TemplatePart,
    TemplateWarning,
    traceback_template_line,
)
from postbackd.templates.escape import Safe, content_type_for, plain_text
from postbackd.templates.output import Invalid, check_body, run
from postbackd.templates.runtime import CURRENT_SINK, WarningSink

__all__ = [
    "CompiledTemplate",
    "RenderError",
    "Rendered",
    "Safe",
    "TemplateEngine",
    "TemplateWarning",
    "content_type_for",
]

_EMPTY: Mapping[str, Callable[..., Any]] = MappingProxyType({})
_LINE_BREAK = re.compile(r"\r\n|[\r\n]")
_MENTIONS_CHANGES = re.compile(r"\bchanges\b")


LOOKUP_FUNCTIONS_KEPT = 100_000  # per engine; a generation renders for its own customers


@dataclass(frozen=True)
class Rendered:
    """A rendered payload, fixed at routing time: what is stored, sent, retried and logged."""

    body: bytes
    subject: str | None
    format: TemplateFormat
    content_type: str
    warnings: tuple[TemplateWarning, ...] = ()


@dataclass(frozen=True)
class CompiledTemplate:
    config: TemplateConfig
    body: Template
    subject: Template | None


class TemplateEngine:
    """Renders the configured templates and the built-in ones (``builtin:...``)."""

    def __init__(
        self,
        templates: Mapping[str, TemplateConfig],
        lookups: Mapping[str, Lookup],
        *,
        globals_: Mapping[str, Callable[..., Any]] = _EMPTY,
        filters: Mapping[str, Callable[..., Any]] = _EMPTY,
        cache: CompiledCache | None = None,
    ) -> None:
        """`cache`: compiled templates shared with the engines of earlier generations."""
        self._configs: dict[str, TemplateConfig] = {**templates, **BUILTIN_TEMPLATES}
        self._lookups = tuple(lookups.values())
        self._lookup_functions: dict[str, _LookupFunction] = {}
        self._cache = CompiledCache() if cache is None else cache
        self._cache.use(globals_, filters)
        self._cache.keep(source_key(config) for config in self._configs.values())
        self._compiled: dict[str, CompiledTemplate | RenderError] = {}
        self._uses_changes: dict[str, bool] = {}
        self._lock = threading.Lock()

    def has(self, name: str) -> bool:
        return name in self._configs

    def names(self) -> list[str]:
        """Configured templates, then the built-ins, each group sorted."""
        return sorted(self._configs, key=lambda name: (name in BUILTIN_TEMPLATES, name))

    def content_type_for(self, format: TemplateFormat) -> str:
        return content_type_for(format)

    def template(self, name: str) -> TemplateConfig:
        """The configuration of template `name`; RenderError when there is none."""
        config = self._configs.get(name)
        if config is None:
            builtins = ", ".join(sorted(BUILTIN_TEMPLATES))
            raise RenderError(
                f"unknown template {name!r}: define it in a [[template]] table "
                f"or use a built-in one ({builtins})"
            )
        return config

    def uses_changes(self, name: str) -> bool:
        """Whether template `name` reads ``changes`` (so its event needs the order's previous one).

        A textual test of the source, cached: it runs for every routed event, and a false
        positive (the word in a comment) costs only one indexed spool read.
        """
        found = self._uses_changes.get(name)
        if found is None:
            config = self._configs.get(name)
            found = config is not None and any(
                _MENTIONS_CHANGES.search(text) for text in (config.body, config.subject or "")
            )
            self._uses_changes[name] = found
        return found

    def compiled(self, name: str) -> CompiledTemplate:
        """The compiled template, compiled on first use; a syntax error is kept and re-raised."""
        config = self.template(name)
        with self._lock:
            compiled = self._compiled.get(name)
            if compiled is None:
                compiled = self._compile(config)
                self._compiled[name] = compiled
        if isinstance(compiled, RenderError):
            raise compiled.with_traceback(None)
        return compiled

    def render(
        self,
        name: str,
        event: Event,
        customer: Customer | None,
        changes: Mapping[str, Any] | None = None,
    ) -> Rendered:
        """Render template `name` for `event`; raises RenderError (never anything else).

        `changes` is the ``changes`` variable (`postbackd.changes`), worked out by the router
        from the order's previous event; without it, a template that reads it sees the event
        as its order's first (as `postbackd render` and `check` show it).
        """
        compiled = self.compiled(name)
        config = compiled.config
        context = self._context(event, customer)
        if changes is None and self.uses_changes(name):
            changes = compute_changes(None, event.to_dict()).as_context()
        if changes is not None:
            context["changes"] = changes
        sink = WarningSink(name)
        token = CURRENT_SINK.set(sink)
        try:
            text = self._run(compiled.body, context, config.format, name, "body")
            subject = None
            if compiled.subject is not None:
                sink.part = "subject"
                line = self._run(compiled.subject, context, "text", name, "subject")
                subject = _LINE_BREAK.sub(" ", line).strip()
        finally:
            CURRENT_SINK.reset(token)
        return Rendered(
            body=_encode(text, name),
            subject=subject,
            format=config.format,
            content_type=content_type_for(config.format),
            warnings=sink.warnings(),
        )

    def render_option(
        self, trigger: Trigger, key: str, source: str, event: Event, customer: Customer | None
    ) -> str:
        """Render one templated trigger option (``to = "{{ shipTo.email }}"``) for `event`,
        with the context a template body has. The text is returned as rendered: judging it
        (an address, no line breaks) is the delivery plugin's `validate_options`. RenderError
        on failure.

        Compiled through the shared cache under the pseudo-template name
        ``TRIGGER options.KEY``, so errors say which trigger and option failed.
        """
        config = TemplateConfig(
            name=f"{trigger.name} options.{key}",
            format="text",
            body=source,
            location=trigger.location,
        )
        compiled = self._cache.compiled(config)
        if isinstance(compiled, RenderError):
            raise compiled.with_traceback(None)
        body, _ = compiled
        token = CURRENT_SINK.set(WarningSink(config.name))
        try:
            return self._run(body, self._context(event, customer), "text", config.name, "body")
        finally:
            CURRENT_SINK.reset(token)

    def _compile(self, config: TemplateConfig) -> CompiledTemplate | RenderError:
        compiled = self._cache.compiled(config)
        if isinstance(compiled, RenderError):
            return compiled
        return CompiledTemplate(config, *compiled)

    def _context(self, event: Event, customer: Customer | None) -> dict[str, Any]:
        customer_id = customer.id if customer is not None else event.customer
        context = dict(event.data)
        context["event"] = event.to_dict()
        context["customer"] = {
            "id": customer_id,
            "name": customer.name if customer is not None else "",
        }
        function = self._lookup_functions.get(customer_id)
        if function is None:
            if len(self._lookup_functions) >= LOOKUP_FUNCTIONS_KEPT:
                self._lookup_functions.clear()
            function = _LookupFunction(self._lookups, customer_id)
            self._lookup_functions[customer_id] = function
        context["lookups"] = function
        return context

    def _run(
        self,
        template: Template,
        context: Mapping[str, Any],
        format: TemplateFormat,
        name: str,
        part: TemplatePart,
    ) -> str:
        try:
            output = run(template, context, track=False)
        except TemplateFault as exc:
            line = exc.line or traceback_template_line(
                exc.__traceback__, template_filename(name, part)
            )
            raise RenderError(
                exc.message, template=name, line=line, variable=exc.variable, part=part
            ) from exc
        except Exception as exc:
            line = traceback_template_line(exc.__traceback__, template_filename(name, part))
            raise RenderError(_describe(exc), template=name, line=line, part=part) from exc
        invalid = check_body(format, output.text)
        if invalid is not None:
            raise _invalid_body_error(invalid, template, context, output.text, format, name, part)
        return output.text


class _LookupFunction:
    """``lookups({"shipmentMethodUid": x}, strict=False, default="")`` for one customer.

    Tables whose key is the mapping's key are searched, the customer's own first, then the
    global ones, each in configuration order; the first table holding the value wins.
    """

    def __init__(self, tables: tuple[Lookup, ...], customer_id: str) -> None:
        self._tables = tables
        self._customer_id = customer_id
        self._by_key: dict[str, list[Lookup]] = {}  # the tables searched for a key, in order

    def __call__(self, mapping: Any, strict: bool = False, default: Any = "") -> Any:
        if not isinstance(mapping, Mapping) or len(mapping) != 1:
            raise TemplateFault(
                "lookups() takes one key and the value to look up, e.g. "
                'lookups({"shipmentMethodUid": fulfillment.shipmentMethodUid})'
            )
        ((key, value),) = mapping.items()
        key, wanted = str(key), plain_text(value)
        tables = self._by_key.get(key)
        if tables is None:
            tables = [t for t in self._tables if t.key == key and t.customer == self._customer_id]
            tables += [t for t in self._tables if t.key == key and t.customer is None]
            self._by_key[key] = tables
        for table in tables:
            found = table.values.get(wanted)
            if found is not None:
                return found
        if strict:
            if tables:
                where = f"tables: {', '.join(t.name for t in tables)}"
            else:
                where = f"no lookup table has key {key!r} for customer {self._customer_id!r}"
            raise TemplateFault(f"lookup {key}={wanted} not found ({where})")
        return default


def _invalid_body_error(
    invalid: Invalid,
    template: Template,
    context: Mapping[str, Any],
    text: str,
    format: TemplateFormat,
    name: str,
    part: TemplatePart,
) -> RenderError:
    """The error for an invalid body, with the template line that wrote the bad spot.

    Rare, so only now is the template run again, noting the line of each piece; a plugin
    function may make the second run differ, and then the line stays unknown.
    """
    line = None
    try:
        tracked = run(tracked_variant(template), context, track=True)
    except Exception:
        tracked = None
    if tracked is not None and tracked.text == text:
        line = tracked.template_line_at(invalid.line, invalid.column)
    label = format.upper()
    return RenderError(
        f"invalid {label} at line {invalid.line}, column {invalid.column}: {invalid.reason}",
        template=name,
        line=line,
        column=invalid.column,
        part=part,
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, SecurityError):
        return f"{exc} (the template sandbox only lets a template read the event)"
    if isinstance(exc, UndefinedError):
        return f"{exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _encode(text: str, name: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RenderError(
            f"the output contains U+{ord(text[exc.start]):04X} (a lone surrogate), which "
            "UTF-8 cannot encode; it came through | raw or the template text",
            template=name,
        ) from None
