"""Manifest loading: the SPEC's example, path resolution, and one-line located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mirror._config import (
    DEFAULT_ENDPOINTS,
    CramRefsSpec,
    EgaSpec,
    EnaSpec,
    EnterobaseSpec,
    HostLimit,
    Manifest,
    MgnifySpec,
)
from mirror._exceptions import ManifestError
from mirror._manifest import load_manifest, manifest_from_accessions

MD5 = "d7a6df0fd0e6a1f6f5e4e3e2e1e0dfde"
CREDENTIALS = (
    "credentials do not belong in the manifest: set them in the environment "
    "(EGA_USERNAME, EGA_PASSWORD, EGA_REKEY, EGA_SSH_KEY, C4GH_SECRET_KEY, C4GH_PASSPHRASE, "
    "ENTEROBASE_TOKEN, WEBIN_USERNAME, WEBIN_PASSWORD) or in ~/.netrc"
)
#: A valid ``sources:`` block, for cases whose problem is elsewhere.
OK = "sources:\n  - ena: {accessions: [ERR2842367]}\n"

SPEC_EXAMPLE = f"""\
version: 1
dest: ./mirror-data            # root of the local mirror; relative to the manifest file
workers: 16                    # concurrent download workers (default 16)
hosts:                         # optional per-host limits, keyed by the URL's host or host:port
  www.ebi.ac.uk: {{rate: 50, connections: 8}}   # requests per second, open connections
endpoints: {{}}                  # optional overrides, keys as in the table above
sources:
  - ena:
      accessions: [PRJEB1787, ERR2842367, SAMEA2619376]   # any mix
      files: [fastq]           # any of fastq, submitted, sra (runs), generated (analyses)
  - mgnify:
      studies: [MGYS00002008]  # and/or analyses: [MGYA...]
      pipeline_version: "5.0"  # optional filter
      groups: [Functional analysis]  # optional: a download's group-type
      formats: [TSV]           # optional: a download's file-format name
  - enterobase:
      database: senterica
      query: {{serotype: Agona}}  # passed as query parameters
      reldate: 30              # optional
      assemblies: true         # download each record's assembly FASTA
  - ega:
      datasets: [EGAD00010000805]   # and/or files: [EGAF...]
      protocol: tickets        # tickets | data-api
  - cram_refs:
      md5: [{MD5}]             # and/or crams: [glob of CRAM files]
      cache: ~/.cache/hts-ref  # samtools REF_CACHE root (this default)
