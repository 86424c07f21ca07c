"""Test support code that is not a test: generated fixtures and references run in subprocesses."""
