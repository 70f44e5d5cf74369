"""Where each client's virtual environment is (see README.md beside this file)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under this directory ``clients`` (a conftest's ``pytestmark`` is not)."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.clients)


def client_bin(name: str, executable: str) -> Path:
    """``executable`` of client ``name``, installed by ``tests/clients/install.sh``."""
    path = ROOT / ".venv-clients" / name / "bin" / executable
    if not path.exists():
        pytest.fail(f"{path} is missing: run bash tests/clients/install.sh first")
    return path
