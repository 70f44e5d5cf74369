"""Status after the fact: ``mirror status``/``verify`` by ``--dest``, over the whole pull.

Each test runs the ``mirror`` command against the emulator on loopback (in this
process: ``tests/test_cli.py`` runs each command in a child process), then reads back
what the state store says through ``status``, ``verify`` and ``plan`` as a person would
the next morning.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from mirror.emulator import Catalog, EgaOptions, EnterobaseOptions

from .inproc import Cli, Ran, ThreadedEmulator

EGA_USER = "someone@example.org"

#: The emulator serving from a thread, for the command line run in this process.
Serve = Callable[..., ThreadedEmulator]


def get(cli: Cli, emu: ThreadedEmulator, dest: Path, *args: str) -> Ran:
    endpoints = [f"--endpoint={k}={v}" for k, v in emu.endpoints.items()]
    return cli("get", *args, "--dest", str(dest), "-q", *endpoints)


def status_lines(cli: Cli, dest: Path, *args: str) -> tuple[int, list[str]]:
    out = cli("status", "--dest", str(dest), *args)
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, out.stdout.splitlines()


def test_status_and_verify_by_dest_cover_every_get_into_it(
    emulator_thread: Serve, cli: Cli, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo())
    dest = tmp_path / "pull"
    assert get(cli, emu, dest, "ERR4080002").returncode == 0
    assert get(cli, emu, dest, "ERR164407").returncode == 0
    # No manifest: the directory is enough. Both pulls count, not only the last one.
    code, lines = status_lines(cli, dest)
    assert code == 0, lines
    assert lines[0].split()[:2] == ["verified", "5"]
    verify = cli("verify", "--dest", str(dest))
    assert (verify.returncode, verify.stdout.strip()) == (0, "5 files re-hashed, 0 mismatched")


def test_status_without_manifest_or_dest_says_what_to_give(cli: Cli) -> None:
    out = cli("status")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "mirror: error: <command line>: give the manifest or --dest DIR (the directory "
        "'mirror run' or 'mirror get' filled): mirror status --dest DIR"
    ]


def test_status_shows_refused_credentials_of_the_last_run(
    emulator_thread: Serve, cli: Cli, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo(), ega=EgaOptions(users={EGA_USER: "right-password"}))
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
    run = cli("run", str(tmp_path / "m.yaml"), "-q", env=env)
    assert run.returncode == 1, run.stderr
    code, lines = status_lines(cli, tmp_path / "data")
    assert code == 1
    assert lines[0].split()[:2] == ["verified", "3"]
    assert lines[3] == (
        "sources[0].ega\tcredentials refused\t"
        "EGA refused the login (EGA_USERNAME/EGA_PASSWORD): HTTP 401 invalid_grant"
    )
    as_json = json.loads(cli("status", "--dest", str(tmp_path / "data"), "--json").stdout)
    assert as_json["refused"] == [lines[3].replace("\tcredentials refused\t", ": ")]
    # Once the password is right, the refusal is history.
    ok = cli("run", str(tmp_path / "m.yaml"), "-q", env={**env, "EGA_PASSWORD": "right-password"})
    assert ok.returncode == 0, ok.stderr
    code, lines = status_lines(cli, tmp_path / "data")
    assert code == 0
    assert len(lines) == 3, lines


def test_state_may_be_a_plain_path(emulator_thread: Serve, cli: Cli, tmp_path: Path) -> None:
    emu = emulator_thread(Catalog.demo())
    store = tmp_path / "elsewhere" / "state.sqlite"
    assert get(cli, emu, tmp_path / "pull", "ERR4080002", "--state", str(store)).returncode == 0
    assert store.is_file()
    assert not (tmp_path / "pull" / ".mirror" / "state.sqlite").exists()
    code, lines = status_lines(cli, tmp_path / "pull", "--state", str(store))
    assert code == 0
    assert lines[0].split()[:2] == ["verified", "3"]
    # The URL form's slash count is explained where people look.
    assert "sqlite:////abs/path is absolute" in " ".join(cli("run", "--help").stdout.split())


def test_plan_says_how_many_files_have_no_size(
    emulator_thread: Serve, cli: Cli, tmp_path: Path
) -> None:
    token = "eb-token-for-plan"
    emu = emulator_thread(
        Catalog.generate_enterobase(records=5), enterobase=EnterobaseOptions(tokens=(token,))
    )
    doc = {
        "version": 1,
        "dest": "data",
        "endpoints": emu.endpoints,
        "sources": [{"enterobase": {"database": "senterica", "assemblies": True}}],
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    plan = cli("plan", str(tmp_path / "m.yaml"), env={"ENTEROBASE_TOKEN": token})
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.strip() == "5 files, 0 bytes (0 B); 5 of unknown size (not counted)"
    as_json = cli("plan", str(tmp_path / "m.yaml"), "--json", env={"ENTEROBASE_TOKEN": token})
    assert json.loads(as_json.stdout)["unsized"] == 5


def test_skipped_files_say_what_they_were_verified_by(
    emulator_thread: Serve, cli: Cli, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo())
    assert get(cli, emu, tmp_path / "pull", "ERR4080002").returncode == 0
    endpoints = [f"--endpoint={k}={v}" for k, v in emu.endpoints.items()]
    again = cli("get", "ERR4080002", "--dest", str(tmp_path / "pull"), "--json", *endpoints)
    assert again.returncode == 0, again.stderr
    events = [json.loads(line) for line in again.stdout.splitlines()]
    verified = [e for e in events if e["event"] == "file-verified"]
    assert len(verified) == 3
    assert {(e["skipped"], e["verified_by"]) for e in verified} == {(True, "md5")}


def test_verify_by_dest_where_nothing_was_mirrored_is_one_line(cli: Cli, tmp_path: Path) -> None:
    out = cli("verify", "--dest", str(tmp_path))
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"mirror: error: {tmp_path}: no state store here (.mirror/state.sqlite): "
        "nothing was mirrored into it"
    ]
    assert not (tmp_path / ".mirror").exists()
