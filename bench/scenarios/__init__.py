"""The scenarios, in the order `bench/run.py` runs them; each returns a `Result`."""
