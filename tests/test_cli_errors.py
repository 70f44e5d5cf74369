"""Errors reach the user as one line each, with the exit code SPEC.md gives, never a traceback.

Most tests call the command's ``main`` in this process (against the emulator on loopback,
in a thread, when they need an archive); those about memory limits, pipes and signals run
the ``mirror`` command in a child process.
"""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror import _cli_status
from mirror._cli import main
from mirror._exceptions import DestinationError, HostDown, MirrorError, SourceError
from mirror._state._sqlite import SQLiteStore
from mirror.emulator import Catalog, EgaOptions, EnaFile, EnaRun, Fault

from .conftest import read_index
from .inproc import FAST_BACKOFF, mirror_main, tune_runs

ENA_RUN = "ERR120000001"


def write_manifest(path: Path, endpoints: dict[str, str], *sources: dict[str, Any]) -> Path:
    doc = {"version": 1, "dest": "data", "workers": 4, "endpoints": endpoints}
    path.write_text(yaml.safe_dump({**doc, "sources": list(sources)}, sort_keys=False))
    return path


def ena(*accessions: str) -> dict[str, Any]:
    return {"ena": {"accessions": list(accessions), "files": ["fastq"]}}


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if "error" in line]


def last_event(stdout: str) -> dict[str, Any]:
    doc = json.loads(stdout.strip().splitlines()[-1])
    assert isinstance(doc, dict)
    return doc


def file_requests(emu: Any) -> list[dict[str, Any]]:
    return [e for e in emu.log() if e["host"] == "ftp"]


