"""The template engine: escaping per format, validation, lookups, warnings, sandbox, caching."""

from __future__ import annotations

import copy
import json
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import postbackd.templates.compile as templates_compile
import postbackd.templates.engine as templates_module
from postbackd.config.model import Customer, Location, Lookup, TemplateConfig, TemplateFormat
from postbackd.events import CANONICAL_TYPES, Event, parse_event
from postbackd.samples import load_sample, sample_event
from postbackd.templates.check import check_template, render_samples
from postbackd.templates.engine import (
    RenderError,
    TemplateEngine,
    TemplateWarning,
    content_type_for,
)

HERE = Location(Path("conf.d/acme.toml"), 10)
ACME = Customer("acme", "Acme Prints", HERE)
NASTY = 'He said "hi" \\ <b>&</b>\n'

# The hosted platform's "Order Shipped" example, pasted verbatim from its help page.
PLATFORM_ORDER_SHIPPED = (
    '{ "event": "Ordre sendt", "orderId": "##{{ orderId }}", "orderReferenceId": '
    '"##{{ orderReferenceId }}", "timestamp": "##{{ created }}", "status": '
    '"##{{ fulfillmentStatus }}", "trackingInfo": { {% for item in items %} {% for fulfillment '
    'in item.fulfillments %} "trackingCode": "##{{ fulfillment.trackingCode }}", "trackingUrl": '
    '"##{{ fulfillment.trackingUrl }}", "carrier": "##{{ fulfillment.carrierName }}" '
    "{% endfor %} {% endfor %} }}"
)
# Its lookups example, verbatim.
PLATFORM_LOOKUP = (
    '{% set carrier = lookups({"shipmentMethodUid": fulfillment.carrierUid}, strict=False, '
    'default="") %}"carrier": "##{{ carrier }}"'
)


def template(
    name: str, format: TemplateFormat, body: str, subject: str | None = None
) -> TemplateConfig:
    return TemplateConfig(name=name, format=format, body=body, location=HERE, subject=subject)


def engine_of(*configs: TemplateConfig, lookups: tuple[Lookup, ...] = (), **kwargs: Any):
    return TemplateEngine({c.name: c for c in configs}, {lk.name: lk for lk in lookups}, **kwargs)


def event_of(data: Mapping[str, Any], *, customer: str = "acme", type: str = "order.shipped"):
    return Event(id="evt_1", type=type, customer=customer, time="2026-11-28T10:00:00Z", data=data)


def render_one(
    format: TemplateFormat, body: str, data: Mapping[str, Any], **kwargs: Any
) -> templates_module.Rendered:
    return engine_of(template("t", format, body), **kwargs).render("t", event_of(data), None)


def shipped_with_one_fulfillment() -> Event:
    raw = load_sample("order.shipped")
    first = raw["data"]["items"][0]
    first["fulfillments"] = first["fulfillments"][:1]
    raw["data"]["items"] = [first]
    return parse_event(raw)


# ---------------------------------------------------------------- formats and escaping


@pytest.mark.parametrize(
    ("format", "expected"),
    [
        ("json", "application/json"),
        ("xml", "application/xml"),
        ("text", "text/plain; charset=utf-8"),
        ("html", "text/html; charset=utf-8"),
    ],
)
def test_content_type_follows_the_format(format: TemplateFormat, expected: str) -> None:
    body = {"json": "{}", "xml": "<a/>", "text": "x", "html": "<p>x</p>"}[format]
    rendered = render_one(format, body, {})
    assert content_type_for(format) == expected
    assert rendered.content_type == expected
    assert rendered.format == format
    assert rendered.subject is None


def test_json_value_with_quotes_backslash_newline_and_markup_reads_back_unchanged() -> None:
    rendered = render_one("json", '{"note": "{{ note }}"}', {"note": NASTY})
    assert json.loads(rendered.body) == {"note": NASTY}


def test_xml_value_reads_back_unchanged_in_element_and_attribute() -> None:
    rendered = render_one("xml", '<r note="{{ note }}">{{ note }}</r>', {"note": NASTY})
    root = ET.fromstring(rendered.body)
    assert root.text == NASTY
    assert root.get("note") == NASTY


