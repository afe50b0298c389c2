"""The benchmark harness: ``python bench/run.py [--quick] [--scenario NAME]``.

See docs/performance.md.
"""
