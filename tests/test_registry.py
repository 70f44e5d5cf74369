"""A source added through the registry alone: manifest, credentials, ``mirror get``, engine.

The toy source below is everything a new archive needs: a spec, a schema, a credential
lookup, a source with hooks, and a :class:`SourceKind` registered by this test. No
product module names it, yet a manifest with a ``toy:`` entry is validated, its token
looked up, its files planned, fetched with the token, verified and landed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from aiohttp import web

import mirror
from mirror import _validate as v
from mirror._credentials import Secret
from mirror._exceptions import CredentialsError, ManifestError, MirrorError, TransferError
from mirror._manifest import load_manifest, manifest_from_accessions
from mirror._models import FileTask
from mirror._registry import (
    Accessions,
    CredentialLookup,
    GetOptions,
    SourceKind,
    default_endpoints,
    register,
    unregister,
)
from mirror.sources import FileHooks, Received, Source, SourceContext
from mirror.sources.ena_spec import EnaSpec

from .conftest import FAST_RETRY
from .replay import Answer, Replay

FILES = {"a": b"first toy file\n", "b": b"second, a little longer toy file\n" * 3}
TOKEN = "toy-s3cret"
_NAME = re.compile(r"[a-z]+")
_ACCESSION = re.compile(r"TOY[0-9]+")


@dataclass(frozen=True, kw_only=True, slots=True)
class ToySpec:
    names: tuple[str, ...]


def _parse(w: v.Where, path: v.KeyPath, body: dict[str, object]) -> ToySpec:
    def check(name: str) -> str:
        if not _NAME.fullmatch(name):
            raise v.Invalid(f"{v.show(name)} is not a toy name")
        return name

    raw = v.required(w, path, body, "names")
    names = v.strings(w, (*path, "names"), raw, item="toy name", check=check)
    return ToySpec(names=names)


def _token(spec: ToySpec, lookup: CredentialLookup) -> Secret:
    found = lookup.credentials.get("TOY_TOKEN")
    if found is None:
        raise CredentialsError(f"{lookup.where}: TOY_TOKEN is not set")
    return found


@dataclass
class ToySource:
    spec: ToySpec
    ctx: SourceContext
    token: Secret
    name: str = "toy"
    parallel_ranges: bool = False
    max_range: int | None = None

    def __post_init__(self) -> None:
        self.checked: list[tuple[str, str, int]] = []
        self.done: list[tuple[str, bool]] = []

    @property
    def hooks(self) -> FileHooks | None:
        return self

    async def expand(self) -> AsyncIterator[list[FileTask]]:
        base = self.ctx.endpoints["toy"]
        yield [
            FileTask(
                source=self.name,
                accession=name,
                url=f"{base}/files/{name}",
                path=f"toy/{name}.txt",
                size=len(FILES[name]),
                checksum=hashlib.md5(FILES[name]).hexdigest(),
            )
            for name in self.spec.names
        ]

    def recoverable(self, error: TransferError) -> bool:
        return False

    async def prepare(self, task: FileTask, error: MirrorError | None) -> FileTask:
        return task

    async def headers(self, task: FileTask) -> Mapping[str, str]:
        return {"Authorization": f"Token {self.token.value}"}

    async def verify(self, task: FileTask, got: Received) -> None:
        self.checked.append((task.path, got.md5, got.size))

    async def settled(self, task: FileTask, verified: bool) -> None:
        self.done.append((task.path, verified))


built: list[ToySource] = []


def _build(spec: ToySpec, ctx: SourceContext, token: Secret) -> Source:
    source = ToySource(spec, ctx, token)
    built.append(source)
    return source


def _entry(accessions: tuple[str, ...], options: GetOptions) -> ToySpec:
    return ToySpec(names=tuple(acc.removeprefix("TOY").lower() for acc in accessions))


TOY: SourceKind[ToySpec, Secret] = SourceKind(
    key="toy",
    spec=ToySpec,
    fields=("names",),
    parse=_parse,
    credentials=_token,
    build=_build,
    environment=("TOY_TOKEN",),
    endpoints={"toy": "https://toy.example.org/api"},
    accessions=Accessions(
        title="Toy", claims=lambda acc: bool(_ACCESSION.fullmatch(acc)), entry=_entry
    ),
)


@pytest.fixture
def toy() -> Iterator[SourceKind[ToySpec, Secret]]:
    register(TOY)
    built.clear()
    try:
        yield TOY
    finally:
        unregister(TOY)


def _served(request: web.Request, body: bytes) -> Answer | None:
    if request.headers.get("Authorization") != f"Token {TOKEN}":
        return Answer(body=b"no token", status=401, content_type="text/plain")
    name = request.path.rsplit("/", 1)[-1]
    return (
        Answer(body=FILES[name], content_type="application/octet-stream") if name in FILES else None
    )


def _manifest(path: Path, dest: Path, base: str, names: object) -> Path:
    doc = {"dest": str(dest), "endpoints": {"toy": base}, "sources": [{"toy": {"names": names}}]}
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_a_registered_source_runs_end_to_end_through_the_engine(
    toy: SourceKind[ToySpec, Secret], tmp_path: Path
) -> None:
    routes = {f"/files/{name}": _served for name in FILES}
    async with Replay(routes) as replay:
        manifest = _manifest(tmp_path / "m.yaml", tmp_path / "data", replay.base, ["a", "b"])
        summary = await mirror.run(manifest, retry=FAST_RETRY, credentials={"TOY_TOKEN": TOKEN})

    assert (summary.planned, summary.verified, summary.failed, summary.exit_code) == (2, 2, 0, 0)
    for name, body in FILES.items():
        assert (tmp_path / "data" / "toy" / f"{name}.txt").read_bytes() == body
    # One GET a file, each with the token the source's hooks added (the server refuses
    # any request without it).
    assert sorted((m, p) for m, p, _, _ in replay.log) == [
        ("GET", "/files/a"),
        ("GET", "/files/b"),
    ]
    (source,) = built
    assert sorted(source.checked) == sorted(
        (f"toy/{n}.txt", hashlib.md5(b).hexdigest(), len(b)) for n, b in FILES.items()
    )
    assert sorted(source.done) == [("toy/a.txt", True), ("toy/b.txt", True)]


async def test_a_registered_source_needs_its_credentials_before_any_request(
    toy: SourceKind[ToySpec, Secret], tmp_path: Path
) -> None:
    async with Replay({}) as replay:
        manifest = _manifest(tmp_path / "m.yaml", tmp_path / "data", replay.base, ["a"])
        with pytest.raises(CredentialsError, match=r"^sources\[0\]\.toy: TOY_TOKEN is not set$"):
            await mirror.run(manifest, retry=FAST_RETRY, credentials={})
    assert replay.log == []


def test_the_manifest_reads_a_registered_entry_with_located_errors(
    toy: SourceKind[ToySpec, Secret], tmp_path: Path
) -> None:
    good = load_manifest(_manifest(tmp_path / "m.yaml", tmp_path, "http://127.0.0.1:9", ["a"]))
    assert good.sources == (ToySpec(names=("a",)),)
    assert good.endpoints["toy"] == "http://127.0.0.1:9"

    bad = _manifest(tmp_path / "bad.yaml", tmp_path, "http://127.0.0.1:9", ["a", "B2"])
    with pytest.raises(ManifestError) as caught:
        load_manifest(bad)
    assert str(caught.value) == f"{bad}:8: sources[0].toy.names[1]: 'B2' is not a toy name"

    with pytest.raises(ManifestError) as unknown:
        load_manifest({"sources": [{"toy": {"names": ["a"], "colour": "red"}}]})
    assert "sources[0].toy.colour: unknown key (expected one of names)" in str(unknown.value)

    # A secret written into the manifest is refused; the message names where it goes.
    with pytest.raises(ManifestError) as secret:
        load_manifest({"sources": [{"toy": {"names": ["a"], "token": "x"}}]})
    assert (
        "(EGA_USERNAME, EGA_PASSWORD, EGA_REKEY, EGA_SSH_KEY, C4GH_SECRET_KEY, C4GH_PASSPHRASE, "
        "ENTEROBASE_TOKEN, TOY_TOKEN, WEBIN_USERNAME" in (str(secret.value))
    )

    with pytest.raises(ManifestError) as kinds:
        load_manifest({"sources": [{"tyo": {}}]})
    assert str(kinds.value).endswith("unknown key (did you mean 'toy'?)"), kinds.value


def test_mirror_get_routes_a_registered_prefix(
    toy: SourceKind[ToySpec, Secret], tmp_path: Path
) -> None:
    manifest = manifest_from_accessions(["TOY1", "ERR000001", "TOY2", "TOY1"], dest=tmp_path)
    assert manifest.sources == (
        EnaSpec(accessions=("ERR000001",)),
        ToySpec(names=("1", "2")),
    )
    with pytest.raises(ManifestError, match="is not an ENA, MGnify, EGA or Toy accession"):
        manifest_from_accessions(["XYZ1"], dest=tmp_path)


def test_registering_is_undone_and_keys_stay_unique(tmp_path: Path) -> None:
    assert "toy" not in default_endpoints()
    with pytest.raises(ManifestError, match="unknown key"):
        load_manifest({"sources": [{"toy": {"names": ["a"]}}]})
    register(TOY)
    try:
        with pytest.raises(ValueError, match="registered already"):
            register(TOY)
    finally:
        unregister(TOY)


@pytest.mark.parametrize(
    "module",
    [
        "_engine",
        "_planning",
        "_progress",
        "_pull",
        "_manifest",
        "_download",
        "_api",
        *sorted(p.stem for p in Path(mirror.__file__).parent.glob("_cli*.py")),
    ],
)
def test_the_engine_manifest_and_cli_know_no_source_by_name(module: str) -> None:
    # They reach sources through the registry only: no import of a source module, no
    # source's spec class, no manifest key of a source in their code.
    import ast

    import mirror._registry as registry

    path = Path(mirror.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level >= 1
    }
    assert not {m for m in imported if m == "sources" or m.startswith("sources.")}
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {a.attr for a in ast.walk(tree) if isinstance(a, ast.Attribute)}
    strings = {
        c.value for c in ast.walk(tree) if isinstance(c, ast.Constant) and isinstance(c.value, str)
    }
    for kind in registry.kinds():
        assert kind.spec.__name__ not in names, (module, kind.spec.__name__)
        assert kind.key not in strings, (module, kind.key)


async def test_an_entry_of_no_registered_source_is_refused_before_any_request(
    tmp_path: Path,
) -> None:
    # A Manifest built in Python may hold anything: an entry no source reads must not be
    # skipped silently (its files would never be planned, and the run would end 0).
    manifest = mirror.Manifest(dest=tmp_path, sources=(ToySpec(names=("a",)),))
    with pytest.raises(ManifestError) as caught:
        await mirror.run(manifest, retry=FAST_RETRY)
    assert str(caught.value) == "sources[0]: ToySpec is not the entry of a registered source"
