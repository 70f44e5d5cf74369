"""``python -m benchmarks``: run the workloads, print the table, save the JSON."""

from __future__ import annotations

import argparse
import compileall
import datetime
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._ega import w6_ega_data_api
from ._env import ToolMissing, ensure_tools, machine_info, machine_name
from ._members import w7_members
from ._outbox import w10_outbox
from ._planning import w4_planning, w5_memory
from ._profile import find_py_spy
from ._report import format_table, save_json
from ._results import WorkloadResult
from ._short import w9_short_commands
from ._suite import Suite, mirror_command
from ._throttled import w8_throttled
from ._transfer import w1_big_file, w2_many_small, w3_medium
from ._upload import w11_upload

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

Workload = Callable[[Suite], WorkloadResult]
WORKLOADS: dict[int, tuple[Workload, tuple[str, ...], tuple[str, ...]]] = {
    # number: (function, required tools, optional tools)
    1: (w1_big_file, ("nginx", "aria2c", "curl", "openssl"), ()),
    2: (w2_many_small, ("nginx", "aria2c", "curl", "openssl"), ("wget",)),
    3: (w3_medium, ("nginx", "aria2c"), ()),
    4: (w4_planning, ("nginx",), ()),
    5: (w5_memory, (), ()),
    6: (w6_ega_data_api, ("curl",), ()),
    7: (w7_members, (), ()),
    8: (w8_throttled, ("nginx", "aria2c", "curl"), ("wget",)),
    9: (w9_short_commands, (), ()),
    10: (w10_outbox, ("sshd", "sftp"), ()),
    11: (w11_upload, ("vsftpd", "lftp", "curl", "openssl"), ()),
}


def _workloads(text: str) -> list[int]:
    try:
        chosen = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2,3, got {text!r}") from None
    unknown = [n for n in chosen if n not in WORKLOADS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"workloads are 1 to {len(WORKLOADS)}")
    return chosen


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="ebi-mirror's performance benchmarks against aria2c, curl and wget, "
        "over loopback from an nginx the suite starts (see benchmarks/README.md).",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and 1 repetition: a smoke run of a minute or two",
    )
    p.add_argument(
        "--workloads",
        type=_workloads,
        default=list(WORKLOADS),
        metavar="1,2,…,11",
        help="which workloads to run (default: all)",
    )
    p.add_argument(
        "--reps",
        type=int,
        metavar="N",
        help="repetitions per tool, run alternately (default 3; 1 with --quick)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the generated data sets (reused next time) and the last downloads",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=HERE / "work",
        metavar="DIR",
        help="work directory for data, servers and downloads (default benchmarks/work)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=HERE / "results",
        metavar="DIR",
        help="where the JSON goes (default benchmarks/results)",
    )
    p.add_argument(
        "--machine",
        default=None,
        metavar="NAME",
        help="name of the results file, RESULTS/NAME.json, replaced by each run "
        "(default: CPUs and model, e.g. 2cpu-amd-epyc)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="W1-W3: one more ebi-mirror run under py-spy (if installed), summarised by "
        "thread and function; not counted in the table",
    )
    p.add_argument(
        "--no-install",
        action="store_true",
        help="never apt-get install a missing tool; just say which is missing",
    )
    return p


def results_name(machine: str, quick: bool, workloads: Sequence[int]) -> str:
    """The latest results of one machine are kept, not a history: each run replaces the
    file of its kind. A quick run or a subset of the workloads gets a file of its own, so
    it never replaces the full run's numbers."""
    name = machine + ("-quick" if quick else "")
    if sorted(workloads) != sorted(WORKLOADS):
        name += "-w" + "".join(str(n) for n in sorted(workloads))
    return name


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    if reps < 1:
        _say("benchmarks: --reps must be at least 1")
        return 2
    required = sorted({t for n in args.workloads for t in WORKLOADS[n][1]})
    optional = sorted({"time", *(t for n in args.workloads for t in WORKLOADS[n][2])})
    try:
        tools = ensure_tools(required, optional, install=not args.no_install)
    except ToolMissing as exc:
        _say(f"benchmarks: {exc}")
        return 2
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    # ebi-mirror's bytecode written once, as an installed package has it: with
    # PYTHONDONTWRITEBYTECODE set, every run would compile the package again.
    compileall.compile_dir(REPO / "mirror", quiet=1)
    suite = Suite(work=work, tools=tools, reps=reps, quick=args.quick, keep=args.keep, say=_say)
    started = datetime.datetime.now(datetime.UTC)
    stamp = results_name(args.machine or machine_name(), args.quick, args.workloads)
    if args.profile:
        suite.py_spy = find_py_spy()
        suite.profile_dir = args.results.resolve() / f"{stamp}-profiles"
        if suite.py_spy is None:
            _say("benchmarks: --profile needs py-spy (pip install py-spy); not profiling")
    machine = machine_info(tools, REPO)
    doc: dict[str, Any] = {
        "started": started.isoformat(),
        "options": {
            "quick": args.quick,
            "reps": reps,
            "workloads": args.workloads,
            "work": str(work),
            "mirror": mirror_command(),
        },
        "machine": machine,
        "workloads": [],
        "errors": [],
    }
    _say(
        f"benchmarks: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB; workloads {args.workloads}, {reps} repetition(s); "
        f"work {work}"
    )
    results: list[WorkloadResult] = []
    t0 = time.monotonic()
    try:
        for n in args.workloads:
            run, _, _ = WORKLOADS[n]
            _say(f"W{n}: starting")
            started_w = time.monotonic()
            try:
                result = run(suite)
            except Exception as exc:
                message = f"W{n}: {type(exc).__name__}: {exc}"
                _say(f"\n*** {message}\n{traceback.format_exc()}")
                doc["errors"].append(message)
                continue
            result.info["seconds"] = time.monotonic() - started_w
            results.append(result)
            doc["workloads"].append(result.to_dict())
            _say(f"W{n}: done in {result.info['seconds']:.0f} s")
    finally:
        if not args.keep:
            for sub in ("www", "runs"):
                shutil.rmtree(work / sub, ignore_errors=True)
    if suite.profiles:
        doc["profiles"] = suite.profiles
    doc["finished"] = datetime.datetime.now(datetime.UTC).isoformat()
    doc["seconds"] = time.monotonic() - t0
    tools_line = ", ".join(
        " ".join(v["version"].split()[:3]) for v in machine["tools"].values() if v.get("version")
    )
    header = (
        f"ebi-mirror benchmarks {started:%Y-%m-%d %H:%M} UTC: {machine['cpus']} CPUs "
        f"{machine['cpu_model']}, {reps} rep(s) alternating, {'QUICK ' if args.quick else ''}"
        f"medians; MB = 10^6 bytes\n{tools_line}"
    )
    table = format_table(results, header=header)
    doc["table"] = table
    path = save_json(args.results, stamp, doc)
    print(table)
    for error in doc["errors"]:
        print(f"ERROR {error}")
    print(f"results: {path}")
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
