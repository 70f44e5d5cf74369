"""The error tree: task-group errors turned back into the one error they stand for, the
class that decides whether an error is retried, and the one retry loop."""

from __future__ import annotations

import asyncio

import pytest

from mirror._exceptions import (
    ChecksumMismatch,
    ClientError,
    ConnectionFailed,
    CredentialsError,
    DestinationError,
    Fatal,
    HostDown,
    HTTPStatusError,
    IncompleteDownload,
    ManifestError,
    MirrorError,
    NotConnected,
    RateLimited,
    RedirectLoop,
    RemoteFileChanged,
    RequestRefused,
    Retryable,
    ServerError,
    SourceError,
    StateError,
    StateUrlError,
    UnexpectedAnswer,
    UntrustedCertificate,
    collapsed,
    expected_errors,
)
from mirror._retry import Retry, Retrying, RetryPolicy


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


# --- the class decides: status or failure -> class -> retried or not -----------------------


def _status(status: int) -> MirrorError:
    return HTTPStatusError(status, f"https://h.example/x: HTTP {status}", url="https://h.example/x")


@pytest.mark.parametrize(
    ("error", "kind", "retried"),
    [
        pytest.param(_status(400), RequestRefused, False, id="400"),
        pytest.param(_status(401), RequestRefused, False, id="401"),
        pytest.param(_status(403), RequestRefused, False, id="403"),
        pytest.param(_status(404), RequestRefused, False, id="404"),
        pytest.param(_status(410), RequestRefused, False, id="410"),
        pytest.param(_status(408), ServerError, True, id="408"),
        pytest.param(_status(429), RateLimited, True, id="429"),
        pytest.param(_status(500), ServerError, True, id="500"),
        pytest.param(_status(502), ServerError, True, id="502"),
        pytest.param(_status(503), RateLimited, True, id="503"),
        pytest.param(_status(504), ServerError, True, id="504"),
        pytest.param(_status(304), HTTPStatusError, False, id="304"),
        pytest.param(ConnectionFailed("reset", url="u"), ConnectionFailed, True, id="reset"),
        pytest.param(NotConnected("refused", url="u"), NotConnected, True, id="refused"),
        pytest.param(UnexpectedAnswer("an HTML page"), UnexpectedAnswer, True, id="html"),
        pytest.param(IncompleteDownload("short"), IncompleteDownload, True, id="short"),
        pytest.param(ChecksumMismatch("md5"), ChecksumMismatch, True, id="md5"),
        pytest.param(RemoteFileChanged("changed"), RemoteFileChanged, True, id="changed"),
        pytest.param(HostDown("down", host="h", outage="h: down"), HostDown, False, id="down"),
        pytest.param(UntrustedCertificate("cert"), UntrustedCertificate, False, id="cert"),
        pytest.param(RedirectLoop("loop"), RedirectLoop, False, id="loop"),
        pytest.param(SourceError("bad answer"), SourceError, False, id="source"),
        pytest.param(CredentialsError("refused"), CredentialsError, False, id="credentials"),
        pytest.param(DestinationError("full", path="p"), DestinationError, False, id="disk"),
        pytest.param(StateError("store"), StateError, False, id="store"),
    ],
)
async def test_the_class_decides_whether_an_error_is_retried(
    error: MirrorError, kind: type[MirrorError], retried: bool
) -> None:
    assert type(error) is kind
    assert isinstance(error, Retryable) is retried
    assert error.retryable is retried
    if isinstance(error, HTTPStatusError):
        assert isinstance(error, ClientError) is (400 <= error.status < 500 and not retried)
    calls: list[MirrorError | None] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def once(previous: MirrorError | None) -> str:
        calls.append(previous)
        if len(calls) == 1:
            raise error
        return "done"

    policy = RetryPolicy(attempts=3, base=0.0)
    if retried:
        assert await Retrying("x", policy, sleep=sleep).call(once) == "done"
        assert calls == [None, error]
        assert len(slept) == 1
    else:
        with pytest.raises(type(error)) as caught:
            await Retrying("x", policy, sleep=sleep).call(once)
        assert caught.value is error
        assert (calls, slept) == ([None], [])


def test_fatal_errors_stop_the_run() -> None:
    assert isinstance(DestinationError("full", path="p"), Fatal)
    assert isinstance(StateError("locked"), Fatal)
    assert isinstance(StateUrlError("bad url"), Fatal)
    assert not isinstance(SourceError("x"), Fatal)


def test_errors_name_what_they_concern_and_what_to_do() -> None:
    limited = HTTPStatusError(429, "slow down", url="https://ftp.example.org:8443/a")
    assert isinstance(limited, RateLimited)
    assert limited.retry_after is None
    assert limited.url == "https://ftp.example.org:8443/a"
    assert limited.hint == "lower hosts.ftp.example.org:8443.rate (or connections) in the manifest"
    assert "SSL_CERT_FILE" in UntrustedCertificate("x", url="https://h/").hint
    assert DestinationError("full", path="/d/a.part").path == "/d/a.part"
    assert "free some space" in DestinationError("full").hint
    assert HostDown("d", host="ftp.example", outage="o").hint.startswith("check that ftp.example")
    assert ManifestError("bad", file="m.yaml", line=3).path == "m.yaml"
    assert SourceError("x", hint="do this").hint == "do this"
    assert SourceError("x").hint == ""


# --- the one loop ------------------------------------------------------------------------


class _Sleeps:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_retry_after_is_a_floor_and_the_budget_ends_the_loop() -> None:
    sleep = _Sleeps()
    limited = RateLimited(429, "slow down", url="u", retry_after=7.0)

    async def once(_previous: MirrorError | None) -> None:
        raise limited

    policy = RetryPolicy(attempts=3, base=0.01, cap=0.01)
    with pytest.raises(RateLimited):
        await Retrying("x", policy, sleep=sleep).call(once)
    assert sleep.slept == [7.0, 7.0]


async def test_uncounted_attempts_and_caps_and_giving_up() -> None:
    sleep = _Sleeps()
    errors: list[MirrorError] = [
        NotConnected("paused", url="u"),
        ChecksumMismatch("md5 1"),
        NotConnected("paused", url="u"),
        ChecksumMismatch("md5 2"),
    ]
    told: list[Retry] = []

    async def once(_previous: MirrorError | None) -> None:
        raise errors.pop(0)

    def gave_up(error: MirrorError, attempts: int) -> SourceError:
        return SourceError(f"gave up after {attempts}: {error}")

    with pytest.raises(SourceError, match=r"^gave up after 2: md5 2$"):
        await Retrying(
            "x",
            RetryPolicy(attempts=10, base=0.0),
            sleep=sleep,
            uncounted=lambda e: isinstance(e, NotConnected),
            caps={ChecksumMismatch: 2},
            on_retry=told.append,
            gave_up=gave_up,
        ).call(once)
    # The paused host's failures did not count, nor wait; the second mismatch ended it.
    assert [(r.attempt, r.counted) for r in told] == [(0, False), (1, True), (1, False)]
    assert sleep.slept == [0.0]


async def test_anything_but_our_errors_leaves_the_loop_at_once() -> None:
    sleep = _Sleeps()

    async def once(_previous: MirrorError | None) -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await Retrying("x", RetryPolicy(), sleep=sleep).call(once)
    assert sleep.slept == []