def test_xml_writes_cr_as_a_character_reference_so_it_round_trips() -> None:
    value = "\r\n line\r"
    rendered = render_one("xml", "<r>{{ v }}</r>", {"v": value})
    assert b"&#13;" in rendered.body
    assert ET.fromstring(rendered.body).text == value


def test_html_is_xml_escaped_and_keeps_newlines_readable() -> None:
    rendered = render_one("html", "<p>{{ v }}</p>", {"v": "<script>&'\"\nx\r"})
    assert rendered.body == b"<p>&lt;script&gt;&amp;&#39;&quot;\nx&#13;</p>"


def test_text_is_not_escaped() -> None:
    assert render_one("text", "{{ v }}", {"v": NASTY}).body == NASTY.encode()


@pytest.mark.parametrize("format", ["xml", "html"])
def test_character_xml_cannot_carry_is_an_error_naming_the_variable(format: TemplateFormat):
    body = "<r>\n  <a>{{ order.note }}</a>\n</r>"
    with pytest.raises(RenderError) as caught:
        render_one(format, body, {"order": {"note": "bell \x07"}})
    error = caught.value
    assert error.variable == "order.note"
    assert error.line == 2
    assert "U+0007" in str(error)
    assert str(error).startswith("template t line 2: the value of {{ order.note }}")


def test_values_become_text_the_same_way_in_every_format() -> None:
    body = '{"n": {{ n }}, "f": {{ f }}, "b": {{ b }}, "none": "{{ nothing }}", "l": "{{ l }}"}'
    data = {"n": 5, "f": 1.5, "b": True, "nothing": None, "l": [1, "a"]}
    assert json.loads(render_one("json", body, data).body) == {
        "n": 5,
        "f": 1.5,
        "b": True,
        "none": "",
        "l": '[1, "a"]',
    }
    assert render_one("text", "{{ b }} {{ nothing }}|", data).body == b"true |"


def test_tojson_inserts_a_json_value_in_a_json_template() -> None:
    event = sample_event("order.shipped")
    rendered = engine_of(template("t", "json", '{"items": {{ items | tojson }}}')).render(
        "t", event, None
    )
    assert json.loads(rendered.body) == {"items": event.data["items"]}


def test_tojson_in_xml_is_escaped_json_text() -> None:
    data = {"v": {"a": "<&>", "b": [1, 2]}}
    rendered = render_one("xml", "<r>{{ v | tojson }}</r>", data)
    assert json.loads(ET.fromstring(rendered.body).text or "") == data["v"]


def test_raw_opts_out_of_escaping_and_is_not_escaped_twice() -> None:
    rendered = render_one(
        "xml", "<r>{{ v | raw }}<b>{{ w | safe }}</b></r>", {"v": "<i>x</i> &amp;", "w": "&lt;"}
    )
    assert rendered.body == b"<r><i>x</i> &amp;<b>&lt;</b></r>"
    json_raw = render_one("json", '{"a": {{ frag | raw }}}', {"frag": '{"x": "\\n"}'})
    assert json.loads(json_raw.body) == {"a": {"x": "\n"}}


def test_changing_a_safe_value_makes_it_plain_text_again() -> None:
    rendered = render_one("json", '{"a": "{{ v | raw | upper }}"}', {"v": 'a"b'})
    assert json.loads(rendered.body) == {"a": 'A"B'}


def test_escape_filter_escapes_for_the_templates_format() -> None:
    rendered = render_one("json", '{"a": "{{ v | e }}"}', {"v": '\\"<'})
    assert json.loads(rendered.body) == {"a": '\\"<'}


