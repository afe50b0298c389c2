"""Results: one JSON file per scenario, and the table row printed for it."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Check:
    """A target from the issue, and whether this run met it."""

    name: str
    value: float
    target: float
    higher_is_better: bool
    unit: str = ""

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def describe(self) -> str:
        op = "≥" if self.higher_is_better else "≤"
        mark = "ok" if self.met else "MISSED"
        target = f"{op} {_num(self.target)}{self.unit}"
        return f"{self.name} {_num(self.value)}{self.unit} ({target}: {mark})"


@dataclass
class Result:
    scenario: str
    headline: str
    figures: dict[str, Any]
    settings: dict[str, Any]
    expected: int
    lost: int
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0  # how long the scenario took, set by the runner
    load_before: tuple[float, ...] = ()  # the machine's load average (1, 5, 15 min) around it
    load_after: tuple[float, ...] = ()

    @property
    def nothing_lost(self) -> bool:
        return self.lost == 0

    def row(self) -> str:
        checks = "; ".join(check.describe() for check in self.checks)
        lost = "nothing lost" if self.nothing_lost else f"LOST {self.lost} of {self.expected}"
        row = f"{self.scenario:<11} {self.headline}  [{lost}]" + (f"  {checks}" if checks else "")
        return f"{row}  ({self.seconds:.0f} s)"

    def write(self, directory: Path, machine: dict[str, Any], run: dict[str, Any]) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.scenario}.json"
        document = {
            "scenario": self.scenario,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "run": run,
            "machine": machine,
            "settings": self.settings,
            "figures": self.figures,
            "expected": self.expected,
            "lost": self.lost,
            "nothing_lost": self.nothing_lost,
            "targets": [{**asdict(check), "met": check.met} for check in self.checks],
            "headline": self.headline,
            "seconds": self.seconds,
            "load_average": {"before": self.load_before, "after": self.load_after},
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank]


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _num(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
