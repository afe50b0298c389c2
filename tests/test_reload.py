"""A reload waits until the configuration files have settled: one saved in place a moment ago
may be half-written (truncated, not yet written again)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from postbackd import reload
from postbackd.reload import files_settled


async def test_a_reload_waits_for_a_file_changed_a_moment_ago(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reload, "SETTLE", 1.0)
    (tmp_path / "old.toml").write_text("[daemon]\n")
    await asyncio.sleep(1.05)
    began = time.monotonic()
    await files_settled(tmp_path)
    assert time.monotonic() - began < 0.5  # nothing changed lately: at once

    (tmp_path / "acme.toml").write_text("")  # truncated by its writer, not yet written
    began = time.monotonic()
    await files_settled(tmp_path)
    assert time.monotonic() - began >= 0.9  # until a second has passed since


async def test_a_file_rewritten_again_and_again_delays_a_reload_only_so_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reload, "SETTLE_MOST", 0.5)
    acme = tmp_path / "acme.toml"
    acme.write_text("")

    async def rewritten() -> None:
        for n in range(40):
            acme.write_text(f"# {n}\n")
            await asyncio.sleep(0.05)

    writer = asyncio.create_task(rewritten())
    began = time.monotonic()
    await files_settled(tmp_path)
    assert time.monotonic() - began < 0.5 + reload.SETTLE
    writer.cancel()


async def test_only_configuration_files_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "draft.toml.tmp").write_text("")  # ignored by the loader: ignored here
    (tmp_path / ".hidden.toml").write_text("")
    monkeypatch.setattr(reload, "SETTLE", 1.0)
    began = time.monotonic()
    await files_settled(tmp_path)
    assert time.monotonic() - began < 0.5
