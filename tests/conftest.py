"""Shared test helpers, imported by the test files as `from conftest import ...` (tests/ has no
__init__.py, so pytest puts tests/ on sys.path and this module is importable as `conftest`).

- where things are: the repository, examples/, and the acceptance corpus in ../shared/specs
  (NETC_SHARED moves ../shared; the `shared_specs` fixture skips a test when it is absent).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE_SPECS = sorted(EXAMPLES.rglob("*.net"))
SHARED_SPECS = Path(os.environ.get("NETC_SHARED", ROOT.parent / "shared")) / "specs"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # numpy_reference


# ---- the acceptance corpus ------------------------------------------------------------------


def shared_expected() -> dict:
    path = SHARED_SPECS / "expected.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def shared_specs() -> Path:
    if not (SHARED_SPECS / "expected.json").exists():
        pytest.skip("../shared/specs is not present")
    return SHARED_SPECS
