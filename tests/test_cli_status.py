"""Status after the fact: ``mirror status``/``verify`` by ``--dest``, over the whole pull.

Each test runs the ``mirror`` command in a child process against the emulator on
loopback, then reads back what the state store says through ``status``, ``verify`` and
``plan`` as a person would the next morning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror.emulator import Catalog

from .conftest import mirror_cmd

EGA_USER = "someone@example.org"


def get(emu: Any, dest: Path, *args: str) -> Any:
    endpoints = [f"--endpoint={k}={v}" for k, v in emu.endpoints.items()]
    return mirror_cmd("get", *args, "--dest", str(dest), "-q", *endpoints)


def status_lines(dest: Path, *args: str) -> tuple[int, list[str]]:
    out = mirror_cmd("status", "--dest", str(dest), *args)
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, out.stdout.splitlines()


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_status_and_verify_by_dest_cover_every_get_into_it(
    emulator_process: Any, tmp_path: Path
) -> None:
    emu = emulator_process(Catalog.demo())
    dest = tmp_path / "pull"
    assert get(emu, dest, "ERR4080002").returncode == 0
    assert get(emu, dest, "ERR164407").returncode == 0
    # No manifest: the directory is enough. Both pulls count, not only the last one.
    code, lines = status_lines(dest)
    assert code == 0, lines
    assert lines[0].split()[:2] == ["verified", "5"]
    verify = mirror_cmd("verify", "--dest", str(dest))
    assert (verify.returncode, verify.stdout.strip()) == (0, "5 files re-hashed, 0 mismatched")


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_status_without_manifest_or_dest_says_what_to_give(tmp_path: Path) -> None:
    out = mirror_cmd("status")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "mirror: error: <command line>: give the manifest or --dest DIR (the directory "
        "'mirror run' or 'mirror get' filled): mirror status --dest DIR"
    ]


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_status_shows_refused_credentials_of_the_last_run(
    emulator_process: Any, tmp_path: Path
) -> None:
    emu = emulator_process(Catalog.demo(), "--ega-user", f"{EGA_USER}:right-password")
    doc = {
        "version": 1,
        "dest": "data",
        "workers": 4,
        "endpoints": emu.endpoints,
        "sources": [
            {"ega": {"datasets": ["EGAD00010000805"], "protocol": "data-api"}},
            {"ena": {"accessions": ["ERR4080002"]}},
        ],
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    env = {"EGA_USERNAME": EGA_USER, "EGA_PASSWORD": "wrong-password"}
    run = mirror_cmd("run", str(tmp_path / "m.yaml"), "-q", env=env)
    assert run.returncode == 1, run.stderr
    code, lines = status_lines(tmp_path / "data")
    assert code == 1
    assert lines[0].split()[:2] == ["verified", "3"]
    assert lines[3] == (
        "sources[0].ega\tcredentials refused\t"
        "EGA refused the login (EGA_USERNAME/EGA_PASSWORD): HTTP 401 invalid_grant"
    )
    as_json = json.loads(mirror_cmd("status", "--dest", str(tmp_path / "data"), "--json").stdout)
    assert as_json["refused"] == [lines[3].replace("\tcredentials refused\t", ": ")]
    # Once the password is right, the refusal is history.
    ok = mirror_cmd(
        "run", str(tmp_path / "m.yaml"), "-q", env={**env, "EGA_PASSWORD": "right-password"}
    )
    assert ok.returncode == 0, ok.stderr
    code, lines = status_lines(tmp_path / "data")
    assert code == 0
    assert len(lines) == 3, lines


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_state_may_be_a_plain_path(emulator_process: Any, tmp_path: Path) -> None:
    emu = emulator_process(Catalog.demo())
    store = tmp_path / "elsewhere" / "state.sqlite"
    assert get(emu, tmp_path / "pull", "ERR4080002", "--state", str(store)).returncode == 0
    assert store.is_file()
    assert not (tmp_path / "pull" / ".mirror" / "state.sqlite").exists()
    code, lines = status_lines(tmp_path / "pull", "--state", str(store))
    assert code == 0
    assert lines[0].split()[:2] == ["verified", "3"]
    # The URL form's slash count is explained where people look.
    assert "sqlite:////abs/path is absolute" in " ".join(mirror_cmd("run", "--help").stdout.split())


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_plan_says_how_many_files_have_no_size(emulator_process: Any, tmp_path: Path) -> None:
    token = "eb-token-for-plan"
    emu = emulator_process(Catalog.generate_enterobase(records=5), "--enterobase-token", token)
    doc = {
        "version": 1,
        "dest": "data",
        "endpoints": emu.endpoints,
        "sources": [{"enterobase": {"database": "senterica", "assemblies": True}}],
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    plan = mirror_cmd("plan", str(tmp_path / "m.yaml"), env={"ENTEROBASE_TOKEN": token})
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.strip() == "5 files, 0 bytes (0 B); 5 of unknown size (not counted)"
    as_json = mirror_cmd(
        "plan", str(tmp_path / "m.yaml"), "--json", env={"ENTEROBASE_TOKEN": token}
    )
    assert json.loads(as_json.stdout)["unsized"] == 5


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_skipped_files_say_what_they_were_verified_by(
    emulator_process: Any, tmp_path: Path
) -> None:
    emu = emulator_process(Catalog.demo())
    assert get(emu, tmp_path / "pull", "ERR4080002").returncode == 0
    endpoints = [f"--endpoint={k}={v}" for k, v in emu.endpoints.items()]
    again = mirror_cmd("get", "ERR4080002", "--dest", str(tmp_path / "pull"), "--json", *endpoints)
    assert again.returncode == 0, again.stderr
    events = [json.loads(line) for line in again.stdout.splitlines()]
    verified = [e for e in events if e["event"] == "file-verified"]
    assert len(verified) == 3
    assert {(e["skipped"], e["verified_by"]) for e in verified} == {(True, "md5")}


@pytest.mark.slow  # runs the mirror command in child processes, as a user would
def test_verify_by_dest_where_nothing_was_mirrored_is_one_line(tmp_path: Path) -> None:
    out = mirror_cmd("verify", "--dest", str(tmp_path))
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"mirror: error: {tmp_path}: no state store here (.mirror/state.sqlite): "
        "nothing was mirrored into it"
    ]
    assert not (tmp_path / ".mirror").exists()