def test_macro_output_and_set_blocks_are_not_escaped_twice() -> None:
    body = (
        '{% macro quoted(x) %}"{{ x }}"{% endmacro %}'
        "{% macro wrap() %}[{{ caller() }}]{% endmacro %}"
        '{% set block %}"{{ v }}"{% endset %}'
        '{"m": {{ quoted(v) }}, "s": {{ block }}, '
        '"c": {% call wrap() %}{{ quoted(v) }}{% endcall %}}'
    )
    rendered = render_one("json", body, {"v": NASTY})
    assert json.loads(rendered.body) == {"m": NASTY, "s": NASTY, "c": [NASTY]}


def test_lone_surrogate_in_json_is_written_as_an_escape() -> None:
    rendered = render_one("json", '{"v": "{{ v }}", "t": {{ v | tojson }}}', {"v": "a\ud800b"})
    assert json.loads(rendered.body) == {"v": "a\ud800b", "t": "a\ud800b"}


# ---------------------------------------------------------------- pasted templates


def test_platform_markers_read_as_jinja_and_keep_line_numbers() -> None:
    rendered = render_one("text", "a\nb\n##{{ missing }} ##{{ name }}", {"name": "N"})
    assert rendered.body == b"a\nb\n N"
    assert rendered.warnings == (TemplateWarning("undefined variable 'missing'", 3, "t"),)


def test_platform_order_shipped_template_renders_one_fulfillment_to_valid_json() -> None:
    engine = engine_of(template("acme-shipped", "json", PLATFORM_ORDER_SHIPPED))
    rendered = engine.render("acme-shipped", shipped_with_one_fulfillment(), ACME)
    assert json.loads(rendered.body) == {
        "event": "Ordre sendt",
        "orderId": "4c1f7a2e-8d3b-4e6a-9b0f-2a7d5c3e1b90",
        "orderReferenceId": "ACME-100234",
        "timestamp": "2026-11-27T09:12:01Z",
        "status": "shipped",
        "trackingInfo": {
            "trackingCode": "1234567890",
            "trackingUrl": "https://www.dhl.com/de-en/home/tracking/tracking-express.html"
            "?tracking-id=1234567890",
            "carrier": "DHL",
        },
    }
    assert rendered.warnings == ()


def test_platform_order_shipped_template_with_two_fulfillments_is_invalid_json() -> None:
    engine = engine_of(template("acme-shipped", "json", PLATFORM_ORDER_SHIPPED))
    with pytest.raises(RenderError) as caught:
        engine.render("acme-shipped", sample_event("order.shipped"), ACME)
    error = caught.value
    assert re.fullmatch(
        r"template acme-shipped line 1: invalid JSON at line 1, column \d+: "
        r"Expecting ',' delimiter",
        str(error),
    )
    assert error.template == "acme-shipped"
    assert error.line == 1
    assert error.column is not None and error.column > 100


def test_platform_lookup_example_renders() -> None:
    body = "{% for item in items %}{% for fulfillment in item.fulfillments %}" + PLATFORM_LOOKUP
    body += "\n{% endfor %}{% endfor %}"
    carriers = Lookup("carriers", "shipmentMethodUid", {"dhl": "DHL Express"}, HERE, "acme")
    rendered = engine_of(template("t", "text", body), lookups=(carriers,)).render(
        "t", shipped_with_one_fulfillment(), ACME
    )
    assert rendered.body == b'"carrier": "DHL Express"\n'


# ---------------------------------------------------------------- validation


def test_invalid_json_names_the_template_line_that_wrote_the_bad_part() -> None:
    body = '{\n  "refs": [\n{% for item in items %}\n    "{{ item.itemReferenceId }}"\n'
    body += "{% endfor %}\n  ]\n}\n"
    engine = engine_of(template("refs", "json", body))
    with pytest.raises(RenderError) as caught:
        engine.render("refs", sample_event("order.shipped"), ACME)
    assert str(caught.value) == (
        "template refs line 4: invalid JSON at line 6, column 5: Expecting ',' delimiter"
    )
    assert caught.value.column == 5


def test_nan_is_not_json() -> None:
    with pytest.raises(RenderError, match="invalid JSON at line 1, column 7: NaN is not"):
        render_one("json", '{"a": NaN}', {})


