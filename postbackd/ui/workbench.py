"""The template workbench: render a template for a sample or a pasted event, and send a test.

Render uses the running configuration's engine; when the template source was edited in the
page, a scratch engine with the same lookups and plugin functions renders the draft (nothing
is saved). "Send test" is `postbackd test` in the daemon: the trigger's saved template,
rendered and handed once to the daemon's own delivery plugin instance, now, without touching
the spool; the page shows the request (secrets masked) and the response.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, replace

from aiohttp import web

from postbackd.events import Event, EventRejected, decode_json, parse_event
from postbackd.plugin import Delivery, Outcome
from postbackd.redaction import Redactor, masked_outcome
from postbackd.samples import load_sample, sample_types
from postbackd.templates import Rendered, RenderError, TemplateEngine, TemplateWarning
from postbackd.ui import pretty
from postbackd.ui.requests_pages import LogEntry, log_entry
from postbackd.ui.visit import UiBackend, Visit

SEND_TIMEOUT = 60.0
VERDICTS = {
    "ok": "delivered",
    "retry": "failed (the daemon would retry it)",
    "fail": "failed permanently (the daemon would mark it dead)",
}


@dataclass(frozen=True)
class BenchInput:
    """The workbench form. `source`/`subject` are the edited template, when it was edited."""

    template: str = ""
    source: str | None = None
    subject: str | None = None
    sample: str = "order.shipped"
    event: str = ""
    customer: str = ""
    trigger: str = ""


@dataclass(frozen=True)
class RenderResult:
    body: str | None = None
    raw: str | None = None
    subject: str | None = None
    content_type: str | None = None
    warnings: tuple[TemplateWarning, ...] = ()
    error: str | None = None
    error_line: int | None = None
    error_column: int | None = None
    error_part: str = "body"
    edited: bool = False


@dataclass(frozen=True)
class SendResult:
    trigger: str
    delivery_id: str
    ok: bool
    verdict: str
    error: str | None
    request: LogEntry | None
    response: LogEntry | None
    body: str
    subject: str | None
    latency_ms: float


class Workbench:
    def __init__(self, backend: UiBackend) -> None:
        self.backend = backend

    async def page(self, visit: Visit) -> web.Response:
        """GET: the form; with ?template=… it renders too (a link can show a render)."""
        query = visit.request.query
        values = BenchInput(
            template=query.get("template", ""),
            sample=query.get("sample", BenchInput.sample),
            customer=query.get("customer", ""),
            trigger=query.get("trigger", ""),
        )
        result = await self._render(visit, values) if values.template else None
        return self._show(visit, values, result=result)

    async def render(self, visit: Visit) -> web.Response:
        values = self._read_form(visit)
        result = await self._render(visit, values)
        return self._show(visit, values, result=result)

    async def send(self, visit: Visit) -> web.Response:
        values = self._read_form(visit)
        trigger = visit.generation.config.triggers.get(values.trigger)
        if trigger is None:
            return self._show(visit, values, send_error="choose a trigger to send a test for")
        try:
            event = self._event(values, default_customer=trigger.customer)
        except ValueError as exc:
            return self._show(visit, values, send_error=str(exc))
        outcome = await asyncio.to_thread(visit.generation.router.render, trigger, event)
        if outcome.rendered is None:
            return self._show(visit, values, send_error=f"render error: {outcome.error}")
        config = visit.generation.config
        sent = await self._deliver(
            trigger.name,
            trigger.delivery,
            trigger.options,
            event,
            outcome.rendered,
            trigger.redactor | config.shared_redactor,
        )
        return self._show(visit, values, sent=sent)

    # ------------------------------------------------------------------ rendering

    def _read_form(self, visit: Visit) -> BenchInput:
        form = visit.form
        template = form.get("template", "")
        loaded = form.get("loaded", "")
        edited = loaded == template and "source" in form
        return BenchInput(
            template=template,
            source=_lines(form["source"]) if edited else None,
            subject=_lines(form["subject"]) if edited and "subject" in form else None,
            sample=form.get("sample", BenchInput.sample),
            event=form.get("event", ""),
            customer=form.get("customer", ""),
            trigger=form.get("trigger", ""),
        )

    async def _render(self, visit: Visit, values: BenchInput) -> RenderResult:
        engine = visit.generation.router.engine
        if not engine.has(values.template):
            return RenderResult(error=f"no template named {values.template!r}")
        try:
            event = self._event(values, default_customer=None)
        except ValueError as exc:
            return RenderResult(error=str(exc))
        config = engine.template(values.template)
        name, edited = values.template, False
        if values.source is not None and (
            values.source != config.body or (values.subject or None) != config.subject
        ):
            engine, name, edited = self._draft_engine(visit, values), _draft_name(name), True
        customer = visit.generation.config.customers.get(event.customer)
        try:
            rendered: Rendered = await asyncio.to_thread(engine.render, name, event, customer)
        except RenderError as exc:
            return RenderResult(
                error=str(exc),
                error_line=exc.line,
                error_column=exc.column,
                error_part=exc.part,
                edited=edited,
            )
        raw = rendered.body.decode("utf-8", "replace")
        return RenderResult(
            body=pretty.pretty_body(raw, rendered.format),
            raw=raw,
            subject=rendered.subject,
            content_type=rendered.content_type,
            warnings=rendered.warnings,
            edited=edited,
        )

    def _draft_engine(self, visit: Visit, values: BenchInput) -> TemplateEngine:
        config = visit.generation.config
        saved = visit.generation.router.engine.template(values.template)
        draft = replace(
            saved,
            name=_draft_name(values.template),
            body=values.source or "",
            subject=values.subject if saved.subject is not None else None,
        )
        globals_, filters = self.backend.plugins.host.template_functions()
        return TemplateEngine(
            {draft.name: draft}, config.lookups, globals_=globals_, filters=filters
        )

    def _event(self, values: BenchInput, default_customer: str | None) -> Event:
        """The pasted event, else the sample (as `default_customer`'s, when given)."""
        if values.event.strip():
            try:
                raw = decode_json(values.event.encode("utf-8", "replace"))
            except EventRejected as exc:
                raise ValueError(f"pasted event: {exc}") from None
            where = "pasted event"
        else:
            try:
                raw = load_sample(values.sample)
            except KeyError as exc:
                raise ValueError(str(exc)) from None
            where = f"sample {values.sample}"
            if default_customer:
                raw["customer"] = default_customer
        if values.customer and isinstance(raw, dict):
            raw = {**raw, "customer": values.customer}
        try:
            return parse_event(raw)
        except EventRejected as exc:
            raise ValueError(f"{where}: {exc}") from None

    # ------------------------------------------------------------------ sending

    async def _deliver(
        self,
        trigger: str,
        plugin_name: str,
        options: object,
        event: Event,
        rendered: Rendered,
        redactor: Redactor,
    ) -> SendResult:
        delivery = Delivery(
            id=str(uuid.uuid4()),
            event_id=event.id,
            event_type=event.type,
            customer=event.customer,
            trigger=trigger,
            attempt=1,
            format=rendered.format,
            content_type=rendered.content_type,
            subject=rendered.subject,
            body=rendered.body,
            order_id=event.order_id,
        )
        plugin = self.backend.plugins.deliveries.get(plugin_name)
        started = time.perf_counter()
        if plugin is None:
            outcome = Outcome.fail(f"no delivery plugin named {plugin_name!r} is loaded")
        else:
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    outcome = await plugin.deliver(delivery, options)
            except TimeoutError:
                outcome = Outcome.retry(f"no answer within {SEND_TIMEOUT:.0f} s")
            except Exception as exc:
                outcome = Outcome.retry(
                    f"plugin {plugin_name!r} raised {type(exc).__name__}: {exc}"
                )
        outcome = masked_outcome(outcome, redactor)
        return SendResult(
            trigger=trigger,
            delivery_id=delivery.id,
            ok=outcome.succeeded,
            verdict=VERDICTS[str(outcome.kind)],
            error=outcome.error,
            request=log_entry(outcome.request),
            response=log_entry(outcome.response),
            body=pretty.pretty_body(rendered.body, rendered.format),
            subject=rendered.subject,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    # ------------------------------------------------------------------ page

    def _show(
        self,
        visit: Visit,
        values: BenchInput,
        *,
        result: RenderResult | None = None,
        sent: SendResult | None = None,
        send_error: str | None = None,
    ) -> web.Response:
        generation = visit.generation
        engine = generation.router.engine
        names = engine.names()
        triggers = sorted(generation.config.triggers)
        template = values.template if engine.has(values.template) else ""
        if not template:
            template = next(iter(names), "")
        saved = engine.template(template) if template else None
        source = values.source if values.source is not None else (saved.body if saved else "")
        subject = values.subject if values.subject is not None else (saved and saved.subject)
        trigger = values.trigger or next(
            (t for t in triggers if generation.config.triggers[t].template == template),
            next(iter(triggers), ""),
        )
        return visit.page(
            "workbench.html",
            status=422 if (result and result.error) or send_error else 200,
            values=replace(values, template=template, trigger=trigger),
            templates=names,
            template_format=saved.format if saved else "",
            source=source,
            source_lines=source.split("\n"),
            subject=subject,
            samples=sample_types(),
            customers=sorted(generation.config.customers),
            triggers=triggers,
            result=result,
            marked=_marked_lines(result),
            sent=sent,
            send_error=send_error,
        )


def _marked_lines(result: RenderResult | None) -> dict[int, str]:
    """Template lines to highlight: the error's (``error``) and each warning's (``warning``)."""
    if result is None:
        return {}
    marked = {w.line: "warning" for w in result.warnings if w.line and w.part == "body"}
    if result.error_line and result.error_part == "body":
        marked[result.error_line] = "error"
    return marked


def _draft_name(name: str) -> str:
    return f"{name} (edited)"


def _lines(text: str) -> str:
    """Form text with the browser's CRLF line ends back to LF."""
    return text.replace("\r\n", "\n")
