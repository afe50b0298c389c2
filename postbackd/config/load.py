"""conf.d → a typed, validated `Config`; every problem reported with file and line.

`load_config` reads every file of the directory (see `postbackd.config.files` for which),
merges them per DESIGN §3 and validates the whole: unknown tables and keys (with a "did you
mean"), types, units, enums, networks, duplicates across files (naming both places), and
references between items (a trigger's customer, template and delivery). It never stops at the
first problem; all of them are raised together in one `ConfigError`.

Choices worth knowing:
- A file that fails to parse is reported; references to names it seems to declare (read
  line by line) are not reported again, and a reference that is still missing mentions it.
- Secret references (`postbackd.config.secrets`) are expanded in every string value except a
  template's ``body`` and ``subject``, which are Jinja sources and are stored as written.
- Relative paths resolve against the directory of the file that holds them: ``[daemon] spool``
  and ``plugin_dirs``, ``[[template]] body_file``, and path settings of sources and deliveries
  (see `postbackd.config.sections`). Resolved paths are absolute.
- The spool defaults to ``$STATE_DIRECTORY/spool.db`` (systemd), else ``var/spool.db`` under
  the current working directory.
- With a `ConfigCache` (the daemon keeps one across reloads), a file that did not change is
  not parsed again, nor are its items built again; what looks across files is always checked
  on the whole directory, and the result is the same as without the cache.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from postbackd.config.cache import ConfigCache
from postbackd.config.files import (
    ReadResult,
    config_files,
    config_paths,
    item_tables,
    read_files,
)
from postbackd.config.items import (
    BUILTIN_PREFIX,
    build_customer,
    build_lookup,
    build_sla,
    build_template,
    build_trigger,
)
from postbackd.config.model import Config, SlaRule, Trigger, first_admin_endpoint
from postbackd.config.parse import ITEM_TABLES, PLUGIN_TABLES
from postbackd.config.plugin_tables import (
    PluginClasses,
    build_source,
    check_admin_endpoints,
    plugin_settings,
    read_settings,
)
from postbackd.config.report import ConfigError, Diagnostic, Reporter, did_you_mean
from postbackd.config.secrets import SchemeResolver, SecretResolver
from postbackd.config.sections import (
    build_alerts,
    build_daemon,
    build_smtp,
    build_ui,
    check_admin_listener,
)
from postbackd.config.table import Built, ConfFile, Table
from postbackd.events import SYSTEM_TYPE_PREFIX, type_matches
from postbackd.redaction import Redactor

__all__ = [
    "BUILTIN_TEMPLATE_NAMES",
    "ConfigCache",
    "ConfigError",
    "Diagnostic",
    "LoadResult",
    "PluginClasses",
    "ValidateOptions",
    "config_files",
    "default_spool",
    "load_config",
    "load_config_with_warnings",
]

BUILTIN_TEMPLATE_NAMES = frozenset(
    {
        "builtin:order-status-json",
        "builtin:order-status-xml",
        "builtin:shipped-email",
        "builtin:gelato-status-v2",
        "builtin:alert-json",
        "builtin:alert-email",
        "builtin:cxml-ship-notice",
        "builtin:shipment-csv",
    }
)
SINGLE_TABLES = ("daemon", "smtp", "ui", "alerts")
TABLE_FORMS = {
    **{key: f"[{key}]" for key in SINGLE_TABLES},
    **{key: f"[{key}.NAME]" for key in PLUGIN_TABLES},
    **{key: f"[[{key}]]" for key in ITEM_TABLES},
}

ValidateOptions = Callable[[Mapping[str, Any]], list[str]]
"""A delivery plugin's ``validate_options(options) -> [problem, ...]``."""

T = TypeVar("T")


@dataclass(frozen=True)
class LoadResult:
    """A valid configuration and the warnings found while loading it."""

    config: Config
    warnings: tuple[Diagnostic, ...] = ()


