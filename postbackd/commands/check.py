"""`postbackd check`: validate the configuration directory as the daemon would load it.

Prints every error as ``file:line: message`` and exits 1; otherwise a one-line summary and
exit 0. Warnings (such as template variables that no sample event defines) are printed and
fail the check only with ``--strict``. ``--connect`` also asks each delivery plugin to try its
destinations (the built-ins: the SMTP server, every webhook receiver) and reports the step that
failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from postbackd.commands.common import add_conf_dir_option, add_plugin_options, open_or_report
from postbackd.config import Config, ConfigError, Diagnostic, load_config_with_warnings
from postbackd.generation import Plugins, build_engine, template_errors
from postbackd.plugin import ConnectionCheck
from postbackd.supervisor import source_problems
from postbackd.templates import TemplateEngine, check_template
from postbackd.units import plural


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

    opened = open_or_report(args, stream=sys.stdout)
    if opened is None:
        return 1
    conf_dir, plugins = opened
    try:
        result = load_config_with_warnings(
            conf_dir,
            deliveries=plugins.validators(),
            classes=plugins.classes(),
            resolve_secret=plugins.resolve_secret,
        )
    except ConfigError as exc:
        for diagnostic in exc.diagnostics:
            print(_label(diagnostic))
        return 1
    config = result.config
    engine = build_engine(config, plugins.host)
    findings = template_findings(config, engine)
    used = {trigger.template for trigger in config.triggers.values()}
    unused = [name for name in config.templates if name not in used]
    # the daemon refuses a template that does not compile even when no trigger uses it yet
    findings += template_errors(config, engine, unused)
    errors = [d for d in findings if d.is_error]
    source_errors = source_problems(plugins.host, config, plugins.context())
    warnings = [*result.warnings, *(d for d in findings if not d.is_error)]
    for problem in source_errors:
        print(problem)
    for diagnostic in (*errors, *warnings):
        print(_label(diagnostic))
    failed = bool(errors or source_errors) or (bool(warnings) and args.strict)
    if args.connect:
        failed |= check_connections(config, plugins)
    print(
        f"{conf_dir}: {plural(len(config.customers), 'customer')}, "
        f"{plural(len(config.triggers), 'trigger')}, "
        f"{plural(len(config.templates), 'template')}, {plural(len(config.lookups), 'lookup')}"
        + (f", {plural(len(config.sla), 'delay rule')}" if config.sla else "")
        + (f", {plural(len(warnings), 'warning')}" if warnings else "")
        + (" — FAILED" if failed else " — ok")
    )
    return 1 if failed else 0


def template_findings(config: Config, engine: TemplateEngine) -> list[Diagnostic]:
    """Each trigger's template rendered against the samples of its event types.

    Syntax errors and templates that fail on every matching sample are errors; undefined
    variables are warnings. Each is placed at the template's file and line.
    """

    found: dict[str, Diagnostic] = {}
    for trigger in sorted(config.triggers.values(), key=lambda t: t.name):
        where = engine.template(trigger.template).location
        customer = config.customers.get(trigger.customer)
        for finding in check_template(
            engine, trigger.template, event_types=trigger.events, customer=customer
        ):
            message = str(finding)
            found.setdefault(message, Diagnostic(where.path, where.line, message, finding.severity))
    return list(found.values())


def check_connections(config: Config, plugins: Plugins, out: TextIO = sys.stdout) -> bool:
    """`check --connect`: each delivery plugin that offers ``check_connections`` checks the
    triggers that use it (DNS, TCP, TLS, login: the troubleshooting checklist as a command).
    Prints one line per step; returns True when any failed."""
    plugins.holder.value = config
    plugins.build_deliveries(config.deliveries)
    return asyncio.run(_check_connections(config, plugins, out))


async def _check_connections(config: Config, plugins: Plugins, out: TextIO) -> bool:
    failed = False
    for name, plugin in sorted(plugins.deliveries.items()):
        check = getattr(plugin, "check_connections", None)
        triggers = [t for t in config.triggers.values() if t.delivery == name]
        if check is None or not triggers:
            continue
        try:
            lines: list[ConnectionCheck] = await check(triggers)
        except Exception as exc:  # a plugin's bug must not hide the other plugins' lines
            lines = [ConnectionCheck(False, f"{name}: check_connections raised {exc!r}")]
        finally:
            await plugin.close()
        for line in lines:
            out.write(f"{line}\n")
            failed |= not line.ok
    return failed


def _label(diagnostic: Diagnostic) -> str:
    if diagnostic.severity == "warning":
        where = f"{diagnostic.path}:{diagnostic.line}" if diagnostic.line else str(diagnostic.path)
        return f"{where}: warning: {diagnostic.message}"
    return str(diagnostic)
