"""``mirror demo``: the bundled archive emulator, the demo manifest, one run against it."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.console import Console

from ._api import Mirror
from ._cli_output import (
    _dir,
    _drive,
    _finish,
)
from ._manifest import load_manifest

DEMO_TOKEN = "demo-token"


async def _demo(args: argparse.Namespace, err: Console) -> int:
    from .emulator import Catalog, Emulator, EnterobaseOptions

    manifest = load_manifest(args.manifest or _demo_manifest())
    dest = _dir(args.dest or "mirror-demo")
    async with Emulator(Catalog.demo(), enterobase=EnterobaseOptions(tokens=(DEMO_TOKEN,))) as emu:
        manifest = dataclasses.replace(
            manifest,
            dest=dest,
            endpoints={**manifest.endpoints, **emu.endpoints},
            origin=manifest.origin,
        )
        if not args.json:
            err.print(
                f"archive emulator listening on {', '.join(emu.endpoints.values())}", markup=False
            )
        # The emulator's own EnteroBase token, not one from the environment.
        demo_token = {"ENTEROBASE_TOKEN": DEMO_TOKEN}
        m = Mirror(
            manifest,
            workers=args.workers,
            state=args.state,
            credentials=demo_token,
            lease=args.lease,
        )
        summary = await _drive(m, args, err)
        requests = len(emu.log)
    code = _finish(summary, m.manifest, args, err)
    if not args.json:
        err.print(
            f"the emulator answered {requests} requests; run the same command again "
            "and every file is skipped as already verified",
            markup=False,
        )
    return code


def _demo_manifest() -> Path:
    # Always the packaged one: a configs/demo.yaml in the current directory may be
    # anything (another checkout, a user's edit) and is not what the help promises.
    return Path(__file__).parent / "emulator" / "demo.yaml"
