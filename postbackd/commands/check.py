"""`postbackd check`: validate the configuration directory as the daemon would load it.

Prints every error as ``file:line: message`` and exits 1; otherwise a one-line summary and
exit 0. Warnings (such as template variables that no sample event defines) are printed and
fail the check only with ``--strict``. ``--connect`` also tries the SMTP server and every
webhook destination, and reports the step that failed.
"""

from __future__ import annotations

import argparse
import sys

from postbackd.commands.common import add_conf_dir_option, add_plugin_options, open_or_report
from postbackd.config import ConfigError, load_config_with_warnings
from postbackd.config_report import Diagnostic
from postbackd.loading import build_engine
from postbackd.samples import sample_event, sample_types
from postbackd.templates import RenderError, TemplateEngine
from postbackd.config_model import Config
from postbackd.events import type_matches


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="validate the configuration directory")
    add_conf_dir_option(parser)
    add_plugin_options(parser)
    parser.add_argument("--strict", action="store_true", help="fail on warnings too")
    parser.add_argument("--connect", action="store_true",
                        help="also connect to the SMTP server and every webhook destination")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    opened = open_or_report(args, stream=sys.stdout)
    if opened is None:
        return 1
    conf_dir, plugins = opened
    try:
        result = load_config_with_warnings(conf_dir, deliveries=plugins.validators(),
                                           resolve_secret=plugins.resolve_secret)
    except ConfigError as exc:
        for diagnostic in exc.diagnostics:
            print(_label(diagnostic))
        return 1
    config = result.config
    warnings = [*result.warnings, *template_warnings(config, build_engine(config, plugins.host))]
    for diagnostic in warnings:
        print(_label(diagnostic))
    failed = bool(warnings) and args.strict
    if args.connect:
        from postbackd.connectivity import check_connectivity

        failed |= check_connectivity(config, plugins)
    print(
        f"{conf_dir}: {len(config.customers)} customers, {len(config.triggers)} triggers, "
        f"{len(config.templates)} templates, {len(config.lookups)} lookups"
        + (f", {len(warnings)} warnings" if warnings else "")
        + (" — FAILED" if failed else " — ok")
    )
    return 1 if failed else 0


def template_warnings(config: Config, engine: TemplateEngine) -> list[Diagnostic]:
    """Render each trigger's template against the samples of its event types.

    Undefined variables become warnings at the template's location; a sample that fails to
    render is a warning too (real events may carry the missing fields).
    """
    found: dict[tuple[str, str], Diagnostic] = {}
    for trigger in config.triggers.values():
        template = engine.template(trigger.template)
        where = template.location
        for event_type in sample_types():
            if not any(type_matches(p, event_type) for p in trigger.events):
                continue
            event = sample_event(event_type)
            customer = config.customers.get(trigger.customer)
            try:
                rendered = engine.render(trigger.template, event, customer)
            except RenderError as exc:
                message = f"template {trigger.template!r} fails on the {event_type} sample: {exc}"
                found.setdefault((trigger.template, message), Diagnostic(
                    where.path, where.line, message, "warning"))
                continue
            for warning in rendered.warnings:
                message = f"template {trigger.template!r}: {warning}"
                found.setdefault((trigger.template, message), Diagnostic(
                    where.path, where.line, message, "warning"))
    return list(found.values())


def _label(diagnostic: Diagnostic) -> str:
    if diagnostic.severity == "warning":
        where = f"{diagnostic.path}:{diagnostic.line}" if diagnostic.line else str(diagnostic.path)
        return f"{where}: warning: {diagnostic.message}"
    return str(diagnostic)
