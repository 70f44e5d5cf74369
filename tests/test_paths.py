"""Server-given names: refused when unsafe, never rewritten into something else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mirror._exceptions import UnsafePathError
from mirror._paths import (
    NAME_MAX,
    join_under,
    name_from_path,
    name_from_url,
    part_path,
    safe_name,
)


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "/etc/passwd", "a/b", "a\\b", "x\x00y", "x\ny", "f.part"]
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_name(name)


@pytest.mark.parametrize("name", ["ERR164407_1.fastq.gz", "a b.txt", "..hidden", "x..y"])
def test_plain_names_pass(name: str) -> None:
    assert safe_name(name) == name


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (
            "ftp.sra.ebi.ac.uk/vol1/fastq/ERR164/007/ERR164407/ERR164407_1.fastq.gz",
            "ERR164407_1.fastq.gz",
        ),
        ("https://host/analyses/MGYA1/file/a%20b.tsv?format=json", "a b.tsv"),
        ("http://h/x/..%2F..%2Fevil", None),
        ("http://h/dir/", None),
    ],
)
def test_name_from_url(url: str, name: str | None) -> None:
    if name is None:
        with pytest.raises(UnsafePathError):
            name_from_url(url)
    else:
        assert name_from_url(url) == name


def test_join_under_refuses_escape(tmp_path: Path) -> None:
    assert join_under(tmp_path, "ena/ERR1/x.gz") == tmp_path / "ena" / "ERR1" / "x.gz"
    with pytest.raises(UnsafePathError):
        join_under(tmp_path, "ena/../../x")


def test_part_path_is_beside_the_file(tmp_path: Path) -> None:
    assert part_path(tmp_path / "x.gz") == tmp_path / "x.gz.part"


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("ftp.sra.ebi.ac.uk/vol1/run/ERR325/ERR3256745/27604_8#1.cram", "27604_8#1.cram"),
        # A path is not a URL: nothing in it is an escape, a query or a fragment.
        ("ftp.sra.ebi.ac.uk/vol1/run/x/a%20b?c.fq", "a%20b?c.fq"),
        ("ftp.sra.ebi.ac.uk/vol1/err/ERR251/001/ERR2512031", "ERR2512031"),
        ("ftp.sra.ebi.ac.uk/vol1/run/x/", None),
        ("ftp.sra.ebi.ac.uk/vol1/run/x/..", None),
    ],
)
def test_name_from_path_keeps_the_literal_name(path: str, name: str | None) -> None:
    if name is None:
        with pytest.raises(UnsafePathError):
            name_from_path(path)
    else:
        assert name_from_path(path) == name


@pytest.mark.parametrize("length", [NAME_MAX - 16, NAME_MAX - 15, NAME_MAX - 2, NAME_MAX])
def test_a_partial_name_stays_within_the_file_name_limit(tmp_path: Path, length: int) -> None:
    name = "R" * (length - len(".fastq.gz")) + ".fastq.gz"
    part = part_path(tmp_path / name)
    assert part.parent == tmp_path
    # Room for the sidecar of a segmented download and its own temporary file, too.
    assert len(os.fsencode(part.name + ".slices.tmp")) <= NAME_MAX
    for path in (tmp_path / name, part, part.with_name(part.name + ".slices.tmp")):
        path.write_bytes(b"")
    if length + len(".part.slices.tmp") <= NAME_MAX:
        assert part.name == name + ".part"
        return
    # Shortened: another long name sharing its first bytes gets another partial
    # file, and no name a server could give (none ends in .part) has a partial name
    # that is this one.
    assert part_path(tmp_path / (name[:-1] + "x")) != part
    with pytest.raises(UnsafePathError):
        safe_name(part.name.removesuffix(".part"))


def test_a_multibyte_name_is_shortened_by_bytes_not_characters(tmp_path: Path) -> None:
    name = "é" * 120 + ".fq"  # 243 bytes
    part = part_path(tmp_path / name)
    assert len(os.fsencode(part.name + ".slices.tmp")) <= NAME_MAX
    part.with_name(part.name + ".slices.tmp").write_bytes(b"")