def test_invalid_xml_is_a_render_error_with_position() -> None:
    with pytest.raises(RenderError) as caught:
        render_one("xml", "<a>\n  <b>{{ v }}</a>\n", {"v": "x"})
    assert str(caught.value) == "template t line 2: invalid XML at line 2, column 9: mismatched tag"


def test_html_and_text_bodies_are_not_validated() -> None:
    assert render_one("html", "<p>unclosed", {}).body == b"<p>unclosed"


# ---------------------------------------------------------------- context


def test_context_has_data_fields_event_customer_and_now() -> None:
    body = "{{ orderId }}|{{ event.id }}|{{ event.type }}|{{ event.data.orderId }}|"
    body += "{{ customer.id }}|{{ customer.name }}|{{ now() }}"
    engine = engine_of(template("t", "text", body))
    event = event_of({"orderId": "o1"})
    configured = engine.render("t", event, ACME).body.decode().split("|")
    assert configured[:6] == ["o1", "evt_1", "order.shipped", "o1", "acme", "Acme Prints"]
    stamp = datetime.fromisoformat(configured[6].replace("Z", "+00:00"))
    assert stamp.tzinfo is not None and stamp.utcoffset() == UTC.utcoffset(None)
    unconfigured = engine.render("t", event_of({"orderId": "o1"}, customer="zed"), None)
    assert unconfigured.body.decode().split("|")[4:6] == ["zed", ""]


def test_envelope_names_win_over_data_fields_of_the_same_name() -> None:
    body = "{{ customer.id }} {{ event.id }} {{ lookups is callable }}"
    data = {"customer": {"id": "from-data"}, "event": "x", "lookups": "y"}
    assert render_one("text", body, data).body == b"acme evt_1 true"


def test_plugin_globals_and_filters_are_available_but_cannot_replace_escaping() -> None:
    engine = engine_of(
        template(
            "t", "json", '{"a": "{{ money(5) }}", "b": {{ v | tojson }}, "c": "{{ v | shout }}"}'
        ),
        globals_={"money": lambda cents: f"€{cents / 100:.2f}"},
        filters={"shout": lambda s: s.upper() + '!"', "tojson": lambda v: "HIJACKED"},
    )
    rendered = engine.render("t", event_of({"v": "hi"}), None)
    assert json.loads(rendered.body) == {"a": "€0.05", "b": "hi", "c": 'HI!"'}


def test_fail_stops_the_render_with_its_message() -> None:
    body = "line one\n{% if not orderId %}{{ fail('no orderId in this event') }}{% endif %}"
    with pytest.raises(RenderError) as caught:
        render_one("text", body, {})
    assert str(caught.value) == "template t line 2: no orderId in this event"


def test_runtime_error_is_a_render_error_with_the_line() -> None:
    with pytest.raises(RenderError) as caught:
        render_one("text", "ok\n\n{{ n / zero }}", {"n": 1, "zero": 0})
    assert caught.value.line == 3
    assert "ZeroDivisionError" in str(caught.value)


# ---------------------------------------------------------------- lookups


def lookup_tables() -> tuple[Lookup, ...]:
    return (
        Lookup("carriers", "shipmentMethodUid", {"dhl": "DHL (global)", "ups": "UPS"}, HERE),
        Lookup("acme-carriers", "shipmentMethodUid", {"dhl": "DHL for Acme"}, HERE, "acme"),
        Lookup("globex-carriers", "shipmentMethodUid", {"fedex": "FedEx"}, HERE, "globex"),
        Lookup("countries", "fulfillmentCountry", {"dhl": "not this one"}, HERE),
    )


LOOKUP_BODY = '{{ lookups({"shipmentMethodUid": uid}, default="?") }}'


@pytest.mark.parametrize(
    ("customer", "uid", "expected"),
    [
        ("acme", "dhl", "DHL for Acme"),
        ("acme", "ups", "UPS"),
        ("globex", "dhl", "DHL (global)"),
        ("globex", "fedex", "FedEx"),
        ("acme", "fedex", "?"),
        ("initech", "dhl", "DHL (global)"),
    ],
)
def test_lookups_search_the_customers_tables_first_then_global_ones(
    customer: str, uid: str, expected: str
) -> None:
    engine = engine_of(template("t", "text", LOOKUP_BODY), lookups=lookup_tables())
    rendered = engine.render("t", event_of({"uid": uid}, customer=customer), None)
    assert rendered.body.decode() == expected


