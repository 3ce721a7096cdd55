"""Load tests: ``python -m loadtest`` (peers side by side), ``python -m loadtest.sendpaths``."""
