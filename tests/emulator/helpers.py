"""Constants and helpers shared by the emulator tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mirror.emulator import __main__ as emulator_command

# The docs' own example run; its _1 file is ~3 MiB, crossing the 1 MiB content blocks.
FASTQ_1 = "vol1/fastq/ERR164/007/ERR164407/ERR164407_1.fastq.gz"


@contextlib.asynccontextmanager
async def emulator_cli(tmp_path: Path, *args: str) -> AsyncIterator[dict[str, Any]]:
    """``python -m mirror.emulator ARGS`` in its own process, as a user starts it.

    Yields its ready document (``endpoints``, ``pid``), once it is also the line the
    process printed; when the block ends normally, SIGTERM must stop it with status 0.
    """
    ready_path = tmp_path / "ready.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mirror.emulator", "--ready-file", str(ready_path), *args,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        ready: dict[str, Any] = json.loads(ready_path.read_text())
        assert json.loads(line) == ready
        assert ready["pid"] == proc.pid
        yield ready
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def emulator_options(*args: str) -> AsyncIterator[dict[str, Any]]:
    """The emulator ``python -m mirror.emulator ARGS`` serves, started in this process.

    For tests of what the options set up: the process itself (its ready line, SIGTERM)
    is :func:`emulator_cli`'s. Yields the same ``endpoints`` as its ready document.
    """
    parsed = emulator_command._parser().parse_args(args)
    catalog = emulator_command._load_catalog(parsed.catalog)
    faults = emulator_command._load_faults(parsed.faults)
    async with emulator_command._emulator(parsed, catalog, faults) as emulator:
        yield {"endpoints": emulator.endpoints}
