"""Turning template source into a compiled, sandboxed Jinja2 template with escaping built in.

Jinja's own autoescaping knows only HTML, so instead the parsed template is rewritten before
it is compiled: every ``{{ expression }}`` becomes ``{{ expression | _postbackd_emit(...) }}``
with the expression's text and line, so escaping errors can name the variable (an expression
whose last filter already gives `Safe` text, like ``| tojson``, needs no wrapper); results of
macro calls and ``{% set %}`` blocks (already escaped inside) are marked `Safe`. The source is
taken as the hosted platform writes it: ``##{{ name }}`` reads as ``{{ name }}``.

A body that comes out invalid is run again through a *tracked* variant, compiled only then,
whose template text goes through a filter so that each piece of output keeps its template line
for the error message (`tracked_variant`); the variant every render uses has none of that.

`CompiledCache` keeps compiled templates from one engine to the next: a reload builds a new
engine, and compiling thousands of unchanged templates again would be most of its cost.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

from postbackd.config import TemplateConfig, TemplateFormat
from postbackd.events import now_iso
from postbackd.templates import budget
from postbackd.templates.errors import RenderError, TemplateFault, TemplatePart
from postbackd.templates.escape import DATA, EMIT, MARK_SAFE, format_filters
from postbackd.templates.runtime import RecordingUndefined

_DICT_ATTRIBUTES = frozenset(dir(dict))


class PostbackEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox: event data can be read, never changed; no attribute starting with ``_``.

    Jinja's sandbox answers an unsafe attribute with an undefined value that fails only when
    used in some ways; here it is an error at once, so ``{{ ''.__class__ }}`` cannot render
    quietly as "".
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``order.id`` on event data: a dict's key straight away, not after a failed getattr.

        Names of dict methods (``items``, ``keys`` …) still mean the method, as in Jinja.
        """
        budget.check()
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        budget.check()
        return super().getitem(obj, argument)

    def call(
        __self, __context: Any, __obj: Any, *args: Any, **kwargs: Any
    ) -> Any:  # the names Jinja's sandbox uses, so that no keyword argument can clash
        budget.check()
        return super().call(__context, __obj, *args, **kwargs)

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )


def fail(message: Any = "the template called fail()") -> NoReturn:
    """Template global: stop the render; the delivery is recorded as failed with `message`."""
    raise TemplateFault(str(message))


def build_environment(
    format: TemplateFormat,
    globals_: Mapping[str, Callable[..., Any]],
    filters: Mapping[str, Callable[..., Any]],
) -> PostbackEnvironment:
    """An environment for templates of one format; plugin globals and filters included.

    The escaping filters (``raw``, ``tojson``, ``e`` …) are installed last: a plugin cannot
    replace them and so cannot open a hole in the escaping.
    """
    env = PostbackEnvironment(
        # RFC 4180 ends records with CRLF; a value's own line breaks (inside a quoted field)
        # are data and stay as they are.
        newline_sequence="\r\n" if format == "csv" else "\n",
        undefined=RecordingUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        extensions=("jinja2.ext.loopcontrols",),
        cache_size=0,
        auto_reload=False,
    )
    env.filters.update(filters)
    env.filters.update(format_filters(format))
    env.globals.update(globals_)
    env.globals.update(now=now_iso, fail=fail)
    return env


def preprocess(source: str) -> str:
    """``##{{`` → ``{{``, as the hosted platform's help pages write it; lines do not move."""
    return source.replace("##{{", "{{")


def compile_template(
    env: PostbackEnvironment, source: str, name: str, part: TemplatePart = "body"
) -> Template:
    """Parse, rewrite and compile `source`; a syntax error is a RenderError with its line."""
    template = _compile(env, source, name, part, tracked=False)
    _SOURCES[template] = (env, source, name, part)
    return template


def tracked_variant(template: Template) -> Template:
    """`template` compiled so that each piece of output keeps its template line (see the
    module docstring); compiled at the first need and kept as long as `template` is."""
    variant = _TRACKED.get(template)
    if variant is None:
        source = _SOURCES.get(template)
        if source is None:
            return template  # not one of ours: its pieces are as good as it gets
        variant = _TRACKED[template] = _compile(*source, tracked=True)
    return variant


_SOURCES: weakref.WeakKeyDictionary[Template, tuple[PostbackEnvironment, str, str, TemplatePart]]
_SOURCES = weakref.WeakKeyDictionary()
_TRACKED: weakref.WeakKeyDictionary[Template, Template] = weakref.WeakKeyDictionary()


def _compile(
    env: PostbackEnvironment, source: str, name: str, part: TemplatePart, *, tracked: bool
) -> Template:
    filename = template_filename(name, part)
    try:
        tree = env.parse(preprocess(source), name, filename)
        macros = {macro.name for macro in tree.find_all(nodes.Macro)}
        _EscapingRewriter(macros, tracked).visit(tree)
        tree.set_environment(env)
        code = env.compile(tree, name, filename)
    except TemplateSyntaxError as exc:
        raise RenderError(
            f"syntax error: {exc.message}", template=name, line=exc.lineno, part=part
        ) from exc
    return env.template_class.from_code(env, code, env.make_globals(None), None)


Compiled = tuple[Template, Template | None]
"""A template's compiled body and subject."""

SourceKey = tuple[str, TemplateFormat, str, str | None]
"""What a compiled template depends on: name (it is in tracebacks and messages), format, body
and subject."""


