"""The template linter behind `postbackd check` and `postbackd render`: a template rendered
against the sample events its trigger can receive, its errors and warnings merged over them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from postbackd.config.model import Customer
from postbackd.events import SYSTEM_TYPE_PREFIX, type_matches
from postbackd.samples import sample_event, sample_types
from postbackd.templates.engine import Rendered, RenderError, TemplateEngine
from postbackd.templates.shipment import FileFrame, compose_file


@dataclass(frozen=True)
class SampleRender:
    """One template rendered against one sample event: a result or an error."""

    event_type: str
    rendered: Rendered | None
    error: RenderError | None


@dataclass(frozen=True)
class TemplateFinding:
    """A problem `postbackd check` reports, merged over the sample events that showed it."""

    severity: Literal["error", "warning"]
    text: str
    samples: tuple[str, ...]
    every_sample: bool = False

    def __str__(self) -> str:
        if self.every_sample:
            return f"{self.text} (with every sample)"
        if not self.samples:
            return self.text
        label = "sample" if len(self.samples) == 1 else "samples"
        return f"{self.text} (with {label} {', '.join(self.samples)})"


def render_samples(
    engine: TemplateEngine,
    name: str,
    *,
    event_types: Iterable[str] | None = None,
    customer: Customer | None = None,
) -> list[SampleRender]:
    """Render `name` against each sample event whose type matches `event_types`.

    `event_types` are trigger patterns (``order.*``, aliases); None means every order sample.
    The alert samples (``postbackd.*``) are used only for patterns that name that prefix: an
    order template under ``events = ["*"]`` never sees an alert (alerts belong to the
    ``[alerts] customer`` alone), so checking it against one would only report noise.
    With a `customer`, the samples are rendered as that customer's events (its lookups).
    """
    patterns = None if event_types is None else list(event_types)
    alert_patterns = [p for p in patterns or () if p.casefold().startswith(SYSTEM_TYPE_PREFIX)]
    results: list[SampleRender] = []
    for event_type in sample_types():
        if event_type.startswith(SYSTEM_TYPE_PREFIX):
            if not any(type_matches(p, event_type) for p in alert_patterns):
                continue
        elif patterns is not None and not any(type_matches(p, event_type) for p in patterns):
            continue
        event = sample_event(event_type)
        if customer is not None:
            event = replace(event, customer=customer.id)
        try:
            results.append(SampleRender(event_type, engine.render(name, event, customer), None))
        except RenderError as exc:
            results.append(SampleRender(event_type, None, exc))
    return results


def check_template(
    engine: TemplateEngine,
    name: str,
    *,
    event_types: Iterable[str] | None = None,
    customer: Customer | None = None,
) -> list[TemplateFinding]:
    """Errors and warnings of `name` over the matching samples, errors first.

    A syntax error is reported even when no sample matches.
    """
    try:
        engine.compiled(name)
    except RenderError as exc:
        return [TemplateFinding("error", str(exc), ())]
    found: dict[tuple[str, str], list[str]] = {}
    results = render_samples(engine, name, event_types=event_types, customer=customer)
    for result in results:
        problems: list[tuple[str, str]] = []
        if result.error is not None:
            problems.append(("error", str(result.error)))
        if result.rendered is not None:
            problems.extend(("warning", str(w)) for w in result.rendered.warnings)
        for problem in problems:
            found.setdefault(problem, []).append(result.event_type)
    frame_error = _frame_error(engine, name, results, customer)
    if frame_error is not None:
        found.setdefault(("error", frame_error), []).extend(r.event_type for r in results)
    ordered = sorted(found.items(), key=lambda item: item[0][0] != "error")
    return [
        TemplateFinding(
            "error" if severity == "error" else "warning",
            text,
            tuple(samples),
            every_sample=len(results) > 1 and len(samples) == len(results),
        )
        for (severity, text), samples in ordered
    ]


def _frame_error(
    engine: TemplateEngine, name: str, results: list[SampleRender], customer: Customer | None
) -> str | None:
    """Why the samples framed by the template's header and footer (a shipment file) would not
    make a valid file; None when they would, or when it has neither."""
    config = engine.template(name)
    if config.header is None and config.footer is None:
        return None
    rows = [result.rendered.body for result in results if result.rendered is not None]
    frame = FileFrame(
        trigger="sample",
        customer=customer.id if customer else "sample",
        customer_name=customer.name if customer else "Sample",
        file_name="sample-file",
        window_start=0.0,
        window_end=3600.0,
        rows=len(rows),
    )
    try:
        compose_file(engine, name, frame, rows)
    except RenderError as exc:
        return f"shipment file (header/footer around the samples): {exc}"
    return None