def test_workers_that_is_not_a_number_is_one_line(tmp_path: Path) -> None:
    out = mirror_main("run", "--workers", "abc", str(tmp_path / "m.yaml"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "mirror run: error: --workers: 'abc' is not a positive integer (see 'mirror run --help')"
    ]


def test_a_deeply_nested_manifest_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("version: 1\nsources: " + "[" * 3000 + "]" * 3000 + "\n")
    out = mirror_main("plan", str(tmp_path / "m.yaml"))
    assert out.returncode == 2, out.stderr
    assert error_lines(out.stderr) == [
        f"mirror: error: {tmp_path / 'm.yaml'}:2: nested more than 64 levels deep; "
        "a manifest needs a few"
    ]


def _limit_memory() -> None:
    # A safety net: without the fix this manifest grows to tens of gigabytes.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def _bomb(levels: int = 9) -> list[str]:
    """Lists of nine aliases of the list before: ``9**levels`` strings from a few lines."""
    lines = [f"&a0 [{', '.join(['lol'] * 9)}]"]
    lines += [f"&a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, levels)]
    return lines


@pytest.mark.slow  # a child process, so that its memory can be limited
def test_a_yaml_alias_bomb_under_sources_is_refused_in_little_memory(tmp_path: Path) -> None:
    text = "version: 1\nsources:\n" + "".join(
        f"  - ena:\n      accessions: {level}\n" for level in _bomb()
    )
    (tmp_path / "m.yaml").write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "mirror", "plan", str(tmp_path / "m.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = error_lines(out.stderr)
    assert line.startswith(f"mirror: error: {tmp_path / 'm.yaml'}:"), line
    assert "the manifest stands for more than 100,000 values" in line


@pytest.mark.slow  # a child process, so that its memory can be limited
def test_top_level_keys_are_checked_before_their_values_are_read(tmp_path: Path) -> None:
    bomb = "".join(f"  a{n}: {level}\n" for n, level in enumerate(_bomb()))
    (tmp_path / "m.yaml").write_text("version: 1\nlol:\n" + bomb + "sources: [*a8]\n")
    out = subprocess.run(
        [sys.executable, "-m", "mirror", "plan", str(tmp_path / "m.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert error_lines(out.stderr) == [
        f"mirror: error: {tmp_path / 'm.yaml'}:2: lol: unknown key "
        "(expected one of version, dest, workers, hosts, timeouts, endpoints, samplesheets, "
        "sources)"
    ]


@pytest.mark.slow  # a child process whose stdout pipe is closed by its reader
def test_json_output_closed_early_stops_quietly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "demo", "--json", "--dest", str(tmp_path / "d")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    json.loads(proc.stdout.readline())
    proc.stdout.close()  # like `| head -1`
    stderr = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 130
    assert "Traceback" not in stderr, stderr
    assert "BrokenPipe" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr


def test_index_tsv_that_is_a_directory_stops_before_any_download(
    emulator_thread: Any, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo())
    m = write_manifest(tmp_path / "m.yaml", emu.endpoints, ena(ENA_RUN))
    (tmp_path / "data" / "index.tsv").mkdir(parents=True)
    out = mirror_main("run", str(m), "--json")
    assert out.returncode == 2, out.stderr
    index = tmp_path / "data" / "index.tsv"
    assert error_lines(out.stderr) == [
        f"mirror: error: {index}: is not a file; the mirror lists its files there: "
        "move it away and re-run"
    ]
    finished = last_event(out.stdout)
    assert (finished["event"], finished["exit_code"]) == ("run-finished", 2)
    assert file_requests(emu) == []


def study_catalog(runs: int) -> Catalog:
    """One study of ``runs`` single-end runs, one small FASTQ each."""
    return Catalog(
        runs=tuple(
            EnaRun(
                accession=f"ERR77{n:05d}",
                experiment=f"ERX77{n:05d}",
                sample=f"SAMEA77{n:05d}",
                secondary_sample=f"ERS77{n:05d}",
                study="PRJEB770001",
                secondary_study="ERP770001",
                library_layout="SINGLE",
                fastq=(EnaFile(path=f"vol1/fastq/ERR77{n:05d}.fastq.gz", size=100 + n),),
            )
            for n in range(runs)
        )
    )


def _small_store(monkeypatch: pytest.MonkeyPatch, pages: int) -> None:
    """Every state store opened from now on can grow by ``pages`` pages only: SQLITE_FULL."""
    real_open = SQLiteStore.open

    async def open_small(self: SQLiteStore) -> None:
        await real_open(self)

        def limit(db: sqlite3.Connection) -> None:
            (count,) = db.execute("PRAGMA page_count").fetchone()
            db.execute(f"PRAGMA max_page_count={count + pages}")

        await self._call(limit)

    monkeypatch.setattr(SQLiteStore, "open", open_small)


def test_state_store_on_a_full_disk_is_one_line_naming_it(
    emulator_thread: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = emulator_thread(study_catalog(60))
    study = {"ena": {"accessions": ["PRJEB770001"], "files": ["fastq"]}}
    m = write_manifest(tmp_path / "m.yaml", emu.endpoints, study)
    _small_store(monkeypatch, 0)
    code = main(["run", str(m), "--json"])
    out = capsys.readouterr()
    assert code == 1, out.err
    store = tmp_path / "data" / ".mirror" / "state.sqlite"
    (line,) = error_lines(out.err)
    assert line.startswith(f"mirror: error: state store {store}: the disk is full ("), line
    assert f"MiB free on {store.parent}); free some space and re-run to resume" in line
    finished = last_event(out.out)
    assert (finished["event"], finished["exit_code"]) == ("run-finished", 1)
    assert finished["errors"] == [line.removeprefix("mirror: error: ")]


def test_every_missing_credential_is_named_at_once(tmp_path: Path) -> None:
    endpoints = {"ena_portal": "http://127.0.0.1:9/ena/portal/api"}
    sources = (
        {"ega": {"datasets": ["EGAD00010000805"], "protocol": "data-api"}},
        ena(ENA_RUN),
        {"enterobase": {"database": "senterica", "query": {"serotype": "Typhi"}}},
    )
    m = write_manifest(tmp_path / "m.yaml", endpoints, *sources)
    env = {
        "EGA_USERNAME": "",
        "EGA_PASSWORD": "",
        "ENTEROBASE_TOKEN": "",
        "NETRC": str(tmp_path / "none"),
    }
    out = mirror_main("run", str(m), env=env)
    assert out.returncode == 2, out.stderr
    lines = error_lines(out.stderr)
    assert len(lines) == 2, out.stderr
    assert lines[0].startswith("mirror: error: sources[0].ega: EGA_USERNAME and EGA_PASSWORD")
    assert lines[1].startswith("mirror: error: sources[2].enterobase: ENTEROBASE_TOKEN is not")


def test_the_ega_user_name_never_reaches_logs_or_files(
    emulator_thread: Any, tmp_path: Path
) -> None:
    user = "someone.private@example.org"
    emu = emulator_thread(Catalog.demo(), ega=EgaOptions(users={user: "right-password"}))
    ega = {"ega": {"datasets": ["EGAD00010000805"], "protocol": "data-api"}}
    m = write_manifest(tmp_path / "m.yaml", emu.endpoints, ega, ena(ENA_RUN))
    for password in ("wrong-password", "right-password"):
        # Wide lines: a log line wrapped at 80 columns could split the name in two.
        env = {"EGA_USERNAME": user, "EGA_PASSWORD": password, "COLUMNS": "500"}
        out = mirror_main("run", str(m), "-vvv", "--json", env=env)
        assert out.returncode in (0, 1), out.stderr
        for text in (out.stdout, out.stderr):
            assert "someone.private" not in text
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert b"someone.private" not in path.read_bytes(), path


def test_get_reads_a_list_with_a_bom_tabs_commas_and_comments(
    emulator_thread: Any, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo())
    listing = tmp_path / "runs.tsv"
    listing.write_bytes(
        b"\xef\xbb\xbfERR4080002\tERR164407\n# from the spreadsheet\n\n"
        b"ERR4080001,ERR4080002  # again\n"
    )
    endpoints = [f"--endpoint={k}={v}" for k, v in emu.endpoints.items()]
    out = mirror_main("get", "-i", str(listing), "--dest", str(tmp_path / "d"), "-q", *endpoints)
    assert out.returncode == 0, out.stderr
    assert {r["accession"] for r in read_index(tmp_path / "d")} == {
        "ERR4080002",
        "ERR164407",
        "ERR4080001",
    }


def test_get_names_every_bad_entry_of_a_list_with_its_line(tmp_path: Path) -> None:
    listing = tmp_path / "runs.txt"
    listing.write_text("ERR164407\nXRR1, ERR4080001\n# fine\nerr4080002\tnope\n")
    out = mirror_main("get", "-i", str(listing), "--dest", str(tmp_path / "d"))
    assert out.returncode == 2, out.stderr
    assert error_lines(out.stderr) == [
        f"mirror: error: {listing}:2: 'XRR1' is not an ENA, MGnify or EGA accession",
        f"mirror: error: {listing}:4: 'err4080002' is not an ENA, MGnify or EGA accession "
        "(accessions are upper case: 'ERR4080002')",
        f"mirror: error: {listing}:4: 'nope' is not an ENA, MGnify or EGA accession",
    ]
    assert not (tmp_path / "d").exists()


def test_an_mgnify_answer_cut_short_every_time_is_one_line_naming_the_url(
    emulator_thread: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = Fault(kind="short", host="www", match="*/metagenomics/api/*", after_bytes=200)
    emu = emulator_thread(Catalog.demo(), faults=[cut])
    m = write_manifest(
        tmp_path / "m.yaml", emu.endpoints, {"mgnify": {"studies": ["MGYS00005001"]}}
    )
    # Every attempt is spent; the waits between them are not what is tested.
    tune_runs(monkeypatch, FAST_BACKOFF)
    out = mirror_main("run", str(m), "-q")
    assert out.returncode == 1, out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    url = f"{emu.endpoints['mgnify']}/studies/MGYS00005001/analyses?page_size=100"
    assert line.startswith(f"error: sources[0].mgnify: {url}: JSON cut short or damaged"), line
    assert "Traceback" not in out.stderr
    as_json = mirror_main("run", str(m), "--json")
    assert as_json.returncode == 1, as_json.stderr
    finished = last_event(as_json.stdout)
    assert finished["event"] == "run-finished"
    assert finished["summary"]["errors"] == [line.removeprefix("error: ")]


@pytest.mark.slow  # interrupts a child process (SIGINT) mid-run: real processes and signals
def test_an_interrupted_json_run_still_ends_its_stream(
    emulator_process: Any, tmp_path: Path
) -> None:
    emu = emulator_process(Catalog.demo(), "--bandwidth", "100000")
    m = write_manifest(tmp_path / "m.yaml", emu.endpoints, ena("ERR164407"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "run", str(m), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        while json.loads(proc.stdout.readline())["event"] != "file-started":
            pass
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # a hung run must not outlive its test
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    finished = last_event(rest)
    assert (finished["event"], finished["exit_code"]) == ("run-finished", 130)


@pytest.mark.parametrize(
    ("error", "printed"),
    [
        pytest.param(
            HostDown("ftp.example: connection refused for 90 s", host="ftp.example", outage="o"),
            [
                "mirror: error: ftp.example: connection refused for 90 s",
                "mirror: hint: check that ftp.example is reachable from here, then re-run to "
                "resume",
            ],
            id="hint-on-its-own-line",
        ),
        pytest.param(
            DestinationError(
                "cannot write a.part: full. Stopped; free some space and re-run to resume",
                path="a.part",
            ),
            [
                "mirror: error: cannot write a.part: full. Stopped; free some space and re-run "
                "to resume"
            ],
            id="said-already",
        ),
        pytest.param(SourceError("no hint"), ["mirror: error: no hint"], id="none"),
    ],
)
def test_the_cli_prints_what_to_do_after_the_error(
    error: MirrorError,
    printed: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def status(*_: object) -> int:
        raise error

    # The command line imports a command's module when it runs: the stand-in is found there.
    monkeypatch.setattr(_cli_status, "_status", status)
    assert main(["status", "--dest", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == printed