def source_key(config: TemplateConfig) -> SourceKey:
    return (config.name, config.format, config.body, config.subject)


class CompiledCache:
    """Environments and compiled templates, shared by the engines of successive generations.

    A template is compiled again only when its `source_key` changes. Everything is valid for
    one set of plugin globals and filters (they are in the environments); engines built with
    other functions (other callables, not merely equal ones) start the cache afresh. A syntax
    error is kept like a compiled template. `compiles` counts the compilations done.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._functions: tuple[dict[str, Callable[..., Any]], dict[str, Callable[..., Any]]] = (
            {},
            {},
        )
        self._environments: dict[TemplateFormat, PostbackEnvironment] = {}
        self._compiled: dict[SourceKey, Compiled | RenderError] = {}
        self.compiles = 0

    def use(
        self,
        globals_: Mapping[str, Callable[..., Any]],
        filters: Mapping[str, Callable[..., Any]],
    ) -> None:
        """Set the plugin functions of the engine about to use the cache."""
        with self._lock:
            if not (_same(globals_, self._functions[0]) and _same(filters, self._functions[1])):
                self._functions = (dict(globals_), dict(filters))
                self._environments.clear()
                self._compiled.clear()

    def keep(self, keys: Iterable[SourceKey]) -> None:
        """Forget compiled templates other than `keys` (those of the newest configuration)."""
        wanted = set(keys)
        with self._lock:
            for key in [key for key in self._compiled if key not in wanted]:
                del self._compiled[key]

    def compiled(self, config: TemplateConfig) -> Compiled | RenderError:
        key = source_key(config)
        with self._lock:
            found = self._compiled.get(key)
            if found is None:
                found = self._compile(config)
                self._compiled[key] = found
                self.compiles += 1
        return found

    def _compile(self, config: TemplateConfig) -> Compiled | RenderError:
        try:
            body = compile_template(self._environment(config.format), config.body, config.name)
            subject = None
            if config.subject is not None:
                subject = compile_template(
                    self._environment("text"), config.subject, config.name, "subject"
                )
        except RenderError as exc:
            return exc
        return body, subject

    def _environment(self, format: TemplateFormat) -> PostbackEnvironment:
        env = self._environments.get(format)
        if env is None:
            env = build_environment(format, *self._functions)
            self._environments[format] = env
        return env


def _same(one: Mapping[str, object], other: Mapping[str, object]) -> bool:
    return one.keys() == other.keys() and all(one[name] is other[name] for name in one)


def template_filename(name: str, part: TemplatePart) -> str:
    """The pseudo file name Jinja puts in tracebacks of this template."""
    return f"<template {name}{' subject' if part == 'subject' else ''}>"


class _EscapingRewriter(NodeTransformer):
    def __init__(self, macros: set[str], tracked: bool) -> None:
        self.macros = macros | {"caller"}
        self.tracked = tracked

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_wrap_output(child, self.tracked) for child in node.nodes]
        return node

    def visit_Call(self, node: nodes.Call) -> nodes.Node:
        self.generic_visit(node)
        if isinstance(node.node, nodes.Name) and node.node.name in self.macros:
            return _filter(node, MARK_SAFE)
        return node

    def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.Node:
        # ``{% call m() %}`` writes m's output directly; the call itself must stay a Call.
        self.generic_visit(node.call)
        for field in ("args", "defaults", "body"):
            setattr(node, field, [self.visit(child) for child in getattr(node, field)])
        return node

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> nodes.Node:
        self.generic_visit(node)
        # Without a filter the block's text is what its outputs escaped: mark it safe. With
        # one (``{% set x | upper %}``) it was changed after escaping: leave it to be escaped.
        if node.filter is None:
            node.filter = _filter(None, MARK_SAFE, lineno=node.lineno)
        return node


# Filters whose result is always `Safe` (installed after plugin filters, so never replaced).
_SAFE_RESULT = frozenset({"tojson", "raw", "safe", "e", "escape", "forceescape", MARK_SAFE})


def _wrap_output(child: nodes.Expr, tracked: bool) -> nodes.Expr:
    if isinstance(child, nodes.TemplateData):
        if not tracked:
            return child
        return _filter(nodes.Const(child.data, lineno=child.lineno), DATA)
    if isinstance(child, nodes.Filter) and child.name in _SAFE_RESULT:
        return child
    args: list[nodes.Expr] = [nodes.Const(describe(child)), nodes.Const(child.lineno)]
    return _filter(child, EMIT, args)


def _filter(
    node: nodes.Expr | None,
    name: str,
    args: list[nodes.Expr] | None = None,
    lineno: int | None = None,
) -> nodes.Filter:
    line = lineno if lineno is not None else node.lineno if node is not None else 1
    return nodes.Filter(node, name, args or [], [], None, None, lineno=line)


def describe(node: nodes.Node | None) -> str:
    """The text of a simple expression (``fulfillment.trackingCode``) for messages."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        return f"{describe(node.node)}.{node.attr}"
    if isinstance(node, nodes.Getitem):
        key = repr(node.arg.value) if isinstance(node.arg, nodes.Const) else "..."
        return f"{describe(node.node)}[{key}]"
    if isinstance(node, nodes.Filter):
        return f"{describe(node.node)} | {node.name}"
    if isinstance(node, nodes.Call):
        return f"{describe(node.node)}(...)"
    if isinstance(node, nodes.Const):
        return repr(node.value)
    return "expression"
