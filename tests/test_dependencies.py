"""Every runtime dependency declared in pyproject.toml is imported by the package."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Distribution name → the module it installs, where the two differ.
MODULES = {"pyyaml": "yaml"}


def _imported_modules() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "mirror").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_every_declared_dependency_is_used() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0] for dep in project["dependencies"]]
    imported = _imported_modules()
    unused = [name for name in declared if MODULES.get(name.lower(), name) not in imported]
    assert unused == []
