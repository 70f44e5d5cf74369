"""What to send of a file, the files a document names, where ``--to`` puts them: pure
decisions, no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirror._cli_upload import area_path
from mirror._exceptions import ManifestError
from mirror.upload import FileRef, Record, document_files, md5_text
from mirror.upload._decide import LocalFile, decide

LOCAL = LocalFile(path="/d/x.bam", size=1000, mtime_ns=5)


def rec(
    status: str = "partial", *, size: int = 1000, mtime: int = 5, md5: str | None = None
) -> Record:
    return Record(
        local="/d/x.bam",
        size=size,
        mtime_ns=mtime,
        md5=md5,
        status="done" if status == "done" else "partial",
    )


@pytest.mark.parametrize(
    ("remote", "record", "action", "offset"),
    [
        pytest.param(None, None, "restart", 0, id="nothing-remote"),
        pytest.param(None, rec("done", md5="a" * 32), "restart", 0, id="removed-from-area"),
        pytest.param(400, rec(), "resume", 400, id="partial-resumes"),
        pytest.param(0, rec(), "resume", 0, id="partial-empty"),
        pytest.param(1000, rec(), "resume", 1000, id="partial-all-bytes-md5-missing"),
        pytest.param(1200, rec(), "restart", 0, id="remote-larger"),
        pytest.param(400, rec(mtime=6), "restart", 0, id="local-changed-mtime"),
        pytest.param(400, rec(size=999), "restart", 0, id="local-changed-size"),
        pytest.param(1000, rec("done", md5="a" * 32), "skip", 0, id="done"),
        pytest.param(600, rec("done", md5="a" * 32), "resume", 600, id="done-but-cut-since"),
        pytest.param(1000, None, "compare", 0, id="same-size-other-sender"),
        pytest.param(400, None, "restart", 0, id="partial-other-sender"),
    ],
)
def test_decide(remote: int | None, record: Record | None, action: str, offset: int) -> None:
    d = decide(LOCAL, remote, record)
    assert (d.action, d.offset) == (action, offset)


def test_sidecar_is_the_32_lower_case_digits_only() -> None:
    assert md5_text("D41D8CD98F00B204E9800998ECF8427E") == b"d41d8cd98f00b204e9800998ecf8427e"


def test_xml_files_anywhere_in_the_document(tmp_path: Path) -> None:
    doc = tmp_path / "run.xml"
    doc.write_text(
        "<WEBIN><RUN_SET><RUN alias='r'><DATA_BLOCK><FILES>"
        "<FILE filename='a/x_1.fq.gz' filetype='fastq' checksum_method='MD5' "
        "checksum='ABCDEF0123456789abcdef0123456789'/>"
        "<FILE filename='a/x_2.fq.gz' filetype='fastq' checksum='0123'/>"
        "</FILES></DATA_BLOCK></RUN></RUN_SET>"
        "<ANALYSIS_SET><ANALYSIS alias='z'><FILES><FILE filename='v.vcf.gz' "
        "checksum_method='SHA-256' checksum='ff'/></FILES></ANALYSIS></ANALYSIS_SET></WEBIN>"
    )
    assert document_files(doc) == [
        FileRef(filename="a/x_1.fq.gz", checksum="abcdef0123456789abcdef0123456789"),
        FileRef(filename="a/x_2.fq.gz", checksum="0123"),
        FileRef(filename="v.vcf.gz", checksum="ff", method="SHA-256"),
    ]


def test_json_files_by_file_name_and_checksum(tmp_path: Path) -> None:
    doc = tmp_path / "run.json"
    doc.write_text(
        json.dumps(
            {
                "runs": [
                    {
                        "alias": "r",
                        "files": [
                            {"fileName": "x_1.fq.gz", "checksum": "AA", "fileType": "fastq"},
                            {"filename": "x_2.fq.gz", "checksumMethod": "md5", "checksum": "bb"},
                        ],
                    }
                ],
                "samples": [{"alias": "s", "title": "no files here"}],
            }
        )
    )
    assert document_files(doc) == [
        FileRef(filename="x_1.fq.gz", checksum="aa"),
        FileRef(filename="x_2.fq.gz", checksum="bb"),
    ]


def test_documents_without_files_and_unsafe_names(tmp_path: Path) -> None:
    plain = tmp_path / "study.json"
    plain.write_text(json.dumps({"projects": [{"alias": "p"}]}))
    assert document_files(plain) == []
    for name, text in (("broken.xml", "<WEBIN><FILE"), ("broken.json", '{"runs": [')):
        (tmp_path / name).write_text(text)
        assert document_files(tmp_path / name) == []  # Webin's receipt will say why
    bad = tmp_path / "bad.xml"
    bad.write_text("<WEBIN><FILE filename='../etc/passwd' checksum='1'/></WEBIN>")
    with pytest.raises(ManifestError, match="not a path inside the upload area"):
        document_files(bad)


@pytest.mark.parametrize(
    ("directory", "remote"),
    [(None, "f.gz"), ("a", "a/f.gz"), ("a/b/", "a/b/f.gz"), ("./a//b", "a/b/f.gz")],
)
def test_to_directory(directory: str | None, remote: str) -> None:
    assert area_path(directory, "f.gz") == remote


@pytest.mark.parametrize("directory", ["/abs", "..", "a/../b", "./", "a\\..\\b"])
def test_to_rejects_escapes(directory: str) -> None:
    with pytest.raises(ManifestError, match="relative"):
        area_path(directory, "f.gz")