def load_config(
    conf_dir: Path,
    *,
    deliveries: Mapping[str, ValidateOptions] | None = None,
    classes: PluginClasses | None = None,
    resolve_secret: SchemeResolver | None = None,
    environ: Mapping[str, str] | None = None,
    pending: Mapping[Path, str] | None = None,
    expand_secrets: bool = True,
    cache: ConfigCache | None = None,
) -> Config:
    """The validated configuration of `conf_dir`; `ConfigError` lists every error found.

    `deliveries` maps each registered delivery name to its ``validate_options``; without it,
    delivery names are not checked. `classes` are the registered plugin classes: each
    ``[sources.NAME]``/``[deliveries.NAME]`` whose class has ``read_settings`` is read by it
    (`postbackd.config.plugin_tables`); without them, those tables are only kept.
    `resolve_secret` resolves ``${scheme:rest}`` references of schemes other than
    env/file/credential (None when the scheme is not its own). `environ`
    (default ``os.environ``) supplies ``${env:...}``, ``CREDENTIALS_DIRECTORY`` and
    ``STATE_DIRECTORY``. `pending` maps paths of files not yet written to their text: they are
    validated as if present (``customer add`` checks a file before writing it). With
    `expand_secrets` false, references are kept as written and not checked: for tools that need
    the structure only and may run without the daemon's environment. With a `cache` (kept from
    one load to the next), files that did not change are not read and parsed again.
    """
    return load_config_with_warnings(
        conf_dir,
        deliveries=deliveries,
        classes=classes,
        resolve_secret=resolve_secret,
        environ=environ,
        pending=pending,
        expand_secrets=expand_secrets,
        cache=cache,
    ).config


def load_config_with_warnings(
    conf_dir: Path,
    *,
    deliveries: Mapping[str, ValidateOptions] | None = None,
    classes: PluginClasses | None = None,
    resolve_secret: SchemeResolver | None = None,
    environ: Mapping[str, str] | None = None,
    pending: Mapping[Path, str] | None = None,
    expand_secrets: bool = True,
    cache: ConfigCache | None = None,
) -> LoadResult:
    """As `load_config`, also returning the warnings (``ConfigError`` carries both kinds)."""
    env = os.environ if environ is None else environ
    if not conf_dir.is_dir():
        raise ConfigError(
            [Diagnostic(conf_dir, 0, "configuration directory not found: create it or pass -c DIR")]
        )
    report = Reporter()
    with cache.lock if cache is not None else nullcontext():
        paths = config_paths(conf_dir)
        if not paths and not pending:
            report.warning(conf_dir, 0, "no *.toml files: running with the defaults")
        if cache is not None:
            cache.begin(paths)
        resolver = SecretResolver(env, resolve_secret) if expand_secrets else None
        read = read_files(paths, pending or {}, resolver, report, cache)
        loader = _Loader(read, report, deliveries, classes or PluginClasses())
        config = loader.build(conf_dir, default_spool(env))
    redactor = config.redactor
    found = [dataclasses.replace(d, message=redactor.text(d.message)) for d in report.sorted()]
    if report.failed:
        raise ConfigError(found)
    return LoadResult(config, tuple(d for d in found if d.severity == "warning"))


def default_spool(environ: Mapping[str, str]) -> Path:
    """``$STATE_DIRECTORY/spool.db`` (its first entry) under systemd, else ./var/spool.db."""
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state, "spool.db") if state else Path.cwd() / "var" / "spool.db"


