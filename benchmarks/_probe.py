"""``python -m benchmarks._probe OUT.json ARGS…``: ``mirror ARGS…`` with thread-hop accounting.

Used by ``--profile``. It runs the ``mirror`` command in this process after wrapping
``ThreadPoolExecutor.submit``, so every hop to a thread (``asyncio.to_thread``,
``run_in_executor``, the SQLite store's own thread) is counted per function with
its queue wait (submit → start) and its run time (start → end, GIL waits included).
A sampler reads ``/proc/self/task/*/stat`` to give each Python thread's CPU time.
Nothing in ``mirror`` is changed; the numbers cost a few µs per hop.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")
_lock = threading.Lock()
_hops: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
_cpu: dict[int, tuple[str, float, float]] = {}
_original_submit = concurrent.futures.ThreadPoolExecutor.submit


def _name(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    f: Any = fn
    while isinstance(f, functools.partial):
        # asyncio.to_thread submits partial(context.run, func, *args)
        f = f.args[0] if getattr(f.func, "__name__", "") == "run" and f.args else f.func
    if getattr(f, "__name__", "") == "run" and args and callable(args[0]):
        f = args[0]
    if getattr(f, "__name__", "") == "run" and getattr(f, "__closure__", None):
        # The SQLite store's _call(fn) submits a closure ``run`` calling ``fn``.
        inner = [c.cell_contents for c in f.__closure__ if callable(c.cell_contents)]
        f = inner[0] if inner else f
    return str(getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f))


def _submit(
    self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kw: Any
) -> concurrent.futures.Future[Any]:
    submitted = time.perf_counter()
    pool = "sqlite" if "sqlite" in (self._thread_name_prefix or "") else "executor"
    key = f"{pool}: {_name(fn, args)}"

    def timed(*a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            ended = time.perf_counter()
            with _lock:
                entry = _hops[key]
                entry[0] += 1
                entry[1] += started - submitted
                entry[2] += ended - started

    return _original_submit(self, timed, *args, **kw)


def _sample() -> None:
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return
    for tid in tids:
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        name = names.get(int(tid)) or _cpu.get(int(tid), ("non-Python threads",))[0]
        _cpu[int(tid)] = (name, int(fields[11]) / _TICK, int(fields[12]) / _TICK)


def _sampler(stop: threading.Event) -> None:
    while not stop.wait(0.05):
        _sample()


def _group(name: str) -> str:
    if name.startswith(("asyncio_", "ThreadPoolExecutor-", "uvloop_")):
        return "executor threads"
    if name == "MainThread":
        return "MainThread (event loop)"
    return name.rstrip("0123456789").rstrip("_") or name


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    concurrent.futures.ThreadPoolExecutor.submit = _submit  # type: ignore[method-assign,assignment]
    stop = threading.Event()
    sampler = threading.Thread(target=_sampler, args=(stop,), name="probe-sampler", daemon=True)
    sampler.start()
    from mirror._cli import main as mirror_main

    start = time.perf_counter()
    try:
        code = mirror_main(argv[1:])
    finally:
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        _sample()
        threads: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
        for name, user, system in _cpu.values():
            if name == "probe-sampler":
                continue
            entry = threads[_group(name)]
            entry[0] += 1
            entry[1] += user
            entry[2] += system
        doc = {
            "wall_s": wall,
            "threads": {k: {"n": v[0], "user_s": v[1], "sys_s": v[2]} for k, v in threads.items()},
            "hops": {
                k: {"n": int(v[0]), "wait_s": v[1], "run_s": v[2]}
                for k, v in sorted(_hops.items(), key=lambda kv: -kv[1][2])
            },
        }
        out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return code


def summary(doc: dict[str, Any], top: int = 10) -> str:
    lines = [f"  probe: wall {doc['wall_s']:.2f} s; CPU by thread:"]
    for name, t in sorted(
        doc["threads"].items(), key=lambda kv: -(kv[1]["user_s"] + kv[1]["sys_s"])
    ):
        lines.append(
            f"    {name:<26} x{t['n']:<2} user {t['user_s']:6.2f} s  sys {t['sys_s']:6.2f} s"
        )
    hops = doc["hops"]
    total = sum(h["n"] for h in hops.values())
    lines.append(f"  thread hops: {total} (queue wait + run per call; run includes GIL waits):")
    for name, h in list(hops.items())[:top]:
        n = h["n"]
        lines.append(
            f"    {n:7d} × {name:<52} wait {1000 * h['wait_s'] / n:6.2f} ms  "
            f"run {1000 * h['run_s'] / n:7.2f} ms  (Σ run {h['run_s']:6.2f} s)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
