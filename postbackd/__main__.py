"""`python -m postbackd`."""

from postbackd.cli import main

raise SystemExit(main())