def test_lookups_miss_gives_the_default_or_empty() -> None:
    engine = engine_of(
        template("t", "text", '[{{ lookups({"shipmentMethodUid": "zz"}) }}]'),
        lookups=lookup_tables(),
    )
    assert engine.render("t", event_of({}), ACME).body == b"[]"


def test_strict_lookup_miss_names_key_value_and_tables() -> None:
    body = 'x\n{{ lookups({"shipmentMethodUid": uid}, strict=True) }}'
    engine = engine_of(template("t", "text", body), lookups=lookup_tables())
    with pytest.raises(RenderError) as caught:
        engine.render("t", event_of({"uid": "dpd"}), ACME)
    assert str(caught.value) == (
        "template t line 2: lookup shipmentMethodUid=dpd not found "
        "(tables: acme-carriers, carriers)"
    )


def test_strict_lookup_with_no_table_for_the_key() -> None:
    engine = engine_of(template("t", "text", '{{ lookups({"sku": 5}, strict=True) }}'))
    with pytest.raises(
        RenderError, match=r"lookup sku=5 not found \(no lookup table has key 'sku'"
    ):
        engine.render("t", event_of({}), ACME)


def test_lookups_wants_exactly_one_key() -> None:
    engine = engine_of(template("t", "text", '{{ lookups({"a": 1, "b": 2}) }}'))
    with pytest.raises(RenderError, match=r"lookups\(\) takes one key"):
        engine.render("t", event_of({}), ACME)


# ---------------------------------------------------------------- undefined variables


def test_undefined_variables_render_empty_and_are_warnings_with_lines() -> None:
    body = "a{{ missing.x }}b\n{% for f in nope %}{{ f }}{% endfor %}\n{{ order.trackingCod }}"
    rendered = render_one("text", body, {"order": {"trackingCode": "1"}})
    assert rendered.body == b"ab\n\n"
    assert [str(w) for w in rendered.warnings] == [
        "template t line 1: undefined variable 'missing.x'",
        "template t line 2: undefined variable 'nope'",
        "template t line 3: undefined variable 'order.trackingCod'",
    ]


def test_undefined_used_inside_a_filter_is_reported_too() -> None:
    rendered = render_one("text", "\n{{ missing | upper }}", {})
    assert rendered.warnings == (TemplateWarning("undefined variable 'missing'", 2, "t"),)


def test_testing_for_an_optional_field_is_not_a_warning() -> None:
    body = (
        "{% if missing %}x{% endif %}{% if missing is defined %}y{% endif %}"
        "{{ missing | default('d') }}{{ missing.x | default('e') }}"
    )
    rendered = render_one("text", body, {})
    assert rendered.body == b"de"
    assert rendered.warnings == ()


def test_a_warning_in_a_loop_is_reported_once() -> None:
    rendered = render_one(
        "text", "{% for i in items %}{{ i.nope }}{% endfor %}", {"items": [{}, {}, {}]}
    )
    assert len(rendered.warnings) == 1


def test_undefined_in_json_tojson_is_null_and_a_warning() -> None:
    rendered = render_one("json", '{"a": {{ missing | tojson }}}', {})
    assert json.loads(rendered.body) == {"a": None}
    assert [w.message for w in rendered.warnings] == ["undefined variable 'missing'"]


# ---------------------------------------------------------------- subject


def test_subject_is_one_line_and_not_escaped_for_the_body_format() -> None:
    engine = engine_of(
        template("mail", "html", "<p>{{ ref }}</p>", subject="Order {{ ref }}\r\nshipped {{ x }}")
    )
    rendered = engine.render("mail", event_of({"ref": "A<&>\nBcc: evil@example.com"}), ACME)
    assert rendered.subject == "Order A<&> Bcc: evil@example.com shipped"
    assert rendered.body == b"<p>A&lt;&amp;&gt;\nBcc: evil@example.com</p>"
    assert [str(w) for w in rendered.warnings] == [
        "template mail subject line 2: undefined variable 'x'"
    ]