"""


def _check_one_line(err: ManifestError) -> None:
    text = str(err)
    assert "\n" not in text
    assert "Traceback" not in text


def _load_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> ManifestError:
    monkeypatch.chdir(tmp_path)
    Path("manifest.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load_manifest("manifest.yaml")
    _check_one_line(info.value)
    return info.value


# --------------------------------------------------------------------------- happy paths


def test_spec_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(SPEC_EXAMPLE, encoding="utf-8")

    manifest = load_manifest(path)

    assert manifest == Manifest(
        dest=tmp_path / "mirror-data",
        sources=(
            EnaSpec(accessions=("PRJEB1787", "ERR2842367", "SAMEA2619376"), files=("fastq",)),
            MgnifySpec(
                studies=("MGYS00002008",),
                pipeline_version="5.0",
                groups=("Functional analysis",),
                formats=("TSV",),
            ),
            EnterobaseSpec(
                database="senterica", query={"serotype": "Agona"}, reldate=30, assemblies=True
            ),
            EgaSpec(datasets=("EGAD00010000805",), protocol="tickets"),
            CramRefsSpec(md5=(MD5,), cache=Path.home() / ".cache" / "hts-ref"),
        ),
        version=1,
        workers=16,
        hosts={"www.ebi.ac.uk": HostLimit(rate=50, connections=8)},
        endpoints=DEFAULT_ENDPOINTS,
        origin=str(path),
    )


def test_minimal_manifest_takes_defaults(tmp_path: Path) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(OK, encoding="utf-8")

    manifest = load_manifest(path)

    assert manifest.dest == tmp_path / "mirror-data"
    assert manifest.workers == 16
    assert manifest.version == 1
    assert dict(manifest.hosts) == {}
    assert dict(manifest.endpoints) == dict(DEFAULT_ENDPOINTS)
    assert manifest.sources == (EnaSpec(accessions=("ERR2842367",)),)


def test_ena_file_host_defaults_to_six_connections(tmp_path: Path) -> None:
    # ftp.sra.ebi.ac.uk refuses more than about 6 parallel connections from one client.
    path = tmp_path / "manifest.yaml"
    path.write_text(OK, encoding="utf-8")
    assert load_manifest(path).host_limit("ftp.sra.ebi.ac.uk") == HostLimit(connections=6)
    path.write_text("hosts:\n  ftp.sra.ebi.ac.uk: {rate: 20}\n" + OK, encoding="utf-8")
    assert load_manifest(path).host_limit("ftp.sra.ebi.ac.uk") == HostLimit(rate=20, connections=6)


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        pytest.param(None, "sub/mirror-data", id="default"),
        pytest.param("data", "sub/data", id="relative"),
        pytest.param("./data/", "sub/data", id="dot-slash"),
        pytest.param("../elsewhere", "elsewhere", id="parent"),
    ],
)
def test_dest_is_relative_to_the_manifest_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dest: str | None, expected: str
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    text = OK if dest is None else f"dest: {dest}\n{OK}"
    (tmp_path / "sub" / "m.yaml").write_text(text, encoding="utf-8")

    assert load_manifest("../sub/m.yaml").dest == tmp_path / expected


def test_dest_absolute_and_home(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(f"dest: {tmp_path / 'abs'}\n{OK}", encoding="utf-8")
    assert load_manifest(path).dest == tmp_path / "abs"
    path.write_text(f"dest: ~/mirror\n{OK}", encoding="utf-8")
    assert load_manifest(path).dest == Path.home() / "mirror"


def test_base_dir_overrides_manifest_directory(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(f"dest: data\n{OK}", encoding="utf-8")
    assert load_manifest(path, base_dir=tmp_path / "other").dest == tmp_path / "other" / "data"


def test_endpoints_merge_over_defaults(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "endpoints:\n"
        "  mgnify: http://127.0.0.1:8080/metagenomics/api/v1/\n"
        "  ena_files: https://files.example.org\n" + OK,
        encoding="utf-8",
    )

    endpoints = load_manifest(path).endpoints

    assert endpoints["mgnify"] == "http://127.0.0.1:8080/metagenomics/api/v1"
    assert endpoints["ena_files"] == "https://files.example.org"
    assert set(endpoints) == set(DEFAULT_ENDPOINTS)
    for key in set(DEFAULT_ENDPOINTS) - {"mgnify", "ena_files"}:
        assert endpoints[key] == DEFAULT_ENDPOINTS[key]


def test_the_upload_area_takes_an_ftps_url_and_only_that(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("endpoints:\n  webin_upload: ftps://127.0.0.1:2121\n" + OK, encoding="utf-8")
    assert load_manifest(path).endpoints["webin_upload"] == "ftps://127.0.0.1:2121"
    assert DEFAULT_ENDPOINTS["webin_upload"] == "ftps://webin2.ebi.ac.uk:21"
    path.write_text("endpoints:\n  webin_upload: https://webin2.ebi.ac.uk\n" + OK)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert "endpoints.webin_upload: 'https://webin2.ebi.ac.uk' is not an ftps URL" in str(
        info.value
    )


def test_null_endpoints_and_hosts_mean_defaults(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("hosts:\nendpoints:\nworkers:\n" + OK, encoding="utf-8")
    manifest = load_manifest(path)
    assert dict(manifest.endpoints) == dict(DEFAULT_ENDPOINTS)
    assert dict(manifest.hosts) == {}
    assert manifest.workers == 16


def test_hosts_keep_the_published_default_they_do_not_set(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        textwrap.dedent("""\
            hosts:
              www.ebi.ac.uk: {connections: 4}
              enterobase.warwick.ac.uk: {rate: 0.5}
              LocalHost:8080: {rate: 200, connections: 32}
              example.org: {connections: 2}
              tokens.example.org: {connections: 3}
              ftp.sra.ebi.ac.uk: {connections: 16, scope: member}
            """)
        + OK,
        encoding="utf-8",
    )

    hosts = dict(load_manifest(path).hosts)

    assert hosts == {
        "www.ebi.ac.uk": HostLimit(rate=50, connections=4),
        "enterobase.warwick.ac.uk": HostLimit(rate=0.5, connections=1),
        "localhost:8080": HostLimit(rate=200, connections=32),
        "example.org": HostLimit(rate=None, connections=2),
        # A host name is no setting: the credentials check leaves it alone.
        "tokens.example.org": HostLimit(rate=None, connections=3),
        "ftp.sra.ebi.ac.uk": HostLimit(connections=16, scope="member"),
    }
    assert hosts["www.ebi.ac.uk"].scope == "pull"


def test_accessions_deduplicated_in_order(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "sources:\n  - ena:\n"
        "      accessions: [ERR2842367, PRJEB1787, ERR2842367, SAMEA2619376, PRJEB1787]\n"
        "      files: [fastq, sra, fastq]\n",
        encoding="utf-8",
    )
    assert load_manifest(path).sources == (
        EnaSpec(accessions=("ERR2842367", "PRJEB1787", "SAMEA2619376"), files=("fastq", "sra")),
    )


def test_single_string_accession(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("sources:\n  - ena: {accessions: ERA123456, files: sra}\n", encoding="utf-8")
    assert load_manifest(path).sources == (EnaSpec(accessions=("ERA123456",), files=("sra",)),)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        pytest.param("5.0", "5.0", id="float-5.0"),
        pytest.param("4.1", "4.1", id="float-4.1"),
        pytest.param("5.10", "5.10", id="float-as-written"),
        pytest.param("5", "5.0", id="int"),
        pytest.param("'5.0'", "5.0", id="quoted"),
        pytest.param("v6", "v6", id="text"),
    ],
)
def test_pipeline_version_becomes_a_string(tmp_path: Path, written: str, expected: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        f"sources:\n  - mgnify:\n      analyses: [MGYA00140023]\n"
        f"      pipeline_version: {written}\n",
        encoding="utf-8",
    )
    (spec,) = load_manifest(path).sources
    assert isinstance(spec, MgnifySpec)
    assert spec.pipeline_version == expected
    assert spec.analyses == ("MGYA00140023",)


def test_enterobase_options(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        textwrap.dedent("""\
            sources:
              - enterobase:
                  database: senterica
                  query: {serotype: Agona, limit: 50, paired: true, country: NO, code: 0123}
                  only_fields: strain_name
                  orderby: barcode
                  sortorder: desc
                  resource: strains
            """),
        encoding="utf-8",
    )
    (spec,) = load_manifest(path).sources
    assert spec == EnterobaseSpec(
        database="senterica",
        query={
            "serotype": "Agona",
            "limit": "50",
            "paired": "true",
            "country": "NO",
            "code": "0123",
        },
        only_fields=("strain_name",),
        orderby="barcode",
        sortorder="desc",
        resource="strains",
    )


def test_ega_and_cram_refs(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        textwrap.dedent(f"""\
            sources:
              - ega:
                  files: [EGAF00001383154]
                  protocol: data-api
              - cram_refs:
                  md5: [{MD5.upper()}, {MD5}]
                  sha1: ["{"A" * 40}"]
                  crams: ["crams/*.cram", /data/x.cram]
                  cache: refs
            """),
        encoding="utf-8",
    )
    ega, cram = load_manifest(path).sources
    assert ega == EgaSpec(files=("EGAF00001383154",), protocol="data-api")
    assert cram == CramRefsSpec(
        md5=(MD5,),
        sha1=("a" * 40,),
        crams=(str(tmp_path / "crams" / "*.cram"), "/data/x.cram"),
        cache=tmp_path / "refs",
    )


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        textwrap.dedent("""\
            sources:
              - mgnify: &common
                  studies: [MGYS00002008]
                  formats: [TSV]
              - mgnify:
                  <<: *common
                  formats: [FASTA]
            """),
        encoding="utf-8",
    )
    first, second = load_manifest(path).sources
    assert first == MgnifySpec(studies=("MGYS00002008",), formats=("TSV",))
    assert second == MgnifySpec(studies=("MGYS00002008",), formats=("FASTA",))


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + OK.encode())
    assert load_manifest(path).sources == (EnaSpec(accessions=("ERR2842367",)),)


def test_dict_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = load_manifest(
        {
            "dest": "out",
            "workers": 4,
            "sources": [
                {"ena": {"accessions": ["ERR2842367", "ERR2842367"]}},
                {"mgnify": {"studies": ["MGYS00002008"], "pipeline_version": 4.1}},
                {"cram_refs": {"md5": [MD5], "cache": tmp_path / "refs"}},
            ],
        }
    )
    assert manifest.dest == tmp_path / "out"
    assert manifest.workers == 4
    assert manifest.origin is None
    assert manifest.sources == (
        EnaSpec(accessions=("ERR2842367",)),
        MgnifySpec(studies=("MGYS00002008",), pipeline_version="4.1"),
        CramRefsSpec(md5=(MD5,), cache=tmp_path / "refs"),
    )


def test_dict_input_with_base_dir(tmp_path: Path) -> None:
    manifest = load_manifest({"sources": [{"ena": {"accessions": "SRR000001"}}]}, base_dir=tmp_path)
    assert manifest.dest == tmp_path / "mirror-data"


# --------------------------------------------------------------------------- errors in files


def _source(kind: str, body: str) -> str:
    """A one-source manifest; ``body`` lines are indented under ``kind``."""
    return f"sources:\n  - {kind}:\n" + textwrap.indent(textwrap.dedent(body), " " * 6)


ERROR_CASES = [
    # malformed YAML: the line of the problem, a short message
    pytest.param(
        "dest: x\nsources: [a, b\nworkers: 3\n",
        "manifest.yaml:3: invalid YAML: while parsing a flow sequence at line 2, "
        "expected ',' or ']', but got ':'",
        id="yaml-unclosed-flow",
    ),
    pytest.param(
        "dest: x\n  workers: 3\n" + OK,
        "manifest.yaml:2: invalid YAML: mapping values are not allowed here",
        id="yaml-bad-indent",
    ),
    pytest.param(
        "dest: x\n\tworkers: 3\n",
        "manifest.yaml:2: invalid YAML: while scanning for the next token, "
        "found character '\\t' that cannot start any token",
        id="yaml-tab",
    ),
    pytest.param(
        OK + "dest: 'x\n",
        "manifest.yaml:4: invalid YAML: while scanning a quoted scalar at line 3, "
        "found unexpected end of stream",
        id="yaml-unclosed-quote",
    ),
    pytest.param(
        OK + "---\n" + OK,
        "manifest.yaml:3: invalid YAML: expected a single document in the stream, "
        "but found another document",
        id="yaml-two-documents",
    ),
    pytest.param(
        "sources:\n  - ena: {accessions: [ERR2842367]}\n - mgnify: {}\n",
        "manifest.yaml:3: invalid YAML: while parsing a block mapping at line 1, "
        "expected <block end>, but found '<block sequence start>'",
        id="yaml-bad-list-indent",
    ),
    pytest.param(
        "workers: !!python/object:os.system 1\n" + OK,
        "manifest.yaml:1: workers: "
        "unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'",
        id="yaml-unsafe-tag",
    ),
    pytest.param(
        "dest: &d [*d]\n" + OK,
        "manifest.yaml:1: dest[0]: a YAML alias refers to itself",
        id="yaml-recursive-alias",
    ),
    # duplicate keys, empty or non-mapping documents
    pytest.param(
        "workers: 4\n" + OK + "workers: 8\n",
        "manifest.yaml:4: workers: duplicate key (first given at line 1)",
        id="duplicate-top-key",
    ),
    pytest.param(
        _source("ena", "accessions: [ERR2842367]\nfiles: [fastq]\nfiles: [sra]\n"),
        "manifest.yaml:5: sources[0].ena.files: duplicate key (first given at line 4)",
        id="duplicate-nested-key",
    ),
    pytest.param(
        "",
        "manifest.yaml:1: the manifest is empty; expected a mapping with at least 'sources'",
        id="empty-file",
    ),
    pytest.param(
        "# nothing yet\n\n",
        "manifest.yaml:1: the manifest is empty; expected a mapping with at least 'sources'",
        id="only-comments",
    ),
    pytest.param(
        "- ena: {accessions: [ERR2842367]}\n",
        "manifest.yaml:1: expected a mapping (version, dest, workers, hosts, timeouts, "
        "endpoints, samplesheets, sources), "
        "got a list",
        id="top-level-list",
    ),
    pytest.param(
        "hello\n",
        "manifest.yaml:1: expected a mapping (version, dest, workers, hosts, timeouts, "
        "endpoints, samplesheets, sources), "
        "got a string ('hello')",
        id="top-level-scalar",
    ),
    # unknown keys
    pytest.param(
        "version: 1\nworkerz: 3\n" + OK,
        "manifest.yaml:2: workerz: unknown key (did you mean 'workers'?)",
        id="unknown-top-key-suggested",
    ),
    pytest.param(
        OK + "colour: blue\n",
        "manifest.yaml:3: colour: unknown key "
        "(expected one of version, dest, workers, hosts, timeouts, endpoints, samplesheets, "
        "sources)",
        id="unknown-top-key",
    ),
    pytest.param(
        "ena: {accessions: [ERR2842367]}\n",
        "manifest.yaml:1: ena: unknown key (sources go in a list: 'sources:' then '- ena: ...')",
        id="source-at-top-level",
    ),
    pytest.param(
        _source("ena", "accessions: [ERR2842367]\nfile: [fastq]\n"),
        "manifest.yaml:4: sources[0].ena.file: unknown key (did you mean 'files'?)",
        id="unknown-key-in-source",
    ),
    pytest.param(
        "sources:\n  - enaa: {accessions: [ERR2842367]}\n",
        "manifest.yaml:2: sources[0].enaa: unknown key (did you mean 'ena'?)",
        id="unknown-source-kind",
    ),
    pytest.param(
        "sources:\n  - ena:\n    accessions: [ERR2842367]\n",
        "manifest.yaml:3: sources[0].accessions: unknown key (indent it under 'ena:')",
        id="source-body-not-indented",
    ),
    pytest.param(
        "sources:\n  - ena: {accessions: [ERR2842367]}\n    mgnify: {studies: [MGYS00002008]}\n",
        "manifest.yaml:2: sources[0]: one source per list item, found ena and mgnify "
        "(start each with its own '- ')",
        id="two-kinds-in-one-item",
    ),
    # sources
    pytest.param(
        "dest: x\nsources: []\n",
        "manifest.yaml:2: sources: no sources given",
        id="empty-sources",
    ),
    pytest.param(
        "dest: x\nsources:\n",
        "manifest.yaml:2: sources: no sources given",
        id="null-sources",
    ),
    pytest.param(
        "dest: x\nworkers: 4\n",
        "manifest.yaml:1: missing required key 'sources'",
        id="missing-sources",
    ),
    pytest.param(
        "sources:\n  ena: {accessions: [ERR2842367]}\n",
        "manifest.yaml:1: sources: expected a list of sources, got a mapping",
        id="sources-not-a-list",
    ),
    pytest.param(
        "sources:\n  - ena\n",
        "manifest.yaml:2: sources[0]: expected a mapping with one of "
        "ena, mgnify, enterobase, ega, cram_refs, got a string ('ena')",
        id="source-not-a-mapping",
    ),
    pytest.param(
        "sources:\n  - {}\n",
        "manifest.yaml:2: sources[0]: empty source; "
        "expected one of ena, mgnify, enterobase, ega, cram_refs",
        id="empty-source",
    ),
    # ENA accessions
    pytest.param(
        _source("ena", "accessions:\n  - ERR2842367\n  - XRR12\n"),
        "manifest.yaml:5: sources[0].ena.accessions[1]: 'XRR12' is not an ENA accession",
        id="malformed-accession",
    ),
    pytest.param(
        "version: 1\n" + _source("ena", "accessions: [ERR2842367, XRR12]\n"),
        "manifest.yaml:4: sources[0].ena.accessions[1]: 'XRR12' is not an ENA accession",
        id="malformed-accession-flow",
    ),
    pytest.param(
        _source("ena", "accessions: ERR12345\n"),
        "manifest.yaml:3: sources[0].ena.accessions: 'ERR12345' is not an ENA accession",
        id="malformed-single-accession",
    ),
    pytest.param(
        _source("ena", "accessions: [err2842367]\n"),
        "manifest.yaml:3: sources[0].ena.accessions[0]: 'err2842367' is not an ENA accession "
        "(accessions are upper case: 'ERR2842367')",
        id="lowercase-accession",
    ),
    pytest.param(
        _source("ena", "accessions: [MGYS00002008]\n"),
        "manifest.yaml:3: sources[0].ena.accessions[0]: 'MGYS00002008' is not an ENA accession "
        "(it is a MGnify accession: list it under 'mgnify:')",
        id="mgnify-accession-under-ena",
    ),
    pytest.param(
        _source("ena", "accessions: [123456]\n"),
        "manifest.yaml:3: sources[0].ena.accessions[0]: "
        "expected an accession (a string), got an integer (123456)",
        id="accession-number",
    ),
    pytest.param(
        _source("ena", "accessions: []\n"),
        "manifest.yaml:3: sources[0].ena.accessions: no accessions given",
        id="accessions-empty",
    ),
    pytest.param(
        _source("ena", "accessions:\n"),
        "manifest.yaml:3: sources[0].ena.accessions: no accessions given",
        id="accessions-null",
    ),
    pytest.param(
        _source("ena", "files: [fastq]\n"),
        "manifest.yaml:2: sources[0].ena: missing required key 'accessions'",
        id="accessions-missing",
    ),
    pytest.param(
        _source("ena", "accessions: {PRJEB1787: yes}\n"),
        "manifest.yaml:3: sources[0].ena.accessions: expected a list of accessions, got a mapping",
        id="accessions-mapping",
    ),
    pytest.param(
        _source("ena", "accessions: [ERR2842367]\nfiles: [fastq, fastqs]\n"),
        "manifest.yaml:4: sources[0].ena.files[1]: unknown file family 'fastqs' "
        "(did you mean 'fastq'?)",
        id="bad-file-family-suggested",
    ),
    pytest.param(
        _source("ena", "accessions: [ERR2842367]\nfiles: [bam]\n"),
        "manifest.yaml:4: sources[0].ena.files[0]: unknown file family 'bam' "
        "(expected one of fastq, submitted, sra, generated)",
        id="bad-file-family",
    ),
    pytest.param(
        _source("ena", "accessions: [ERR2842367]\nfiles: []\n"),
        "manifest.yaml:4: sources[0].ena.files: no file families given (choose from fastq, "
        "submitted, sra, generated, or leave out 'files' for the defaults)",
        id="empty-file-families",
    ),
    # top-level types
    pytest.param(
        "workers: many\n" + OK,
        "manifest.yaml:1: workers: expected an integer from 1 to 1024, got a string ('many')",
        id="workers-string",
    ),
    pytest.param(
        "workers: 0\n" + OK,
        "manifest.yaml:1: workers: must be an integer from 1 to 1024, got 0",
        id="workers-zero",
    ),
    pytest.param(
        "workers: 5000\n" + OK,
        "manifest.yaml:1: workers: must be an integer from 1 to 1024, got 5000",
        id="workers-too-many",
    ),
    pytest.param(
        "workers: true\n" + OK,
        "manifest.yaml:1: workers: expected an integer from 1 to 1024, got a boolean (true)",
        id="workers-bool",
    ),
    pytest.param(
        "workers: 2.5\n" + OK,
        "manifest.yaml:1: workers: expected an integer from 1 to 1024, got a number (2.5)",
        id="workers-float",
    ),
    pytest.param(
        "version: 2\n" + OK,
        "manifest.yaml:1: version: unsupported manifest version 2 (expected 1)",
        id="version-2",
    ),
    pytest.param(
        "version: '1'\n" + OK,
        "manifest.yaml:1: version: expected the integer 1, got a string ('1')",
        id="version-string",
    ),
    pytest.param(
        "dest: 42\n" + OK,
        "manifest.yaml:1: dest: expected a path (a string), got an integer (42)",
        id="dest-number",
    ),
    pytest.param(
        "dest: ''\n" + OK,
        "manifest.yaml:1: dest: expected a path (a string), got an empty string",
        id="dest-empty",
    ),
    # hosts
    pytest.param(
        "hosts: [www.ebi.ac.uk]\n" + OK,
        "manifest.yaml:1: hosts: expected a mapping of host names to limits, got a list",
        id="hosts-list",
    ),
    pytest.param(
        "hosts:\n  www.ebi.ac.uk: 50\n" + OK,
        "manifest.yaml:2: hosts['www.ebi.ac.uk']: "
        "expected a mapping with rate, connections and/or scope, got an integer (50)",
        id="host-limits-number",
    ),
    pytest.param(
        "hosts:\n  www.ebi.ac.uk: {rate: fast}\n" + OK,
        "manifest.yaml:2: hosts['www.ebi.ac.uk'].rate: "
        "expected a number greater than 0, got a string ('fast')",
        id="rate-string",
    ),
    pytest.param(
        "hosts:\n  www.ebi.ac.uk:\n    rate: 0\n" + OK,
        "manifest.yaml:3: hosts['www.ebi.ac.uk'].rate: must be a number greater than 0, got 0",
        id="rate-zero",
    ),
    pytest.param(
        "hosts:\n  www.ebi.ac.uk:\n    rate: -1\n" + OK,
        "manifest.yaml:3: hosts['www.ebi.ac.uk'].rate: must be a number greater than 0, got -1",
        id="rate-negative",
    ),
    pytest.param(
        "hosts:\n  localhost:8080:\n    connections: 1.5\n" + OK,
        "manifest.yaml:3: hosts['localhost:8080'].connections: "
        "expected an integer of at least 1, got a number (1.5)",
        id="connections-float",
    ),
    pytest.param(
        "hosts:\n  localhost:8080: {connections: 0}\n" + OK,
        "manifest.yaml:2: hosts['localhost:8080'].connections: "
        "must be an integer of at least 1, got 0",
        id="connections-zero",
    ),
    pytest.param(
        "hosts:\n  www.ebi.ac.uk: {rates: 5}\n" + OK,
        "manifest.yaml:2: hosts['www.ebi.ac.uk'].rates: unknown key (did you mean 'rate'?)",
        id="host-unknown-key",
    ),
    pytest.param(
        "hosts:\n  https://www.ebi.ac.uk/: {rate: 5}\n" + OK,
        "manifest.yaml:2: hosts['https://www.ebi.ac.uk/']: "
        "'https://www.ebi.ac.uk/' is a URL; give the host name alone (or host:port)",
        id="host-is-url",
    ),
    pytest.param(
        "hosts:\n  localhost:99999: {rate: 5}\n" + OK,
        "manifest.yaml:2: hosts['localhost:99999']: "
        "'localhost:99999' is not a host name or host:port",
        id="host-bad-port",
    ),
    pytest.param(
        "hosts:\n  localhost: {}\n" + OK,
        "manifest.yaml:2: hosts.localhost: expected rate, connections and/or scope",
        id="host-no-limits",
    ),
    pytest.param(
        "hosts:\n  www.ebi.ac.uk:\n    rate: 20\n    scope: machine\n" + OK,
        "manifest.yaml:4: hosts['www.ebi.ac.uk'].scope: 'machine' is not one of pull, member",
        id="host-scope-unknown",
    ),
    pytest.param(
        "hosts:\n  www.ebi.ac.uk: {scope: true}\n" + OK,
        "manifest.yaml:2: hosts['www.ebi.ac.uk'].scope: "
        "expected one of pull, member, got a boolean (true)",
        id="host-scope-bool",
    ),
    # endpoints
    pytest.param(
        "endpoints:\n  ena_portals: http://localhost:8080/portal\n" + OK,
        "manifest.yaml:2: endpoints.ena_portals: unknown key (did you mean 'ena_portal'?)",
        id="endpoint-key-suggested",
    ),
    pytest.param(
        "endpoints:\n  zzz: http://localhost:8080/portal\n" + OK,
        "manifest.yaml:2: endpoints.zzz: unknown key (expected one of ena_portal, ena_browser, "
        "ena_files, mgnify, mgnify_v2, enterobase, ega_access, ega_download, ega_auth, ega_data, "
        "ega_outbox, ega_metadata, cram_registry, webin, webin_upload)",
        id="endpoint-key",
    ),
    pytest.param(
        "endpoints:\n  ena_files: ftp://ftp.sra.ebi.ac.uk\n" + OK,
        "manifest.yaml:2: endpoints.ena_files: 'ftp://ftp.sra.ebi.ac.uk' "
        "is not an http or https URL",
        id="endpoint-ftp",
    ),
    pytest.param(
        "endpoints:\n  mgnify: localhost:8080/api\n" + OK,
        "manifest.yaml:2: endpoints.mgnify: 'localhost:8080/api' is not an http or https URL",
        id="endpoint-no-scheme",
    ),
    pytest.param(
        "endpoints:\n  mgnify: 8080\n" + OK,
        "manifest.yaml:2: endpoints.mgnify: expected an http(s) URL, got an integer (8080)",
        id="endpoint-number",
    ),
    pytest.param(
        "endpoints:\n  mgnify: http://localhost:8080/api?x=1\n" + OK,
        "manifest.yaml:2: endpoints.mgnify: 'http://localhost:8080/api?x=1': "
        "a base URL takes no query or fragment",
        id="endpoint-query",
    ),
    pytest.param(
        "endpoints: [http://localhost]\n" + OK,
        "manifest.yaml:1: endpoints: expected a mapping of service URLs, got a list",
        id="endpoints-list",
    ),
    # mgnify
    pytest.param(
        _source("mgnify", "pipeline_version: 5.0\n"),
        "manifest.yaml:2: sources[0].mgnify: no studies or analyses given",
        id="mgnify-no-studies",
    ),
    pytest.param(
        "sources:\n  - mgnify:\n",
        "manifest.yaml:2: sources[0].mgnify: no studies or analyses given",
        id="mgnify-null",
    ),
    pytest.param(
        _source("mgnify", "studies: [MGYS2008]\n"),
        "manifest.yaml:3: sources[0].mgnify.studies[0]: "
        "'MGYS2008' is not a MGnify study accession (MGYS and 8 digits) "
        "or an ENA study (ERP…, PRJ…)",
        id="mgnify-bad-study",
    ),
    pytest.param(
        _source("mgnify", "studies: [MGYS00002008]\nanalyses: [MGYS00002009]\n"),
        "manifest.yaml:4: sources[0].mgnify.analyses[0]: "
        "'MGYS00002009' is not a MGnify analysis accession (MGYA and 8 digits)",
        id="mgnify-study-as-analysis",
    ),
    pytest.param(
        _source("mgnify", "studies: [MGYS00002008]\ngroups: {a: b}\n"),
        "manifest.yaml:4: sources[0].mgnify.groups: expected a list of groups, got a mapping",
        id="mgnify-groups-mapping",
    ),
    pytest.param(
        _source("mgnify", "studies: [MGYS00002008]\npipeline_version: [5]\n"),
        "manifest.yaml:4: sources[0].mgnify.pipeline_version: "
        "expected a version such as '5.0', got a list",
        id="mgnify-version-list",
    ),
    # enterobase
    pytest.param(
        _source("enterobase", "query: {serotype: Agona}\n"),
        "manifest.yaml:2: sources[0].enterobase: missing required key 'database'",
        id="enterobase-no-database",
    ),
    pytest.param(
        _source("enterobase", "database: Salmonella\n"),
        "manifest.yaml:3: sources[0].enterobase.database: "
        "'Salmonella' is not an EnteroBase database name (such as 'senterica')",
        id="enterobase-bad-database",
    ),
    pytest.param(
        _source("enterobase", "database: senterica\nreldate: 0\n"),
        "manifest.yaml:4: sources[0].enterobase.reldate: must be an integer of at least 1, got 0",
        id="enterobase-reldate",
    ),
    pytest.param(
        _source("enterobase", "database: senterica\nquery: {serotype: [a, b]}\n"),
        "manifest.yaml:4: sources[0].enterobase.query.serotype: "
        "expected a string, number or boolean, got a list",
        id="enterobase-query-list",
    ),
    pytest.param(
        _source("enterobase", "database: senterica\nresource: strain\n"),
        "manifest.yaml:4: sources[0].enterobase.resource: 'strain' is not one of "
        "strains, assemblies, straindata, traces (did you mean 'strains'?)",
        id="enterobase-resource",
    ),
    pytest.param(
        _source("enterobase", "database: senterica\nsortorder: ascending\n"),
        "manifest.yaml:4: sources[0].enterobase.sortorder: 'ascending' is not one of asc, desc",
        id="enterobase-sortorder",
    ),
    pytest.param(
        _source("enterobase", "database: senterica\nassemblies: 1\n"),
        "manifest.yaml:4: sources[0].enterobase.assemblies: expected true or false, "
        "got an integer (1)",
        id="enterobase-assemblies",
    ),
    # ega
    pytest.param(
        _source("ega", "datasets: [EGAD0001]\n"),
        "manifest.yaml:3: sources[0].ega.datasets[0]: "
        "'EGAD0001' is not an EGA dataset accession (EGAD and 11 digits)",
        id="ega-bad-dataset",
    ),
    pytest.param(
        _source("ega", "files: [EGAD00010000805]\n"),
        "manifest.yaml:3: sources[0].ega.files[0]: "
        "'EGAD00010000805' is not an EGA file accession (EGAF and 11 digits)",
        id="ega-dataset-as-file",
    ),
    pytest.param(
        _source("ega", "protocol: tickets\n"),
        "manifest.yaml:2: sources[0].ega: no datasets or files given",
        id="ega-nothing",
    ),
    pytest.param(
        _source("ega", "datasets: [EGAD00010000805]\nprotocol: ticket\n"),
        "manifest.yaml:4: sources[0].ega.protocol: "
        "'ticket' is not one of tickets, data-api, outbox (did you mean 'tickets'?)",
        id="ega-protocol-suggested",
    ),
    pytest.param(
        _source("ega", "datasets: [EGAD00010000805]\nprotocol: sftp\n"),
        "manifest.yaml:4: sources[0].ega.protocol: 'sftp' is not one of tickets, data-api, outbox",
        id="ega-protocol",
    ),
    pytest.param(
        _source("ega", "datasets: [EGAD00010000805]\nprotocol: outbox\nssh_client: putty\n"),
        "manifest.yaml:5: sources[0].ega.ssh_client: 'putty' is not one of openssh, asyncssh",
        id="ega-ssh-client",
    ),
    pytest.param(
        _source("ega", "datasets: [EGAD00010000805]\nssh_client: asyncssh\n"),
        "manifest.yaml:4: sources[0].ega.ssh_client: only the outbox protocol uses SSH",
        id="ega-ssh-client-not-outbox",
    ),
    pytest.param(
        _source("ega", "datasets: [EGAD00010000805]\nkeep_encrypted: true\n"),
        "manifest.yaml:4: sources[0].ega.keep_encrypted: "
        "only the outbox protocol serves encrypted files",
        id="ega-keep-encrypted-not-outbox",
    ),
    # cram_refs
    pytest.param(
        _source("cram_refs", f"md5:\n  - {MD5}\n  - {MD5[:-1]}\n"),
        f"manifest.yaml:5: sources[0].cram_refs.md5[1]: '{MD5[:-1]}' is not an MD5 (32 hex digits)",
        id="cram-md5-short",
    ),
    pytest.param(
        _source("cram_refs", f"md5: [g{MD5[1:]}]\n"),
        f"manifest.yaml:3: sources[0].cram_refs.md5[0]: 'g{MD5[1:]}' is not an MD5 (32 hex digits)",
        id="cram-md5-not-hex",
    ),
    pytest.param(
        _source("cram_refs", "sha1: [abc]\n"),
        "manifest.yaml:3: sources[0].cram_refs.sha1[0]: 'abc' is not a SHA-1 (40 hex digits)",
        id="cram-sha1",
    ),
    pytest.param(
        _source("cram_refs", "cache: /tmp/refs\n"),
        "manifest.yaml:2: sources[0].cram_refs: no md5, sha1 or crams given",
        id="cram-nothing",
    ),
    pytest.param(
        _source("cram_refs", f"md5: [{MD5}]\ncache: 5\n"),
        "manifest.yaml:4: sources[0].cram_refs.cache: expected a path (a string), "
        "got an integer (5)",
        id="cram-cache-number",
    ),
    # credentials
    pytest.param(
        _source("ega", "datasets: [EGAD00010000805]\npassword: hunter2\n"),
        f"manifest.yaml:4: sources[0].ega.password: {CREDENTIALS}",
        id="credentials-password",
    ),
    pytest.param(
        _source("ega", "username: me\ndatasets: [EGAD00010000805]\n"),
        f"manifest.yaml:3: sources[0].ega.username: {CREDENTIALS}",
        id="credentials-username",
    ),
    pytest.param(
        "enterobase_token: abc\n" + OK,
        f"manifest.yaml:1: enterobase_token: {CREDENTIALS}",
        id="credentials-top-level-token",
    ),
    pytest.param(
        _source("enterobase", "database: senterica\nquery: {api_token: x}\n"),
        f"manifest.yaml:4: sources[0].enterobase.query.api_token: {CREDENTIALS}",
        id="credentials-in-query",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERROR_CASES)
def test_error_names_file_line_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    err = _load_error(tmp_path, monkeypatch, text)
    assert str(err) == expected
    assert err.file == "manifest.yaml"
    assert err.line == int(expected.split(":")[1])


def test_spec_example_error_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The very line SPEC.md quotes: line 12, second accession of the first source.
    text = "# a comment\n" * 7 + _source("ena", "accessions:\n  - ERR2842367\n  - XRR12\n")
    err = _load_error(tmp_path, monkeypatch, text)
    assert str(err) == (
        "manifest.yaml:12: sources[0].ena.accessions[1]: 'XRR12' is not an ENA accession"
    )
    assert (err.file, err.line, err.key) == ("manifest.yaml", 12, "sources[0].ena.accessions[1]")
    assert err.message == "'XRR12' is not an ENA accession"


def test_credential_value_is_never_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    err = _load_error(tmp_path, monkeypatch, "webin_password: s3cr3t-value\n" + OK)
    assert "s3cr3t-value" not in str(err)


def test_error_uses_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    monkeypatch.chdir(tmp_path)
    Path("conf/pull.yaml").write_text("sources: []\n", encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load_manifest(Path("conf/pull.yaml"))
    assert str(info.value) == "conf/pull.yaml:1: sources: no sources given"


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ManifestError) as info:
        load_manifest("absent.yaml")
    assert str(info.value) == "absent.yaml: cannot read manifest: No such file or directory"
    assert info.value.line is None
    _check_one_line(info.value)


def test_directory_instead_of_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("dir.yaml").mkdir()
    with pytest.raises(ManifestError, match=r"^dir\.yaml: cannot read manifest: "):
        load_manifest("dir.yaml")


def test_not_utf8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("manifest.yaml").write_bytes(OK.encode() + b"dest: caf\xe9\n")
    with pytest.raises(ManifestError) as info:
        load_manifest("manifest.yaml")
    assert str(info.value) == (
        "manifest.yaml:3: cannot read manifest: not UTF-8 text (invalid continuation byte)"
    )


def test_control_character(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    err = _load_error(tmp_path, monkeypatch, OK + "dest: a\x01b\n")
    assert str(err) == (
        "manifest.yaml:3: invalid YAML: special characters are not allowed (character 0x01)"
    )


# --------------------------------------------------------------------------- errors in dicts


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {"sources": [{"ena": {"accessions": ["ERR2842367", "XRR12"]}}]},
            "<dict>: sources[0].ena.accessions[1]: 'XRR12' is not an ENA accession",
            id="bad-accession",
        ),
        pytest.param({"sources": []}, "<dict>: sources: no sources given", id="empty-sources"),
        pytest.param({}, "<dict>: missing required key 'sources'", id="empty-mapping"),
        pytest.param(
            {"workers": "8", "sources": [{"ena": {"accessions": ["ERR2842367"]}}]},
            "<dict>: workers: expected an integer from 1 to 1024, got a string ('8')",
            id="workers-string",
        ),
        pytest.param(
            {"sources": [{"ena": {"accessions": ["ERR2842367"], "token": "x"}}]},
            f"<dict>: sources[0].ena.token: {CREDENTIALS}",
            id="credentials",
        ),
        pytest.param(
            {"sources": [{"ena": {"accessions": ("ERR2842367",)}, 1: 2}]},
            "<dict>: sources[0]: keys must be strings, got an integer (1)",
            id="non-string-key",
        ),
    ],
)
def test_dict_errors_name_the_key(data: dict[object, object], expected: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(data)  # type: ignore[arg-type]
    assert str(info.value) == expected
    assert info.value.file == "<dict>"
    assert info.value.line is None
    _check_one_line(info.value)


# --------------------------------------------------------------------------- mirror get


def test_manifest_from_accessions_groups_by_archive(tmp_path: Path) -> None:
    manifest = manifest_from_accessions(
        [
            "MGYA00140023",
            "ERR2842367",
            "EGAF00001383154",
            " PRJEB1787 ",
            "",
            "MGYS00002008",
            "EGAD00010000805",
            "ERR2842367",
        ],
        dest=tmp_path / "out",
        workers=4,
    )
    assert manifest == Manifest(
        dest=tmp_path / "out",
        sources=(
            EnaSpec(accessions=("ERR2842367", "PRJEB1787")),
            MgnifySpec(studies=("MGYS00002008",), analyses=("MGYA00140023",)),
            EgaSpec(datasets=("EGAD00010000805",), files=("EGAF00001383154",)),
        ),
        workers=4,
        origin="<command line>",
    )


def test_manifest_from_accessions_single_archive(tmp_path: Path) -> None:
    manifest = manifest_from_accessions(["SRR000001"], dest=tmp_path)
    assert manifest.sources == (EnaSpec(accessions=("SRR000001",)),)
    assert manifest.workers == 16
    assert manifest.dest == tmp_path


@pytest.mark.parametrize(
    ("accessions", "origin", "expected"),
    [
        pytest.param(
            ["ERR2842367", "XRR12"],
            "<command line>",
            "<command line>: 'XRR12' is not an ENA, MGnify or EGA accession",
            id="unknown",
        ),
        pytest.param(
            ["mgys00002008"],
            "ids.txt",
            "ids.txt: 'mgys00002008' is not an ENA, MGnify or EGA accession "
            "(accessions are upper case: 'MGYS00002008')",
            id="lowercase",
        ),
        pytest.param([], "<command line>", "<command line>: no accessions given", id="none"),
        pytest.param(["", "  "], "-", "-: no accessions given", id="only-blanks"),
    ],
)
def test_manifest_from_accessions_errors(
    tmp_path: Path, accessions: list[str], origin: str, expected: str
) -> None:
    with pytest.raises(ManifestError) as info:
        manifest_from_accessions(accessions, dest=tmp_path, origin=origin)
    assert str(info.value) == expected
    _check_one_line(info.value)


def test_manifest_from_accessions_workers(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="workers must be from 1 to 1024, got 0"):
        manifest_from_accessions(["ERR2842367"], dest=tmp_path, workers=0)


def test_dest_names_one_directory_from_any_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The manifest lives in a directory reached through a symlink: from inside it
    # (the kernel's cwd is the real path) and from outside (through the link) the
    # dest must be the same, absolute and resolved as --dest is, because state on
    # the archives' side (EGA request labels) is named after it.
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    (real / "m.yaml").write_text(
        "version: 1\ndest: data\nsources:\n  - ena: {accessions: [ERR164407]}\n"
    )
    monkeypatch.chdir(tmp_path)
    outside = load_manifest("link/m.yaml").dest
    monkeypatch.chdir(tmp_path / "link")
    inside = load_manifest("m.yaml").dest
    assert outside == inside == (real / "data").resolve()


@pytest.mark.parametrize(
    ("written", "asked"),
    [
        ('"5"', "5.0"),
        ("5", "5.0"),
        ('"4"', "4.0"),
        ("4.1", "4.1"),
        ('"4.1"', "4.1"),
        ("5.0", "5.0"),
    ],
)
def test_pipeline_version_is_spelled_as_mgnify_does(
    tmp_path: Path, written: str, asked: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "version: 1\nsources:\n  - mgnify:\n      studies: [MGYS00002008]\n"
        f"      pipeline_version: {written}\n"
    )
    (spec,) = load_manifest(path).sources
    assert isinstance(spec, MgnifySpec)
    assert spec.pipeline_version == asked


def test_a_mapping_nested_without_end_is_a_manifest_error() -> None:
    deep: dict[str, object] = {}
    inner = deep
    for _ in range(5000):
        inner["x"] = {}
        inner = inner["x"]  # type: ignore[assignment]
    with pytest.raises(ManifestError, match="nested too deeply"):
        load_manifest({"sources": [{"ena": {"accessions": ["ERR164407"]}}], "dest": deep})
