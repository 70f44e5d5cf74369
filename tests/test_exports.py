"""The public surface is small, explicit and sorted (httpx tests/test_exported_members.py)."""

from __future__ import annotations

import mirror


def test_all_is_sorted_and_complete() -> None:
    assert mirror.__all__ == sorted(mirror.__all__)
    public = {name for name in dir(mirror) if not name.startswith("_")}
    # Submodules imported as a side effect are not part of the API.
    public -= {"sources", "emulator", "submit", "upload"}
    assert public == set(mirror.__all__)


def test_library_call_is_a_coroutine_function() -> None:
    import inspect

    assert inspect.iscoroutinefunction(mirror.run)


def test_every_event_the_engine_emits_is_exported() -> None:
    # The engine emits warnings as events; a consumer of Mirror.events() must be able
    # to name their type without reaching into a private module.
    assert mirror.WarningEvent.__name__ == "WarningEvent"
    event = mirror.WarningEvent(message="m")
    assert isinstance(event, mirror.Event)
    assert event.kind == "warning"
    from mirror._models import Warning_

    assert Warning_ is mirror.WarningEvent


def test_error_tree_has_no_dead_fields() -> None:
    import mirror._exceptions as errors

    classes = [c for c in vars(errors).values() if isinstance(c, type)]
    assert all("reference" not in vars(c) for c in classes if issubclass(c, mirror.MirrorError))


def test_every_group_of_the_tuning_is_exported() -> None:
    # A caller tuning one knob builds its group: every group's type must be nameable.
    import dataclasses

    for f in dataclasses.fields(mirror.Tuning):
        kind = type(getattr(mirror.Tuning(), f.name) or mirror.Timeouts())
        assert getattr(mirror, kind.__name__) is kind, f.name