# ---------------------------------------------------------------- sandbox


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__.__mro__",
        "''.__class__",
        "event.__class__.__init__.__globals__",
        "lookups.__init__",
        "missing.__class__",
    ],
)
def test_sandbox_blocks_attribute_escapes(expression: str) -> None:
    with pytest.raises(RenderError) as caught:
        render_one("text", "ok\n{{ " + expression + " }}", {})
    assert "unsafe" in str(caught.value)
    assert caught.value.line == 2


def test_templates_cannot_change_the_event() -> None:
    event = sample_event("order.shipped")
    before = copy.deepcopy(dict(event.data))
    engine = engine_of(template("t", "text", "{{ items.pop() }}{{ event.data.update({}) }}"))
    with pytest.raises(RenderError, match="unsafe"):
        engine.render("t", event, ACME)
    assert dict(event.data) == before


# ---------------------------------------------------------------- compiling


def test_each_template_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real: Callable[..., Any] = templates_compile.compile_template

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(templates_compile, "compile_template", counting)
    engine = engine_of(template("t", "json", '{"o": "{{ orderId }}"}'))
    first = engine.compiled("t")
    for order_id in ("a", "b", "c"):
        assert json.loads(engine.render("t", event_of({"orderId": order_id}), None).body) == {
            "o": order_id
        }
    assert engine.compiled("t") is first
    assert calls == ["t"]


def test_compiling_from_several_threads_still_compiles_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    real: Callable[..., Any] = templates_compile.compile_template

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(templates_compile, "compile_template", counting)
    engine = engine_of(template("t", "text", "{{ orderId }}"))
    results: list[bytes] = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(
                engine.render("t", event_of({"orderId": i}), None).body
            )
        )
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(results) == sorted(str(i).encode() for i in range(8))
    assert calls == ["t"]


def test_syntax_error_has_the_line_and_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_of(template("broken", "text", "a\n\n{% for x in items %}{{ x }}"))
    for _ in range(2):
        with pytest.raises(RenderError) as caught:
            engine.render("broken", event_of({}), None)
        assert caught.value.line == 3
        assert str(caught.value).startswith("template broken line 3: syntax error: ")


def test_engines_sharing_a_cache_compile_only_changed_templates() -> None:
    cache = templates_compile.CompiledCache()
    kept = template("kept", "json", '{"o": {{ orderId | tojson }}}')
    edited = template("edited", "text", "one {{ orderId }}")
    first = engine_of(kept, edited, cache=cache)
    for name in ("kept", "edited"):
        first.render(name, event_of({"orderId": "a"}), None)
    assert cache.compiles == 2
    moved = TemplateConfig(
        name="kept", format="json", body=kept.body, location=Location(Path("conf.d/b.toml"), 3)
    )
    second = engine_of(moved, template("edited", "text", "two {{ orderId }}"), cache=cache)
    assert second.render("edited", event_of({"orderId": "a"}), None).body == b"two a"
    assert json.loads(second.render("kept", event_of({"orderId": "b"}), None).body) == {"o": "b"}
    assert cache.compiles == 3  # only the edited one
    assert second.compiled("kept").config is moved  # each engine its own configuration
    assert first.render("edited", event_of({"orderId": "a"}), None).body == b"one a"


def test_a_renamed_or_reformatted_template_is_compiled_under_its_new_form() -> None:
    cache = templates_compile.CompiledCache()
    body = "{{ fail('stop') }}"
    engine_of(template("old", "text", body), cache=cache).compiled("old")
    renamed = engine_of(template("new", "text", body), cache=cache)
    with pytest.raises(RenderError, match="template new line 1: stop"):
        renamed.render("new", event_of({}), None)
    quoted = '"{{ v }}"'
    as_text = engine_of(template("q", "text", quoted), cache=cache)
    assert as_text.render("q", event_of({"v": 'a"b'}), None).body == b'"a"b"'
    as_json = engine_of(template("q", "json", quoted), cache=cache)
    assert as_json.render("q", event_of({"v": 'a"b'}), None).body == b'"a\\"b"'
    assert cache.compiles == 4


