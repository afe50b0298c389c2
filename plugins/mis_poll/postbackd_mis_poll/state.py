"""The cursor on disk: ``{"cursor": ..., "acked": ...}``, replaced atomically.

Written only after every event up to the cursor was stored by postbackd, so a crash at any
point at worst fetches a page again (its events are then duplicates, recognised by id).
``acked`` false means the MIS has not yet been told; the source tells it before polling on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PollState:
    cursor: str | None = None
    acked: bool = True


def read_state(path: Path) -> PollState:
    """The saved state; a missing file is a first start (from the beginning)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return PollState()
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{path}: cannot read the poll cursor ({exc}); fix or remove the file "
            "(removing it polls the MIS from the beginning; duplicates are dropped by id)"
        ) from exc
    cursor = raw.get("cursor") if isinstance(raw, dict) else None
    return PollState(None if cursor is None else str(cursor), bool(raw.get("acked", True)))


def write_state(path: Path, state: PollState) -> None:
    """Write to a temporary file, fsync, rename over the old one, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump({"cursor": state.cursor, "acked": state.acked}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
