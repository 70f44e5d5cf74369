"""Range and resume decisions, table-tested (the shape of pip's test_network_download)."""

from __future__ import annotations

import pytest

from mirror._fetch import PartRecord, RangeAction, decide, parse_content_range, resume_headers
from mirror._models import FileTask


@pytest.mark.parametrize(
    ("status", "offset", "content_range", "size", "expected"),
    [
        pytest.param(206, 100, "bytes 100-999/1000", 1000, RangeAction.APPEND, id="206-resume"),
        pytest.param(206, 100, "bytes 0-999/1000", 1000, RangeAction.CHANGED, id="206-wrong-start"),
        pytest.param(206, 100, "bytes 100-1999/2000", 1000, RangeAction.CHANGED, id="206-new-size"),
        pytest.param(206, 100, "bytes 100-999/*", 1000, RangeAction.APPEND, id="206-unknown-total"),
        pytest.param(206, 100, None, 1000, RangeAction.CHANGED, id="206-no-content-range"),
        pytest.param(200, 100, None, 1000, RangeAction.RESTART, id="200-ignores-range"),
        pytest.param(200, 0, None, 1000, RangeAction.RESTART, id="200-fresh"),
        pytest.param(416, 1000, "bytes */1000", 1000, RangeAction.COMPLETE, id="416-complete"),
        pytest.param(416, 1000, "bytes */1000", None, RangeAction.COMPLETE, id="416-no-plan"),
        pytest.param(416, 1500, "bytes */1000", 1500, RangeAction.CHANGED, id="416-shrank"),
        pytest.param(416, 1000, None, 1000, RangeAction.CHANGED, id="416-no-header"),
    ],
)
def test_decide(
    status: int, offset: int, content_range: str | None, size: int | None, expected: RangeAction
) -> None:
    assert decide(status, offset, content_range, size) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/100", (0, 99, 100)),
        ("bytes 5-9/*", (5, 9, None)),
        ("bytes */1234", (None, None, 1234)),
        ("items 0-1/2", (None, None, None)),
        (None, (None, None, None)),
        ("", (None, None, None)),
    ],
)
def test_parse_content_range(
    value: str | None, expected: tuple[int | None, int | None, int | None]
) -> None:
    assert parse_content_range(value) == expected


def test_resume_headers_fresh_download_sends_no_range() -> None:
    assert resume_headers(0, '"etag"') == {}


def test_resume_headers_with_validator() -> None:
    assert resume_headers(4096, '"abc"') == {"Range": "bytes=4096-", "If-Range": '"abc"'}


def test_resume_headers_without_validator() -> None:
    assert resume_headers(10, None) == {"Range": "bytes=10-"}


def _task(checksum: str | None, size: int | None) -> FileTask:
    return FileTask(
        source="ena", accession="E", url="http://h/x", path="x", size=size, checksum=checksum
    )


@pytest.mark.parametrize(
    ("started", "now", "same"),
    [
        pytest.param(("ab" * 16, 1000), ("AB" * 16, 1000), True, id="same-md5-any-case"),
        pytest.param(("ab" * 16, 1000), ("cd" * 16, 1000), False, id="new-md5-same-size"),
        pytest.param(("ab" * 16, 1000), ("ab" * 16, 1200), False, id="new-size"),
        pytest.param((None, None), (None, None), True, id="unsized-unchecked"),
        pytest.param((None, None), ("ab" * 16, None), False, id="checksum-appeared"),
    ],
)
def test_part_record_names_the_file_a_part_was_started_for(
    started: tuple[str | None, int | None], now: tuple[str | None, int | None], same: bool
) -> None:
    record = PartRecord.loads(PartRecord.of(_task(*started), '"etag"').dumps())
    assert record is not None
    assert record.validator == '"etag"'
    assert record.same_file(_task(*now)) is same


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        '"etag-1"',
        "Mon, 01 Jan 2024 00:00:00 GMT",
        "[1, 2]",
        '{"checksum": 5, "size": 1, "etag": null}',
    ],
)
def test_anything_but_a_record_is_no_record(stored: str | None) -> None:
    # An older store's bare ETag says nothing of the checksum: the .part starts again.
    assert PartRecord.loads(stored) is None
