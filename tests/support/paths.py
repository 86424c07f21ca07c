"""Where things are, for the tests: the project root, the tests folder, shared test data."""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
DATA = TESTS / "data"
PACKAGE = ROOT / "tritonkit"
