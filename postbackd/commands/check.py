"""`postbackd check`: validate the configuration directory as the daemon would load it.

Prints every error as ``file:line: message`` and exits 1; otherwise a one-line summary and
exit 0. Warnings (such as template variables that no sample event defines) are printed and
fail the check only with ``--strict``. ``--connect`` also tries the SMTP server and every
webhook destination, and reports the step that failed.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from postbackd.commands.common import add_conf_dir_option, add_plugin_options, open_or_report
from postbackd.units import plural

if TYPE_CHECKING:
    from postbackd.config_model import Config
    from postbackd.config_report import Diagnostic
    from postbackd.templates import TemplateEngine


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="validate the configuration directory")
    add_conf_dir_option(parser)
    add_plugin_options(parser)
    parser.add_argument("--strict", action="store_true", help="fail on warnings too")
    parser.add_argument(
        "--connect",
        action="store_true",
        help="also connect to the SMTP server and every webhook destination",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from postbackd.config import ConfigError, load_config_with_warnings
    from postbackd.loading import build_engine
    from postbackd.sources_runner import source_problems

    opened = open_or_report(args, stream=sys.stdout)
    if opened is None:
        return 1
    conf_dir, plugins = opened
    try:
        result = load_config_with_warnings(
            conf_dir, deliveries=plugins.validators(), resolve_secret=plugins.resolve_secret
        )
    except ConfigError as exc:
        for diagnostic in exc.diagnostics:
            print(_label(diagnostic))
        return 1
    config = result.config
    findings = template_findings(config, build_engine(config, plugins.host))
    errors = [d for d in findings if d.is_error]
    source_errors = source_problems(plugins.host, config, plugins.context())
    warnings = [*result.warnings, *(d for d in findings if not d.is_error)]
    for problem in source_errors:
        print(problem)
    for diagnostic in (*errors, *warnings):
        print(_label(diagnostic))
    failed = bool(errors or source_errors) or (bool(warnings) and args.strict)
    if args.connect:
        from postbackd.connectivity import check_connectivity

        failed |= check_connectivity(config, plugins)
    print(
        f"{conf_dir}: {plural(len(config.customers), 'customer')}, "
        f"{plural(len(config.triggers), 'trigger')}, "
        f"{plural(len(config.templates), 'template')}, {plural(len(config.lookups), 'lookup')}"
        + (f", {plural(len(warnings), 'warning')}" if warnings else "")
        + (" — FAILED" if failed else " — ok")
    )
    return 1 if failed else 0


def template_findings(config: Config, engine: TemplateEngine) -> list[Diagnostic]:
    """Each trigger's template rendered against the samples of its event types.

    Syntax errors and templates that fail on every matching sample are errors; undefined
    variables are warnings. Each is placed at the template's file and line.
    """
    from postbackd.config_report import Diagnostic

    found: dict[str, Diagnostic] = {}
    for trigger in sorted(config.triggers.values(), key=lambda t: t.name):
        where = engine.template(trigger.template).location
        customer = config.customers.get(trigger.customer)
        for finding in engine.check_template(
            trigger.template, event_types=trigger.events, customer=customer
        ):
            message = str(finding)
            found.setdefault(message, Diagnostic(where.path, where.line, message, finding.severity))
    return list(found.values())


def _label(diagnostic: Diagnostic) -> str:
    if diagnostic.severity == "warning":
        where = f"{diagnostic.path}:{diagnostic.line}" if diagnostic.line else str(diagnostic.path)
        return f"{where}: warning: {diagnostic.message}"
    return str(diagnostic)
