"""Operational alerts (``postbackd.*`` events): `AlertMonitor` watches the daemon's parts and
raises one event per episode; `postbackd.alerts.episodes` holds the rules."""

from postbackd.alerts.episodes import Alert, DeadWindows, HeldConditions, Transition
from postbackd.alerts.monitor import AlertMonitor

__all__ = ["Alert", "AlertMonitor", "DeadWindows", "HeldConditions", "Transition"]
