"""Task-group errors turned back into the one error they stand for, and nothing else."""

from __future__ import annotations

import asyncio

import pytest

from mirror._exceptions import (
    CredentialsError,
    MirrorError,
    SourceError,
    collapsed,
    expected_errors,
)


async def fail(exc: BaseException) -> None:
    await asyncio.sleep(0)
    raise exc


async def group_of(*errors: BaseException) -> None:
    async with asyncio.TaskGroup() as tg:
        for error in errors:
            tg.create_task(fail(error))


async def test_a_group_of_mirror_errors_leaves_as_one_usage_error_first() -> None:
    source, refused = SourceError("MGnify: 400"), CredentialsError("Webin refused the account")
    with pytest.raises(MirrorError) as caught, collapsed():
        await group_of(source, refused)
    assert caught.value is refused
    assert caught.value.__notes__ == ["MGnify: 400"]


async def test_anything_else_leaves_unchanged() -> None:
    with pytest.raises(ExceptionGroup) as caught, collapsed():
        await group_of(SourceError("x"), ValueError("a bug"))
    assert expected_errors(caught.value) is None


async def test_an_interrupt_is_never_swallowed() -> None:
    group = BaseExceptionGroup("g", [SourceError("x"), KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt), collapsed():
        raise group
    with pytest.raises(asyncio.CancelledError), collapsed():
        raise BaseExceptionGroup("g", [asyncio.CancelledError()])


def test_expected_errors_flattens_nested_groups() -> None:
    a, b = SourceError("a"), SourceError("b")
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [a]), b])
    assert expected_errors(nested) == [a, b]
    assert expected_errors(a) == [a]
    assert expected_errors(ValueError()) is None