def test_other_plugin_functions_start_the_cache_afresh() -> None:
    cache = templates_compile.CompiledCache()
    t = template("t", "text", "{{ v | shout }}")
    loud = engine_of(t, cache=cache, filters={"shout": lambda s: f"{s}!"})
    assert loud.render("t", event_of({"v": "hi"}), None).body == b"hi!"
    louder = engine_of(t, cache=cache, filters={"shout": lambda s: f"{s}!!"})
    assert louder.render("t", event_of({"v": "hi"}), None).body == b"hi!!"
    assert cache.compiles == 2


def test_a_syntax_error_is_kept_in_the_shared_cache_with_its_line() -> None:
    cache = templates_compile.CompiledCache()
    broken = template("broken", "text", "a\n{% if %}")
    for _ in range(2):
        engine = engine_of(broken, cache=cache)
        with pytest.raises(RenderError, match="template broken line 2: syntax error"):
            engine.compiled("broken")
    assert cache.compiles == 1


def test_unknown_filter_is_reported_at_compile_time() -> None:
    engine = engine_of(template("t", "text", "x\n{{ v | no_such_filter }}"))
    with pytest.raises(RenderError, match=r"template t line 2: syntax error: .*no_such_filter"):
        engine.compiled("t")


def test_unknown_template_names_the_built_ins() -> None:
    engine = engine_of()
    assert not engine.has("nope")
    with pytest.raises(RenderError, match=r"unknown template 'nope'.*builtin:order-status-json"):
        engine.render("nope", event_of({}), None)


def test_names_and_has_include_the_built_ins() -> None:
    engine = engine_of(template("zeta", "text", "z"), template("alpha", "text", "a"))
    assert engine.names() == [
        "alpha",
        "zeta",
        "builtin:alert-email",
        "builtin:alert-json",
        "builtin:cxml-ship-notice",
        "builtin:gelato-status-v2",
        "builtin:order-status-json",
        "builtin:order-status-xml",
        "builtin:shipment-csv",
        "builtin:shipped-email",
    ]
    assert engine.has("builtin:shipped-email")
    assert engine.template("alpha").format == "text"


# ---------------------------------------------------------------- samples and check


def test_render_samples_covers_the_matching_sample_types() -> None:
    engine = engine_of(template("t", "json", '{"s": "{{ fulfillmentStatus }}"}'))
    results = render_samples(engine, "t", event_types=["Order shipped", "order.in_*"])
    assert [r.event_type for r in results] == [
        "order.in_production",
        "order.shipped",
        "order.in_transit",
    ]
    assert all(r.rendered is not None and r.error is None for r in results)
    assert len(render_samples(engine, "t")) == len(CANONICAL_TYPES)


def test_render_samples_as_another_customer_uses_its_lookups() -> None:
    engine = engine_of(
        template("t", "text", '{{ lookups({"shipmentMethodUid": "dhl"}) }}'),
        lookups=lookup_tables(),
    )
    globex = Customer("globex", "Globex", HERE)
    (result,) = render_samples(engine, "t", event_types=["order.shipped"], customer=globex)
    assert result.rendered is not None and result.rendered.body == b"DHL (global)"


