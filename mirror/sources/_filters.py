"""What MGnify's filters (``groups:``, ``formats:``, ``labels:``) matched, told to the user."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from .._exceptions import EmptyEntry

__all__ = ["report_filters"]


def report_filters(
    filters: Iterable[tuple[str, Sequence[str]]],
    seen: Mapping[str, set[str]],
    *,
    listed: int,
    planned: int,
    asked: str,
    warn: Callable[[str], None],
) -> None:
    """Name filter values no download carries; fail the entry if it planned nothing.

    A typo in ``formats:`` or ``groups:`` otherwise looks like an empty study: the
    values that do exist are listed so the user can correct it. ``seen`` holds, per
    filter, the values the listed downloads carried.
    """
    unmatched: list[str] = []
    for key, wanted in filters:
        present = {v.casefold() for v in seen[key]}
        missing = [v for v in wanted if v.casefold() not in present]
        if missing and listed:
            have = ", ".join(sorted(seen[key], key=str.casefold)) or "none"
            unmatched.append(
                f"{key} {', '.join(repr(v) for v in missing)} matched no download "
                f"(the {key} listed: {have})"
            )
    if planned:
        for line in unmatched:
            warn(f"MGnify: {line}")
        return
    if not listed:
        raise EmptyEntry(f"nothing to download: {asked} listed no downloads")
    why = "; ".join(unmatched) or "no download passes the filters"
    raise EmptyEntry(f"nothing to download: {listed} downloads of {asked} listed, none kept: {why}")
