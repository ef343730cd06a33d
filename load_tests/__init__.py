"""Load tests: benchmark scenarios run by hand against a real `gateway serve` process on loopback.

Not part of the pytest suite. Each scenario is a module runnable with `python -m load_tests.<name>`;
see load_tests/README.md.
"""
