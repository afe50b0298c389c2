"""The README's first steps, as a newcomer follows them word for word."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.paths import example_conf

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def first_command() -> str:
    match = re.search(r"```sh\n(.*?)\n```", README, re.S)
    assert match is not None
    return match.group(1)


def test_the_first_command_installs_what_the_readme_runs_later() -> None:
    """`python -m aiosmtpd ...` (to see the example's mails) works after the first command."""
    extras_match = re.search(r"pip install -e '\.\[([^\]]*)\]'", first_command())
    assert extras_match is not None
    extras = PYPROJECT["project"]["optional-dependencies"]
    installed = [
        requirement
        for name in extras_match.group(1).split(",")
        for requirement in extras[name.strip()]
    ]
    assert "python -m aiosmtpd -n -l 127.0.0.1:1025" in README
    assert any(re.match(r"aiosmtpd\b", requirement) for requirement in installed)


def test_the_virtualenv_is_activated_before_a_bare_postbackd() -> None:
    """The first command uses .venv/bin/postbackd; the README says once, right after it, that
    the later, bare `postbackd` commands need the virtualenv activated."""
    after_first = README[README.index(first_command()) :]
    note = after_first.index(". .venv/bin/activate")
    bare = re.search(r"^(?:\$ )?postbackd ", after_first, re.M)
    assert bare is not None and note < bare.start()
    assert "activate" not in README[: README.index(first_command())]


def test_the_example_configuration_points_only_to_files_in_the_repository(tmp_path: Path) -> None:
    example = example_conf(tmp_path)
    for path in sorted(example.rglob("*.toml")):
        text = path.read_text()
        assert "DESIGN" not in text, path
        for reference in re.findall(r"[\w./-]+\.md\b", text):
            assert (REPO / reference).is_file(), f"{path.name} names {reference}"
