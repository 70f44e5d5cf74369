"""CRAM references into a samtools REF_CACHE, byte-identical to what htslib writes."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path
from typing import Any

import yaml

from mirror.emulator import Catalog

from .conftest import mirror_cmd
from .hts_files import header_text, write_cram

UNKNOWN = "0123456789abcdef0123456789abcdef"


def cram_manifest(
    endpoints: dict[str, str], dest: Path, cache: Path, **source: Any
) -> dict[str, Any]:
    return {
        "version": 1,
        "dest": str(dest),
        "endpoints": endpoints,
        "sources": [{"cram_refs": {"cache": str(cache), **source}}],
    }


def check_cache(cache: Path, catalog: Catalog) -> None:
    for ref in catalog.cram_references:
        entry = cache / ref.md5[:2] / ref.md5[2:4] / ref.md5[4:]
        data = entry.read_bytes()
        assert data == ref.bases()  # the raw uppercase sequence, no header, no newline
        assert data == data.upper()
        assert hashlib.md5(data).hexdigest() == ref.md5
        assert stat.S_IMODE(entry.stat().st_mode) == 0o444
    assert not list(cache.rglob("*.part"))


def test_five_checksums_one_unknown_then_a_cram_files_m5_tags(
    emulator_process: Any, tmp_path: Path
) -> None:
    catalog = Catalog.generate_cram(count=4, length=50_000, seed=3)
    emu = emulator_process(catalog)
    md5s = [r.md5 for r in catalog.cram_references] + [UNKNOWN]

    cache = tmp_path / "hts-ref"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(cram_manifest(emu.endpoints, tmp_path / "d", cache, md5=md5s))
    )
    run = mirror_cmd("run", str(manifest))
    assert run.returncode == 1, run.stderr
    check_cache(cache, catalog)
    assert not (cache / UNKNOWN[:2] / UNKNOWN[2:4] / UNKNOWN[4:]).exists()
    status = mirror_cmd("status", str(manifest))
    failed = [line.split("\t") for line in status.stdout.splitlines() if "\tfailed\t" in line]
    assert [f[0] for f in failed] == [f"{cache}/{UNKNOWN[:2]}/{UNKNOWN[2:4]}/{UNKNOWN[4:]}"]
    assert "404" in failed[0][2]

    # Entries already present and valid cost no request.
    before = len(emu.log())
    again = mirror_cmd("run", str(manifest))
    assert again.returncode == 1
    assert [e["path"] for e in emu.log()[before:] if "/ena/cram/" in e["path"]] == [
        f"/ena/cram/md5/{UNKNOWN}"
    ]

    # The same result driven by a CRAM file's @SQ M5 tags, into a fresh cache.
    cram = tmp_path / "sample.cram"
    refs = [(r.name, r.length, r.md5) for r in catalog.cram_references] + [("x", 9, UNKNOWN)]
    write_cram(cram, header_text(refs))
    cache2 = tmp_path / "hts-ref-2"
    manifest2 = tmp_path / "m2.yaml"
    manifest2.write_text(
        yaml.safe_dump(
            cram_manifest(emu.endpoints, tmp_path / "d2", cache2, crams=[str(tmp_path / "*.cram")])
        )
    )
    run2 = mirror_cmd("run", str(manifest2))
    assert run2.returncode == 1
    check_cache(cache2, catalog)


def test_sha1_names_are_filed_under_their_md5(emulator_process: Any, tmp_path: Path) -> None:
    catalog = Catalog.generate_cram(count=2, length=20_000, seed=5)
    emu = emulator_process(catalog)
    cache = tmp_path / "hts-ref"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            cram_manifest(
                emu.endpoints, tmp_path / "d", cache, sha1=[r.sha1 for r in catalog.cram_references]
            )
        )
    )
    run = mirror_cmd("run", str(manifest))
    assert run.returncode == 0, run.stderr
    check_cache(cache, catalog)
    before = len(emu.log())
    assert mirror_cmd("run", str(manifest)).returncode == 0
    assert [e for e in emu.log()[before:] if "/ena/cram/" in e["path"]] == []
