"""The public surface is small, explicit and sorted (httpx tests/test_exported_members.py)."""

from __future__ import annotations

import mirror


def test_all_is_sorted_and_complete() -> None:
    assert mirror.__all__ == sorted(mirror.__all__)
    public = {name for name in dir(mirror) if not name.startswith("_")}
    # Submodules imported as a side effect are not part of the API.
    public -= {"sources", "emulator"}
    assert public == set(mirror.__all__)


def test_library_call_is_a_coroutine_function() -> None:
    import inspect

    assert inspect.iscoroutinefunction(mirror.run)
