"""``[[sla]]`` delay alerts: `timer_changes` says which timers a batch of events starts or
cancels (intake stores them in the batch's transaction), and `SlaFiring` is the loop that
turns a due timer into a delay alert event (`alert_event`, its id from `alert_id`).

Inside: `rules` (pure functions of the rules and the events) and `firing` (the loop).
"""

from postbackd.sla.firing import SLA_SOURCE, SlaFiring
from postbackd.sla.rules import ALERT_NAMESPACE, alert_event, alert_id, timer_changes

__all__ = ["ALERT_NAMESPACE", "SLA_SOURCE", "SlaFiring", "alert_event", "alert_id", "timer_changes"]