class _Loader:
    """Merges the parsed files into tables, then builds and cross-checks the items."""

    def __init__(
        self,
        read: ReadResult,
        report: Reporter,
        deliveries: Mapping[str, ValidateOptions] | None,
        classes: PluginClasses,
    ) -> None:
        self.read = read
        self.report = report
        self.deliveries = deliveries
        self.classes = classes
        self.singles: dict[str, Table] = {}
        self.plugins: dict[str, dict[str, Table]] = {kind: {} for kind in PLUGIN_TABLES}
        self.items: dict[str, list[Table]] = {kind: [] for kind in ITEM_TABLES}
        self.declared: dict[str, set[str]] = {kind: set() for kind in ITEM_TABLES}
        for file in read.files:
            self.merge(file)

    def merge(self, file: ConfFile) -> None:
        for key, value in file.raw.items():
            if key in SINGLE_TABLES:
                self.merge_single(file, key, value)
            elif key in PLUGIN_TABLES:
                self.merge_plugin_tables(file, key, value)
            elif key in ITEM_TABLES:
                self.merge_items(file, key, value)
            else:
                close = difflib.get_close_matches(key, TABLE_FORMS, n=1)
                hint = f" (did you mean {TABLE_FORMS[close[0]]}?)" if close else ""
                self.report.error(
                    file.path,
                    file.lines.line_of(key),
                    f"unknown table [{key}]{hint}: a file may hold "
                    + ", ".join(TABLE_FORMS.values()),
                )

    def merge_single(self, file: ConfFile, key: str, value: Any) -> None:
        line = file.lines.line_of(key)
        if isinstance(value, list):
            self.report.error(file.path, line, f"write [{key}] (one table), not [[{key}]]")
        elif not isinstance(value, dict):
            self.report.error(file.path, line, f"{key} must be the table [{key}]")
        elif key in self.singles:
            first = self.singles[key].location
            self.report.error(
                file.path,
                line,
                f"[{key}] is already set in {first}: it may appear only once in the directory",
            )
        else:
            self.singles[key] = Table(file, (key,), f"[{key}]", self.report)

    def merge_plugin_tables(self, file: ConfFile, key: str, value: Any) -> None:
        if not isinstance(value, dict):
            where = file.lines.line_of(key)
            self.report.error(file.path, where, f"write one table per plugin: [{key}.NAME]")
            return
        for name, settings in value.items():
            where = file.lines.line_of(key, name)
            if not isinstance(settings, dict):
                self.report.error(
                    file.path,
                    where,
                    f"[{key}] holds only tables: write [{key}.{name}] and its keys",
                )
            elif name in self.plugins[key]:
                first = self.plugins[key][name].location
                self.report.error(
                    file.path, where, f"duplicate [{key}.{name}]: also defined at {first}"
                )
            else:
                self.plugins[key][name] = Table(file, (key, name), f"[{key}.{name}]", self.report)

    def merge_items(self, file: ConfFile, key: str, value: Any) -> None:
        if not isinstance(value, list):
            where = file.lines.line_of(key)
            self.report.error(file.path, where, f"write [[{key}]] (one per {key}), not [{key}]")
            return
        merged = file.merged.get(key)
        if merged is None:
            merged = file.merged[key] = item_tables(file, key, value)
        self.report.extend(merged.diagnostics)
        for table, name in merged.tables:
            table.report = self.report
            if name is not None:
                self.declared[key].add(name)
            self.items[key].append(table)

    def build(self, conf_dir: Path, spool: Path) -> Config:
        sources = {
            name: build_source(table, name, self.classes.sources.get(name))
            for name, table in self.plugins["sources"].items()
        }
        deliveries = {}
        for name, table in self.plugins["deliveries"].items():
            if self.deliveries is not None and name not in self.deliveries:
                table.error(f"unknown delivery {name!r} (known: {self.known_deliveries()})")
            else:
                read_settings(self.classes.deliveries.get(name), table)
            deliveries[name] = plugin_settings(table)
        daemon_table = self.singles.get("daemon")
        daemon = build_daemon(daemon_table, spool)
        served = first_admin_endpoint(sources)
        if daemon.admin_token is None and served is not None:
            daemon = dataclasses.replace(daemon, admin_token=served.token)
        check_admin_listener(
            daemon_table, daemon.admin_listen, daemon.admin_token, served is not None
        )
        if daemon_table is None or "admin_token" not in daemon_table.data:
            # a blank or failed admin_token is reported at its own line
            check_admin_endpoints(self.plugins["sources"], sources, daemon.admin_token)
        customers = self.unique("customer", "id", build_customer)
        templates = self.unique("template", "name", build_template)
        triggers = self.unique("trigger", "name", build_trigger)
        lookups = self.unique("lookup", "name", build_lookup)
        sla = self.unique("sla", "name", build_sla)
        for table in self.items["trigger"]:
            self.check_trigger(table, customers, templates, triggers)
        for table, lookup in lookups.values():
            if lookup.customer is not None:
                self.check_reference(table, "customer", lookup.customer, customers)
        alerts_table = self.singles.get("alerts")
        alerts = build_alerts(alerts_table)
        if alerts_table is not None and "customer" in alerts_table.data:
            self.check_reference(alerts_table, "customer", alerts.customer, customers)
        for table, trigger in triggers.values():
            _check_alert_events(table, trigger, alerts.customer)
        for table in self.items["sla"]:
            customer = table.data.get("customer")
            if isinstance(customer, str):
                self.check_reference(table, "customer", customer, customers)
        for table, rule in sla.values():
            _check_alert_routed(table, rule, _values(triggers).values())
        return Config(
            conf_dir=conf_dir,
            daemon=daemon,
            sources=sources,
            deliveries=deliveries,
            smtp=build_smtp(self.singles.get("smtp")),
            ui=build_ui(self.singles.get("ui")),
            alerts=alerts,
            customers=_values(customers),
            templates=_values(templates),
            triggers=_values(triggers),
            lookups=_values(lookups),
            sla=_values(sla),
            redactor=Redactor.of(v for f in self.read.files for _, v in f.secret_values),
            shared_redactor=Redactor.of(
                value
                for file in self.read.files
                for path, value in file.secret_values
                if path and path[0] not in ITEM_TABLES
            ),
        )

    def unique(
        self, kind: str, key: str, build: Callable[[Table], T | None]
    ) -> dict[str, tuple[Table, T]]:
        """Build every item of `kind`; a name seen before is an error naming both places."""
        built: dict[str, tuple[Table, T]] = {}
        seen: dict[str, Table] = {}
        for table in self.items[kind]:
            value = self.build_item(kind, table, build)
            name = table.data.get(key)
            if not isinstance(name, str):
                continue
            if name in seen:
                first = seen[name].location
                table.error(f'duplicate {kind} {key} "{name}": also defined at {first}', key)
                continue
            seen[name] = table
            if value is not None:
                built[name] = (table, value)
        return built

    def build_item(self, kind: str, table: Table, build: Callable[[Table], T | None]) -> T | None:
        """`build(table)`, or what it gave before for the same table, reported again as it was.

        An item depends only on its table, except a template read from its ``body_file``:
        that one is built at every load, so a changed body file is seen.
        """
        built = table.built
        if built is None:
            found = Reporter()
            value = build(Table(table.file, table.path, table.label, found))
            built = Built(value, tuple(found.diagnostics))
            if kind != "template" or "body_file" not in table.raw:
                table.built = built
        self.report.extend(built.diagnostics)
        return cast(T | None, built.value)

    def check_trigger(
        self,
        table: Table,
        customers: Mapping[str, Any],
        templates: Mapping[str, Any],
        triggers: Mapping[str, tuple[Table, Trigger]],
    ) -> None:
        """A trigger's references, checked even when other keys of it are wrong."""
        customer, template, delivery = (
            value if isinstance(value := table.data.get(key), str) else None
            for key in ("customer", "template", "delivery")
        )
        if customer:
            self.check_reference(table, "customer", customer, customers)
        if template and template.startswith(BUILTIN_PREFIX):
            if template not in BUILTIN_TEMPLATE_NAMES:
                hint = did_you_mean(template, BUILTIN_TEMPLATE_NAMES)
                known = ", ".join(sorted(BUILTIN_TEMPLATE_NAMES))
                table.error(f'no built-in template "{template}"{hint} (known: {known})', "template")
        elif template:
            self.check_reference(table, "template", template, templates)
        if self.deliveries is None or not delivery:
            return
        validate = self.deliveries.get(delivery)
        if validate is None:
            known = self.known_deliveries()
            table.error(f"unknown delivery {delivery!r} (known: {known})", "delivery")
            return
        built = triggers.get(str(table.data.get("name")))
        if built is not None and built[0] is table and not table.secret_failed("options"):
            self.validate_options(table, built[1], validate)

    def validate_options(self, table: Table, trigger: Trigger, validate: ValidateOptions) -> None:
        try:
            problems = list(validate(trigger.options))
        except Exception as exc:
            table.error(
                f"delivery {trigger.delivery!r} failed to check these options: "
                f"{type(exc).__name__}: {exc}",
                "options",
            )
            return
        for problem in problems:
            where, colon, message = problem.partition(":")
            path = _option_path(where.strip(), trigger.options) if colon else None
            if path is not None:
                table.error(message.strip(), "options", *path)
            else:
                table.error(problem, "options")

    def check_reference(self, table: Table, kind: str, name: str, known: Mapping[str, Any]) -> None:
        if name in known or name in self.declared[kind]:
            return
        if name in self.read.broken_names.get(kind, ()):
            return
        hint = did_you_mean(name, known)
        broken = ", ".join(str(path) for path in self.read.broken)
        suffix = f"; {broken} could not be read and may define it" if broken else ""
        table.error(f'no {kind} "{name}"{hint}{suffix}', kind)

    def known_deliveries(self) -> str:
        return ", ".join(sorted(self.deliveries or ())) or "none registered"


