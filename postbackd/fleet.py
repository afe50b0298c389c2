"""What the nodes' heartbeats tell an operator: who is live, and whether they run one configuration.

`GET /v1/config` and the UI overview both show it. Nodes of one fleet are meant to load the
same ``conf.d/``; while a deployment rolls out they may not, and postbackd copes (a delivery is
left to the nodes that know its trigger), but an operator should see it and finish the rollout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from postbackd.plugin import SpoolUnavailable
from postbackd.spool import NodeBeat, Spool


@dataclass(frozen=True)
class FleetStatus:
    """The live nodes, by name, and a warning when their configurations differ (else None)."""

    nodes: tuple[NodeBeat, ...]
    warning: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [node.to_dict() for node in self.nodes], "nodes_warning": self.warning}


def skew_warning(nodes: tuple[NodeBeat, ...]) -> str | None:
    """A sentence naming each configuration and its nodes, when there is more than one."""
    by_fingerprint: dict[str, list[str]] = {}
    for node in nodes:
        by_fingerprint.setdefault(node.fingerprint, []).append(node.node)
    if len(by_fingerprint) < 2:
        return None
    groups = "; ".join(
        f"{fingerprint}: {', '.join(names)}"
        for fingerprint, names in sorted(by_fingerprint.items())
    )
    return (
        f"the live nodes run {len(by_fingerprint)} different configurations ({groups}). "
        "Deliveries of a trigger some nodes lack are left to the nodes that have it, never "
        "cancelled; deploy the same conf.d/ to every node and reload them."
    )


async def fleet_status(spool: Spool) -> FleetStatus:
    """Read the heartbeats; while the spool cannot be reached, say so instead."""
    try:
        nodes = tuple(await spool.live_nodes())
    except SpoolUnavailable as exc:
        return FleetStatus((), f"live nodes unknown: {exc}")
    return FleetStatus(nodes, skew_warning(nodes))
