"""What every workload shares: the work directory, the mirror command, alternating runs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ._data import FileSpec, verify
from ._measure import Measurement, run_measured
from ._probe import summary as probe_summary
from ._profile import run_profile

__all__ = ["Around", "FileSet", "Runner", "Suite", "mirror_command", "write_manifest"]


def mirror_command() -> list[str]:
    """The installed ``mirror`` script next to this Python, else ``python -m mirror``."""
    script = Path(sys.executable).parent / "mirror"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "mirror"]


def write_manifest(
    path: Path,
    *,
    dest: Path,
    portal: str,
    files: str,
    accessions: Sequence[str],
    workers: int,
    connections: dict[str, int],
) -> Path:
    """An ENA manifest (JSON is YAML) whose Portal is the emulator and files host ``files``."""
    doc = {
        "version": 1,
        "dest": str(dest),
        "workers": workers,
        "hosts": {host: {"connections": n} for host, n in connections.items()},
        "endpoints": {"ena_portal": portal, "ena_files": files},
        "sources": [{"ena": {"accessions": list(accessions), "files": ["fastq"]}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


class FileSet(Protocol):
    """What a head-to-head downloads: the files every run must leave, and their bytes."""

    @property
    def files(self) -> Sequence[FileSpec]: ...

    @property
    def bytes(self) -> int: ...


#: Entered around each measured run; the dict it yields, filled by its exit, goes into
#: the run's ``Measurement.extra`` (W6: the emulator's CPU, the run's clock window).
Around = Callable[[], AbstractContextManager[dict[str, Any]]]


@dataclass(frozen=True)
class Runner:
    """One tool in a head-to-head: its command for an output directory, and its layout."""

    name: str
    command: Callable[[Path], list[str]]
    location: Callable[[Path, FileSpec], Path]
    #: Environment variables added for this tool's runs (W6: EGA credentials).
    env: Mapping[str, str] | None = None

    def environ(self) -> dict[str, str] | None:
        return {**os.environ, **self.env} if self.env else None

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name).strip("-")


def mirror_location(out: Path, f: FileSpec) -> Path:
    return out / "ena" / f.run / f.name


def flat_location(out: Path, f: FileSpec) -> Path:
    return out / f.name


#: Data sets this large get a ballast write before their first run (see ``ballast``).
BALLAST_ABOVE = 64 << 20


def ballast(path: Path, nbytes: int) -> dict[str, float]:
    """Write ``nbytes`` to a new file and delete it; return its wall and CPU seconds.

    Every run after the first starts just after the previous tool's output was
    deleted, so its page-cache writes reuse pages freed a moment ago. On a VM whose
    balloon driver hands free pages back to the host within seconds, pages freed long
    ago cost a host fault each on first touch (here up to ~2.5 s of sys time per GiB).
    The ballast gives the first run the same start as the others, and its figures
    show what writing new pages costs on this machine.
    """
    chunk = bytes(4 << 20)
    path.parent.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), time.thread_time()
    with path.open("wb") as f:
        for _ in range(nbytes // len(chunk)):
            f.write(chunk)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    path.unlink()
    return {"bytes": nbytes, "wall_s": wall, "cpu_s": cpu, "s_per_gib": wall / (nbytes / 2**30)}


@dataclass
class Suite:
    work: Path
    tools: dict[str, str]
    reps: int
    quick: bool
    keep: bool
    say: Callable[[str], None]
    #: With ``--profile``: py-spy, and where its files go.
    py_spy: str | None = None
    profile_dir: Path | None = None
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    ballast: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def www(self) -> Path:
        return self.work / "www"

    @property
    def mirror(self) -> list[str]:
        return mirror_command()

    def log(self, workload: str, name: str) -> Path:
        return self.work / "logs" / workload / f"{name}.log"

    def fresh(self, *parts: str) -> Path:
        path = self.work.joinpath("runs", *parts)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def discard(self, path: Path, *, last: bool) -> None:
        """Remove a run's output, unless it is the last one and ``--keep`` was given."""
        if not (self.keep and last):
            shutil.rmtree(path, ignore_errors=True)

    def alternate(
        self,
        key: str,
        dataset: FileSet,
        runners: Sequence[Runner],
        *,
        around: Around | None = None,
        after_rep: Callable[[int], None] | None = None,
    ) -> dict[str, list[Measurement]]:
        """Run every tool once per repetition, in turn (A B C A B C …), verifying each run.

        ``around``, if given, is entered around each measured run (see :data:`Around`);
        ``after_rep(rep)`` is called after each repetition's runs (the in-memory MD5 of
        the floor is measured there, so it meets the same moment of the machine).
        """
        results: dict[str, list[Measurement]] = {r.name: [] for r in runners}
        if dataset.bytes >= BALLAST_ABOVE:
            self.ballast[key] = ballast(self.work / "runs" / key / "ballast", dataset.bytes)
        for rep in range(self.reps):
            for runner in runners:
                out = self.fresh(key, runner.slug)
                os.sync()  # start from no dirty pages: the last run's writeback is not ours
                watch = around() if around is not None else _nothing()
                with watch as observed:
                    m = run_measured(
                        runner.name,
                        runner.command(out),
                        log=self.log(key, f"{runner.slug}-{rep}"),
                        env=runner.environ(),
                    )
                m.extra.update(observed)
                checked = verify(
                    runner.name,
                    ((runner.location(out, f), f.size, f.md5) for f in dataset.files),
                )
                m.extra.update(files=checked.files, bytes=checked.bytes, verified=True)
                results[runner.name].append(m)
                self.say(
                    f"  {key} rep {rep + 1}/{self.reps} {runner.name:<34} {m.wall:7.2f} s  "
                    f"cpu {m.cpu:6.2f} s  rss {m.rss_mib:6.1f} MiB  ({checked.files} files ok)"
                )
                self.discard(out, last=rep == self.reps - 1)
            if after_rep is not None:
                after_rep(rep)
        if self.py_spy is not None and self.profile_dir is not None:
            self.profile(key, dataset, runners[0])
        return results

    def profile(self, key: str, dataset: FileSet, runner: Runner) -> None:
        """Two more runs of ``runner`` (not counted in the table), each verified.

        One under ``py-spy record`` (busy samples by thread, function and line), one under
        :mod:`benchmarks._probe` (CPU per thread, and every hop to a thread timed).
        """
        if self.py_spy is None or self.profile_dir is None:
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.fresh(key, f"{runner.slug}-profiled")
        raw = self.profile_dir / f"{key}-{runner.slug}.raw"
        prof = run_profile(
            self.py_spy, runner.command(out), raw, self.log(key, "profile"), env=runner.environ()
        )
        verify(runner.name, ((runner.location(out, f), f.size, f.md5) for f in dataset.files))
        self.discard(out, last=False)
        entry: dict[str, Any] = {"tool": runner.name, "raw": str(raw), **prof.to_dict()}
        self.say(f"  {key} py-spy of {runner.name} ({raw}):\n{prof.text()}")
        command = runner.command(out)
        if command[: len(self.mirror)] == self.mirror:
            out = self.fresh(key, f"{runner.slug}-probed")
            command = runner.command(out)
            probe_json = self.profile_dir / f"{key}-{runner.slug}-probe.json"
            probe = [sys.executable, "-m", "benchmarks._probe", str(probe_json)]
            run_measured(
                "probe",
                [*probe, *command[len(self.mirror) :]],
                log=self.log(key, "probe"),
                env={
                    **(runner.environ() or os.environ),
                    "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                },
            )
            verify(runner.name, ((runner.location(out, f), f.size, f.md5) for f in dataset.files))
            self.discard(out, last=False)
            doc = json.loads(probe_json.read_text(encoding="utf-8"))
            entry["probe"] = doc
            self.say(probe_summary(doc))
        self.profiles[key] = entry


@contextlib.contextmanager
def _nothing() -> Iterator[dict[str, Any]]:
    yield {}
