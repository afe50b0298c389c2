"""Where the tests find the checkout: its example configuration and scripts."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONF = REPO / "conf.d"
