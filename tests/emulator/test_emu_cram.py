"""The ENA CRAM reference registry on the www host: sequences by MD5/SHA1, ranges, metadata."""

from __future__ import annotations

import hashlib
import re

import aiohttp
import pytest

from mirror.emulator import Catalog, CramReference, Emulator, Fault

# IUPAC nucleotide codes, uppercase: all a registry sequence may hold here.
IUPAC = re.compile(rb"[ACGTNRYKMSWBDHV]+")


async def test_md5_and_sha1_paths_serve_the_raw_uppercase_sequence(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    base = emu.endpoints["cram_registry"]
    assert base.endswith("/ena/cram")
    assert base.split("/")[2] == emu.endpoints["ena_portal"].split("/")[2]  # the www host
    references = emu.cram.references()
    assert [name for name, *_ in references] == ["MT", "phiX174", "chr22_part"]
    for name, md5, sha1, length in references:
        expected = emu.cram.sequence(md5)
        body = b""
        # Lowercase hex is canonical; uppercase is accepted too.
        for url in (f"{base}/md5/{md5}", f"{base}/md5/{md5.upper()}", f"{base}/sha1/{sha1}"):
            async with session.get(url) as response:
                assert response.status == 200, name
                assert response.headers["Content-Type"] == "text/plain"
                assert response.headers["Content-Length"] == str(length)
                body = await response.read()
            assert body == expected
        # What samtools and htsjdk check: the MD5 of the (uppercase) bytes received.
        assert hashlib.md5(body).hexdigest() == md5
        assert hashlib.sha1(body).hexdigest() == sha1
        assert IUPAC.fullmatch(body), "no header, no newline, no lowercase"
        assert b"N" * 2 in body, "an N run"
        assert re.search(rb"[RYKMSWBDHV]", body), "an ambiguity code"
        assert set(body) >= set(b"ACGT")


async def test_unknown_or_malformed_checksums_are_404(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    base = emu.endpoints["cram_registry"]
    unknown_md5 = hashlib.md5(b"ACGT").hexdigest()
    unknown_sha1 = hashlib.sha1(b"ACGT").hexdigest()
    _, md5, sha1, _ = emu.cram.references()[0]
    for path in (
        f"/md5/{unknown_md5}",
        f"/sha1/{unknown_sha1}",
        f"/md5/{sha1}",  # a SHA1 on the MD5 path
        f"/sha1/{md5}",
        "/md5/not-a-checksum",
        f"/sequence/{unknown_md5}/metadata",
    ):
        async with session.get(base + path) as response:
            assert response.status == 404, path
            assert response.headers["Content-Type"].startswith("text/plain")
            assert await response.text() == "Not Found"


async def test_range_requests_and_head(emu: Emulator, session: aiohttp.ClientSession) -> None:
    _, md5, _, length = next(r for r in emu.cram.references() if r[0] == "chr22_part")
    url = f"{emu.endpoints['cram_registry']}/md5/{md5}"
    expected = emu.cram.sequence(md5)
    # A resume across the 1 MiB mark, and a middle slice.
    for header, start, end in (("bytes=1048570-", 1048570, length), ("bytes=100-199", 100, 200)):
        async with session.get(url, headers={"Range": header}) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == f"bytes {start}-{end - 1}/{length}"
            assert await response.read() == expected[start:end]
    async with session.get(url, headers={"Range": f"bytes={length}-"}) as response:
        assert response.status == 416
    async with session.head(url) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(length)
        assert response.headers["Accept-Ranges"] == "bytes"


async def test_refget_metadata(emu: Emulator, session: aiohttp.ClientSession) -> None:
    name, md5, _, length = emu.cram.references()[1]
    base = emu.endpoints["cram_registry"]
    for ident in (md5, f"md5:{md5}", md5.upper()):
        async with session.get(f"{base}/sequence/{ident}/metadata") as response:
            assert response.status == 200
            doc = await response.json()
        assert doc == {
            "metadata": {
                "id": md5,
                "length": length,
                "md5": md5,
                "trunc512": None,
                "aliases": [{"alias": name, "naming_authority": "unknown"}],
            }
        }


async def test_faults_and_the_log_apply(emu: Emulator, session: aiohttp.ClientSession) -> None:
    _, md5, _, length = emu.cram.references()[0]
    url = f"{emu.endpoints['cram_registry']}/md5/{md5}"
    emu.faults.add(Fault(kind="status", status=503, host="www", match="/ena/cram/*", times=1))
    emu.faults.add(Fault(kind="corrupt", host="www", match="/ena/cram/md5/*", offset=5, times=1))
    bodies = []
    for _ in range(3):
        async with session.get(url) as response:
            bodies.append((response.status, await response.read()))
    expected = emu.cram.sequence(md5)
    assert [status for status, _ in bodies] == [503, 200, 200]
    assert bodies[1][1] != expected
    assert bodies[1][1][6:] == expected[6:]
    assert bodies[2][1] == expected
    await emu.wait_idle()
    log = [e for e in emu.log if e.path.startswith("/ena/cram/")]
    assert [(e.host, e.status, e.fault, e.bytes) for e in log] == [
        ("www", 503, "status", len("Service Unavailable")),
        ("www", 200, "corrupt", length),
        ("www", 200, None, length),
    ]


async def test_explicit_sequences_are_served_and_hashed_uppercase(
    session: aiohttp.ClientSession,
) -> None:
    # A soft-masked FASTA's lowercase: the registry (and M5) use the uppercase bases.
    ref = CramReference(name="masked", length=12, sequence="ACGTacgtNNry")
    assert ref.bases() == b"ACGTACGTNNRY"
    assert ref.md5 == hashlib.md5(b"ACGTACGTNNRY").hexdigest()
    async with Emulator(Catalog(cram_references=(ref,))) as emu:
        async with session.get(f"{emu.endpoints['cram_registry']}/md5/{ref.md5}") as response:
            assert await response.read() == b"ACGTACGTNNRY"
        assert emu.cram.reference(ref.sha1) == ref


def test_catalog_generation_round_trip_and_validation() -> None:
    generated = Catalog.generate_cram(count=4, length=10_000, seed=3, size_spread=0.2)
    again = Catalog.generate_cram(count=4, length=10_000, seed=3, size_spread=0.2)
    assert generated == again
    refs = generated.cram_references
    assert [r.name for r in refs] == ["chr1", "chr2", "chr3", "chr4"]
    assert all(8_000 <= r.length <= 12_000 for r in refs)
    assert len({r.md5 for r in refs}) == 4
    assert [r.bases() for r in refs] == [r.bases() for r in again.cram_references]
    # Another seed, other bases under the same names.
    other = Catalog.generate_cram(count=1, length=10_000, seed=4).cram_references[0]
    assert other.name == "chr1"
    assert other.md5 != refs[0].md5
    catalog = Catalog.demo().merge(generated)
    assert Catalog.from_dict(catalog.to_dict()) == catalog
    assert catalog.cram_by_md5(refs[2].md5.upper()) == refs[2]
    assert catalog.cram_by_sha1(refs[2].sha1) == refs[2]
    assert catalog.cram_by_md5(refs[2].sha1) is None
    with pytest.raises(ValueError, match="duplicate CRAM reference name"):
        generated.merge(generated)
    with pytest.raises(ValueError, match="non-IUPAC"):
        CramReference(name="x", length=3, sequence="AC>")
    with pytest.raises(ValueError, match="sequence has 2 bases"):
        CramReference(name="x", length=3, sequence="AC")
    with pytest.raises(ValueError, match="length"):
        CramReference(name="x", length=0)
    with pytest.raises(ValueError, match="unknown CRAM reference key"):
        CramReference.from_dict({"name": "x", "length": 3, "colour": "red"})
