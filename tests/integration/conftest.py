"""Integration tests share the broker fixtures of ``tests/conftest.py`` (one broker per run,
also used by the fault tier in ``tests/fault``)."""