def _check_alert_events(table: Table, trigger: Trigger, alerts_customer: str) -> None:
    """Warn of a trigger that names the alert types for a customer that never has them."""
    if trigger.customer == alerts_customer:
        return
    for index, pattern in enumerate(trigger.events):
        if pattern.casefold().startswith(SYSTEM_TYPE_PREFIX):
            table.warning(
                f'"{pattern}": the postbackd.* events belong to the [alerts] customer '
                f'"{alerts_customer}" alone; this trigger of "{trigger.customer}" never receives '
                f'them (set customer = "{alerts_customer}")',
                "events",
                index,
            )


_OPTION_PATH = re.compile(r"[\w-]+(?:\.[\w-]+|\[\d+\])*")
_OPTION_PART = re.compile(r"[\w-]+|\[(\d+)\]")


def _option_path(where: str, options: Mapping[str, Any]) -> tuple[str | int, ...] | None:
    """``"options.tls.client_cert"`` (or ``"url"``, ``"to[1]"``) → the key path under the
    trigger's options a problem names, so it is reported at that key's line; None when the
    text before the colon is not such a path or names no option."""
    where = where.removeprefix("options.")
    if not _OPTION_PATH.fullmatch(where):
        return None
    path = tuple(
        int(match.group(1)) if match.group(1) else match.group(0)
        for match in _OPTION_PART.finditer(where)
    )
    return path if path[0] in options else None


def _values(built: Mapping[str, tuple[Table, T]]) -> dict[str, T]:
    return {name: value for name, (_, value) in built.items()}


def _check_alert_routed(table: Table, rule: SlaRule, triggers: Iterable[Trigger]) -> None:
    """Warn when no trigger would send a rule's alert: it would be stored and go nowhere."""
    if not any(
        (rule.customer is None or trigger.customer == rule.customer)
        and any(type_matches(pattern, rule.emit) for pattern in trigger.events)
        for trigger in triggers
    ):
        whose = f'customer "{rule.customer}"' if rule.customer else "any customer"
        table.warning(
            f'no trigger of {whose} sends "{rule.emit}": add it to a trigger\'s events, or the '
            "delay alerts are only recorded",
            "emit",
        )