def test_check_template_merges_findings_over_samples() -> None:
    body = '{"reason": "{{ failureReason }}", "x": "{{ typo }}"'
    body += '{% if event.type == "order.failed" %},{% endif %}}'
    engine = engine_of(template("t", "json", body))
    findings = check_template(
        engine, "t", event_types=["order.failed", "order.cancelled", "order.shipped"]
    )
    assert [str(f) for f in findings] == [
        "template t line 1: invalid JSON at line 1, column 58: Expecting property name enclosed "
        "in double quotes (with sample order.failed)",
        "template t line 1: undefined variable 'typo' (with samples order.cancelled, "
        "order.shipped)",
        "template t line 1: undefined variable 'failureReason' (with sample order.shipped)",
    ]
    assert [f.severity for f in findings] == ["error", "warning", "warning"]
    (everywhere,) = check_template(engine_of(template("u", "text", "{{ typo }}")), "u")
    assert str(everywhere) == "template u line 1: undefined variable 'typo' (with every sample)"
    assert len(everywhere.samples) == len(CANONICAL_TYPES)


def test_check_template_reports_a_syntax_error_once() -> None:
    engine = engine_of(template("t", "text", "{% if %}"))
    (finding,) = check_template(engine, "t")
    assert finding.severity == "error"
    assert str(finding).startswith("template t line 1: syntax error")


def test_a_lone_surrogate_through_raw_is_a_render_error() -> None:
    with pytest.raises(RenderError, match=r"U\+D800 \(a lone surrogate\)"):
        render_one("text", "{{ v | raw }}", {"v": "a\ud800"})


def test_invalid_body_line_stays_unknown_when_a_second_run_differs() -> None:
    ticks = iter(range(100))
    engine = engine_of(
        template("t", "json", '{"n": {{ tick() }}, }'),
        globals_={"tick": lambda: next(ticks)},
    )
    with pytest.raises(RenderError) as caught:
        engine.render("t", event_of({}), None)
    assert caught.value.line is None
    assert str(caught.value).startswith("template t: invalid JSON at line 1, column 10")


def test_a_plugin_filter_can_return_safe_text() -> None:
    engine = engine_of(
        template("t", "xml", "<r>{{ v | bold }}</r>"),
        filters={"bold": lambda s: templates_module.Safe(f"<b>{s}</b>")},
    )
    assert engine.render("t", event_of({"v": "x"}), None).body == b"<r><b>x</b></r>"


@pytest.mark.parametrize(
    "value", ['a"b\\c\n\x00é\u2028', 0, -7, 10**30, 1.5, 1e16, 0.1, True, False, None]
)
def test_tojson_of_a_scalar_is_what_json_dumps_writes(value: Any) -> None:
    rendered = render_one("json", '{"v": {{ v | tojson }}}', {"v": value})
    assert rendered.body.decode() == '{"v": ' + json.dumps(value, ensure_ascii=False) + "}"
    assert json.loads(rendered.body) == {"v": value}


def test_tojson_of_a_lone_surrogate_is_an_escape_json_reads_back() -> None:
    rendered = render_one("json", '{"v": {{ v | tojson }}}', {"v": "a\ud800b"})
    assert rendered.body == b'{"v": "a\\ud800b"}'
    assert json.loads(rendered.body) == {"v": "a\ud800b"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_tojson_of_a_non_finite_number_is_a_render_error(value: float) -> None:
    with pytest.raises(RenderError, match="tojson: Out of range float"):
        render_one("json", '{"v": {{ v | tojson }}}', {"v": value})


def test_dotted_access_reads_event_data_keys_and_dict_methods_stay_methods() -> None:
    data = {"order": {"id": "o1", "items": "named like a method"}, "pairs": {"a": 1}}
    body = (
        '{"id": {{ order.id | tojson }}, "missing": {{ order.nope | default("-") | tojson }}, '
        '"key": {{ order["items"] | tojson }}, '
        '"pairs": [{% for k, v in pairs.items() %}"{{ k }}={{ v }}"{% endfor %}]}'
    )
    rendered = render_one("json", body, data)
    assert json.loads(rendered.body) == {
        "id": "o1",
        "missing": "-",
        "key": "named like a method",
        "pairs": ["a=1"],
    }


def test_a_body_only_json_can_read_is_accepted() -> None:
    # A lone surrogate escape is valid JSON text for json, not for strict parsers like orjson.
    rendered = render_one("json", '{"v": "{{ v | raw }}"}', {"v": "\\ud800"})
    assert json.loads(rendered.body) == {"v": "\ud800"}
