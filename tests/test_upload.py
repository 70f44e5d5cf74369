"""``mirror upload`` and ``mirror submit``'s file checks against a real vsftpd over
explicit FTPS (tests/ftps.py): resume after a cut data connection, re-runs that send
nothing, a refused login, ``--to`` directories, and submissions checked before sending."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mirror._cli import main
from mirror.emulator import Catalog, Emulator, WebinOptions
from tests.ftps import FtpsArea, FtpsFactory

from .test_cli import wait_for
from .threaded import serving

MiB = 1 << 20


def write_file(path: Path, size: int, seed: int = 0) -> str:
    """``size`` bytes that differ block to block (a repeated 1 MiB pattern, each block
    stamped with its index, so a misplaced block changes the MD5); its MD5."""
    pattern = hashlib.shake_256(f"seed-{seed}".encode()).digest(MiB)
    md5 = hashlib.md5()
    with path.open("wb") as f:
        left, index = size, 0
        while left > 0:
            block = (index.to_bytes(8, "big") + pattern[8:])[: min(MiB, left)]
            f.write(block)
            md5.update(block)
            left -= len(block)
            index += 1
    return md5.hexdigest()


def upload(
    ftps: FtpsArea,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    state: Path,
    *args: str,
) -> tuple[int, str, str]:
    """``mirror upload`` in this process: exit code, stdout, stderr."""
    for name, value in ftps.env().items():
        monkeypatch.setenv(name, value)
    code = main(["upload", "--endpoint", ftps.endpoint, "--state", str(state), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def events(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def stors(log: str) -> int:
    return log.count('"STOR ')


@pytest.mark.slow  # a GiB over TLS through the cutting proxy, read and hashed twice: 10-15 s
def test_five_files_big_one_cut_and_resumed_then_rerun_sends_nothing(
    ftps: FtpsArea,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sizes = {"a.fastq.gz": 1000, "b.fastq.gz": 100 * 1024 + 7, "c.bam": 3 * MiB, "e.txt": 0}
    local = tmp_path / "local"
    local.mkdir()
    md5s = {name: write_file(local / name, size, i) for i, (name, size) in enumerate(sizes.items())}
    big = "d.cram"
    sizes[big] = 1 << 30
    md5s[big] = write_file(local / big, sizes[big], 9)
    state = tmp_path / "state" / "uploads.sqlite"
    cut = 600 * MiB
    ftps.cut_upload_after(cut)

    files = [str(local / name) for name in sizes]
    code, out, err = upload(ftps, monkeypatch, capsys, state, "--json", *files)
    assert code == 0, err + out
    for name, size in sizes.items():
        landed = ftps.area / name
        assert landed.stat().st_size == size, name
        assert (ftps.area / f"{name}.md5").read_bytes() == md5s[name].encode()
    assert hashlib.md5((ftps.area / "c.bam").read_bytes()).hexdigest() == md5s["c.bam"]
    evs = events(out)
    starts = [e for e in evs if e["event"] == "file-started" and str(e["path"]).endswith(big)]
    assert starts[0]["offset"] == 0
    assert len(starts) == 2
    assert 0 < int(str(starts[1]["offset"])) <= cut
    verified = {Path(str(e["path"])).name: e for e in evs if e["event"] == "file-verified"}
    assert {n: e["md5"] for n, e in verified.items()} == md5s
    assert evs[-1]["event"] == "run-finished"
    summary = evs[-1]["summary"]
    assert isinstance(summary, dict)
    assert summary["verified"] == 5
    # What the client counts as sent: the bytes that reached the area, each once.
    assert summary["downloaded"] == sum(sizes.values())
    # The big file's data connections (the only ones above 20 MiB): resumed, not resent.
    received = ftps.data_bytes_received()
    assert cut in received
    big_sent = sum(n for n in received if n > 20 * MiB)
    assert big_sent <= 1.15 * sizes[big], received
    log = ftps.log()
    assert "REST " in log

    # A re-run finds every file uploaded: nothing is stored again, no data connection.
    before, connections = stors(log), len(received)
    code, out, err = upload(ftps, monkeypatch, capsys, state, *files)
    assert code == 0, err + out
    assert "5/5 files uploaded" in err
    assert "5 already in the area" in err
    assert stors(ftps.log()) == before
    assert len(ftps.data_bytes_received()) == connections

    # The password is in no output, no state, no log line.
    secret = ftps.password.encode()
    assert ftps.password not in out + err
    assert secret not in state.read_bytes()
    assert ftps.password not in ftps.log()


def test_refused_login_is_exit_2_without_the_password(
    ftps: FtpsArea,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_file(tmp_path / "x.fastq", 5000)
    for name, value in ftps.env().items():
        monkeypatch.setenv(name, value)
    wrong = "not-the-Webin-password-31"
    monkeypatch.setenv("WEBIN_PASSWORD", wrong)
    code = main(
        [
            "upload",
            "--endpoint",
            ftps.endpoint,
            "--state",
            str(tmp_path / "s.sqlite"),
            str(tmp_path / "x.fastq"),
        ]
    )
    err = capsys.readouterr()
    assert code == 2
    assert "refused the login" in err.err
    assert "WEBIN_USERNAME" in err.err
    assert "WEBIN_PASSWORD" in err.err
    assert wrong not in err.err + err.out
    assert "FAIL LOGIN" in ftps.log()
    assert list(ftps.area.iterdir()) == []


def test_to_creates_nested_directories_and_rejects_escapes(
    ftps: FtpsArea,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    md5 = write_file(tmp_path / "r1.fastq.gz", 70_000)
    state = tmp_path / "s.sqlite"
    code, _out, err = upload(
        ftps, monkeypatch, capsys, state, "--to", "study/run1/", str(tmp_path / "r1.fastq.gz")
    )
    assert code == 0, err
    landed = ftps.area / "study" / "run1" / "r1.fastq.gz"
    assert landed.read_bytes() == (tmp_path / "r1.fastq.gz").read_bytes()
    assert (landed.parent / "r1.fastq.gz.md5").read_text() == md5
    for bad in ("../up", "/abs", "a/../../b"):
        code, _, err = upload(ftps, monkeypatch, capsys, state, "--to", bad, str(landed))
        assert code == 2, bad
        assert "--to" in err
        assert "relative" in err


def test_a_file_another_tool_uploaded_is_kept_when_its_md5_file_matches(
    ftps: FtpsArea,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    same, other = tmp_path / "same.fq", tmp_path / "other.fq"
    md5 = write_file(same, 300_000, 1)
    write_file(other, 300_000, 2)
    owner = ftps.area.stat()
    for name, body in (
        ("same.fq", same.read_bytes()),
        ("same.fq.md5", md5.encode()),
        ("other.fq", same.read_bytes()),  # the same size, other bytes
        ("other.fq.md5", md5.encode()),
    ):
        (ftps.area / name).write_bytes(body)
        os.chown(ftps.area / name, owner.st_uid, owner.st_gid)
    code, _, err = upload(ftps, monkeypatch, capsys, tmp_path / "s.sqlite", str(same), str(other))
    assert code == 0, err
    assert "1 already in the area" in err
    assert '"STOR same.fq' not in ftps.log()
    assert (ftps.area / "other.fq").read_bytes() == other.read_bytes()
    assert (ftps.area / "other.fq.md5").read_text() == hashlib.md5(other.read_bytes()).hexdigest()


def test_workers_share_logged_in_connections_under_the_cap_over_tls_1_2(
    ftps_factory: FtpsFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # TLS 1.2 resumes by session id, 1.3 by ticket: vsftpd requires either on data.
    ftps = ftps_factory(max_per_ip=2, tls_max="1.2")
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"f{i}.fq")
        write_file(paths[-1], 20_000 + i, i)
    code, _, err = upload(
        ftps, monkeypatch, capsys, tmp_path / "s.sqlite", "--workers", "2", *map(str, paths)
    )
    assert code == 0, err
    for p in paths:
        assert (ftps.area / p.name).read_bytes() == p.read_bytes()
    log = ftps.log()
    assert '"421 ' not in log  # no session refused: never more than two at once
    assert log.count("OK LOGIN") == 2  # each worker logged in once, for three files


@pytest.mark.slow  # a child process killed mid-upload and a second one resuming: ~4 s
def test_killed_upload_resumes_from_the_area(
    ftps: FtpsArea,
    tmp_path: Path,
) -> None:
    size = 200 * MiB
    md5 = write_file(tmp_path / "big.bam", size)
    env = {
        **os.environ,
        **ftps.env(),
        "MIRROR_UPLOAD_STATE": str(tmp_path / "s.sqlite"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    cmd = [sys.executable, "-m", "mirror", "upload", "-q", "--endpoint", ftps.endpoint]
    child = subprocess.Popen([*cmd, str(tmp_path / "big.bam")], env=env)
    try:
        landed = ftps.area / "big.bam"
        wait_for(lambda: landed.exists() and landed.stat().st_size > 40 * MiB, "40 MiB in the area")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    ftps.wait_for("UPLOAD", 1)  # the killed session has ended
    held = landed.stat().st_size
    assert 0 < held < size
    sent_before = sum(ftps.data_bytes_received())
    done = subprocess.run(
        [*cmd, str(tmp_path / "big.bam")], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert landed.stat().st_size == size
    assert (ftps.area / "big.bam.md5").read_text() == md5
    resent = sum(ftps.data_bytes_received()) - sent_before
    assert resent <= (size - held) * 1.02 + 64 * 1024, (held, resent)
    assert f"REST {held}" in ftps.log()


# -- mirror submit: the files a document names --------------------------------------------


def run_xml(files: dict[str, str]) -> str:
    entries = "".join(
        f'<FILE filename="{name}" filetype="fastq" checksum_method="MD5" checksum="{md5}"/>'
        for name, md5 in files.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><WEBIN>'
        '<SUBMISSION alias="sub-r"><ACTIONS><ACTION><ADD/></ACTION></ACTIONS></SUBMISSION>'
        '<RUN_SET><RUN alias="run-1"><EXPERIMENT_REF refname="exp-1"/>'
        f"<DATA_BLOCK><FILES>{entries}</FILES></DATA_BLOCK></RUN></RUN_SET></WEBIN>"
    )


def submit(
    ftps: FtpsArea,
    emu: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    *args: str,
) -> tuple[int, str, str]:
    # One Webin account for the REST service and the area, as in production: the
    # emulator knows the area's (``webin`` below).
    for name, value in ftps.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MIRROR_UPLOAD_STATE", str(tmp_path / "s.sqlite"))
    code = main(
        [
            "submit",
            "--endpoint",
            emu.endpoints["webin"],
            "--upload-endpoint",
            ftps.endpoint,
            *args,
        ]
    )
    out = capsys.readouterr()
    return code, out.out, out.err


def webin(ftps: FtpsArea, log_path: Path) -> Emulator:
    options = WebinOptions(accounts={ftps.username: ftps.password})
    return Emulator(Catalog(), webin=options, log_path=log_path)


def test_submit_upload_sends_what_is_missing_then_submits(
    ftps: FtpsArea,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docs = tmp_path / "docs"
    (docs / "reads").mkdir(parents=True)
    files = {
        "reads/s1_R1.fastq.gz": write_file(docs / "reads" / "s1_R1.fastq.gz", 300_001, 1),
        "reads/s1_R2.fastq.gz": write_file(docs / "reads" / "s1_R2.fastq.gz", 200_000, 2),
    }
    doc = docs / "run.xml"
    doc.write_text(run_xml(files))
    with serving(webin(ftps, tmp_path / "requests.jsonl")) as served:
        emu = served.value
        # Without --upload: the missing files are named, nothing is submitted.
        code, out, err = submit(ftps, emu, monkeypatch, capsys, tmp_path, str(doc))
        assert code == 1, err + out
        assert "reads/s1_R1.fastq.gz: not in the upload area" in err
        assert "reads/s1_R2.fastq.gz: not in the upload area" in err
        served.wait(emu.wait_idle)  # the log holds a request once its answer has gone
        assert not [e for e in emu.log if "/submit" in e.path]

        code, out, err = submit(ftps, emu, monkeypatch, capsys, tmp_path, "--upload", str(doc))
        assert code == 0, err + out
        for name, md5 in files.items():
            assert (ftps.area / name).read_bytes() == (docs / name).read_bytes()
            assert (ftps.area / f"{name}.md5").read_text() == md5
        served.wait(emu.wait_idle)
        assert [e.method for e in emu.log if "/submit" in e.path] == ["POST"]
        receipt = (docs / "run.receipt.xml").read_text()
        assert 'success="true"' in receipt
    assert ftps.password not in out + err


def test_submit_naming_a_file_not_in_the_area_fails_before_submitting(
    ftps: FtpsArea,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    here = tmp_path / "here.fastq.gz"
    files = {"here.fastq.gz": write_file(here, 4096), "elsewhere/gone.fastq.gz": "0" * 32}
    doc = tmp_path / "run.json"
    doc.write_text(
        json.dumps(
            {
                "submission": {"alias": "s", "actions": [{"type": "ADD"}]},
                "runs": [
                    {
                        "alias": "run-j",
                        "files": [
                            {"fileName": n, "fileType": "fastq", "checksum": c}
                            for n, c in files.items()
                        ],
                    }
                ],
            }
        )
    )
    with serving(webin(ftps, tmp_path / "requests.jsonl")) as served:
        emu = served.value
        code, out, err = submit(ftps, emu, monkeypatch, capsys, tmp_path, "--upload", str(doc))
        assert code == 1, err + out
        assert "elsewhere/gone.fastq.gz: not in the upload area" in err
        assert "nothing was submitted" in err
        assert err.count("nothing was submitted") == 1  # the file uploaded is not named
        assert (ftps.area / "here.fastq.gz.md5").read_text() == files["here.fastq.gz"]
        served.wait(emu.wait_idle)  # the log holds a request once its answer has gone
        assert not [e for e in emu.log if "/submit" in e.path]
