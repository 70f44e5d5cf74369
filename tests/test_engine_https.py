"""The engine over HTTPS, as against the real archives: TLS verification on, the CA
trusted through SSL_CERT_FILE, nothing else changed."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror.emulator import Catalog, TlsOptions, md5_of

from .conftest import ena_manifest, mirror_cmd, read_index
from .tls import make_ca


@pytest.mark.slow  # the command in a child process: aiohttp reads SSL_CERT_FILE at import
def test_ena_run_mirrored_over_https_with_verification(
    emulator_thread: Any, tmp_path: Path
) -> None:
    tls = make_ca(tmp_path / "ca")
    emu = emulator_thread(Catalog.demo(), tls=TlsOptions(cert=tls.cert, key=tls.key))
    assert emu.endpoints["ena_portal"].startswith("https://")
    assert emu.endpoints["ena_files"].startswith("https://")
    manifest = tmp_path / "m.yaml"
    doc = ena_manifest(emu.endpoints, tmp_path / "data", ["ERR164407"])
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))

    done = mirror_cmd("run", str(manifest), "-q", env={"SSL_CERT_FILE": str(tls.ca)})
    assert done.returncode == 0, done.stderr
    rows = read_index(tmp_path / "data")
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in rows) == [
        "ERR164407_1.fastq.gz",
        "ERR164407_2.fastq.gz",
    ]
    assert {r["status"] for r in rows} == {"verified"}
    for name in ("ERR164407_1.fastq.gz", "ERR164407_2.fastq.gz"):
        (local,) = (tmp_path / "data").rglob(name)
        data = local.read_bytes()
        catalog_path = f"vol1/fastq/ERR164/007/ERR164407/{name}"
        assert hashlib.md5(data).hexdigest() == md5_of(catalog_path, len(data))
        gzip.decompress(data)  # the content is a real gzip stream, CRC checked
    files = [e for e in emu.log() if e["host"] == "ftp" and e["status"] in (200, 206)]
    assert len(files) >= 2
