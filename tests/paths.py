"""Where the tests find the checkout, and its example configuration as git has it.

The repository's example configuration (``conf.d/``) as git has it, copied for a test.

The README has a newcomer run ``postbackd customer add ... -c conf.d`` in the checkout, and an
operator may edit the example to try things: tests must not see either. `example_conf` copies
the files git tracks under ``conf.d/`` with their content in git's index (what is committed,
plus what a developer changing the example has staged), so an untracked file or an unstaged
edit in the working tree cannot change a test's result. Outside a git checkout (an unpacked
sdist) it copies the directory as it is.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = "conf.d"


def example_conf(tmp_path: Path) -> Path:
    """``tmp_path/conf.d``: a copy of the example configuration; returns its path."""
    dest = tmp_path / EXAMPLE
    try:
        listed = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--", EXAMPLE],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except OSError:  # no git
        listed = None
    if listed is None or listed.returncode != 0 or not listed.stdout:
        shutil.copytree(REPO / EXAMPLE, dest)
        return dest
    subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "checkout-index",
            "-z",
            "--stdin",
            f"--prefix={tmp_path.resolve()}/",
        ],
        input=listed.stdout,
        capture_output=True,
        timeout=30,
        check=True,
    )
    return dest
