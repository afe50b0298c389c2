"""The subcommands of `postbackd`, one module each (see `postbackd.cli`)."""
