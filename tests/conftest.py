"""Shared test helpers: the acceptance corpus in ../shared/specs, skipped when absent."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_SPECS = Path(os.environ.get("NETC_SHARED", ROOT.parent / "shared")) / "specs"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # numpy_reference


def shared_expected() -> dict:
    path = SHARED_SPECS / "expected.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def shared_specs() -> Path:
    if not (SHARED_SPECS / "expected.json").exists():
        pytest.skip("../shared/specs is not present")
    return SHARED_SPECS
