"""MGnify download items → tasks: checksums, unsafe names, filters (pure, no network)."""

from __future__ import annotations

from typing import Any

import pytest

from mirror._config import MgnifySpec
from mirror._exceptions import ManifestError
from mirror._manifest import load_manifest
from mirror.sources.enterobase import records_of
from mirror.sources.mgnify import download_task

FILE = "https://www.ebi.ac.uk/metagenomics/api/v1/analyses/MGYA00000001/file"


def item(alias: str, checksum: str = "ab" * 20, algorithm: str = "SHA1") -> dict[str, Any]:
    return {
        "type": "analysis-job-downloads",
        "id": alias,
        "attributes": {
            "alias": alias,
            "description": {"label": "Reads encoding SSU rRNA", "description": ""},
            "group-type": "Taxonomic analysis SSU rRNA",
            "file-format": {"name": "FASTA", "extension": "fasta", "compression": True},
            "file-checksum": {"checksum": checksum, "checksum-algorithm": algorithm},
        },
        "relationships": {"pipeline": {"data": {"type": "pipelines", "id": "5.0"}}},
        "links": {"self": f"{FILE}/{alias}"},
    }


def test_sha1_is_verified_when_given() -> None:
    task = download_task("MGYA00000001", item("x_SSU.fasta.gz", checksum="AB" * 20))
    assert (task.path, task.verify, task.checksum, task.error) == (
        "mgnify/MGYA00000001/x_SSU.fasta.gz",
        "sha1",
        "ab" * 20,
        None,
    )
    assert task.url == f"{FILE}/x_SSU.fasta.gz"


def test_empty_checksum_falls_back_to_size() -> None:
    task = download_task("MGYA00000001", item("old.tsv", checksum=""))
    assert (task.verify, task.checksum) == ("size", None)


@pytest.mark.parametrize("alias", ["../../evil.txt", "/etc/passwd", "", ".."])
def test_unsafe_alias_becomes_a_failing_task_inside_dest(alias: str) -> None:
    task = download_task("MGYA00000001", item(alias))
    assert task.error is not None
    assert "unsafe file name" in task.error
    head, _, name = task.path.rpartition("/")
    assert head == "mgnify/MGYA00000001"
    assert "/" not in name
    assert name not in ("", ".", "..")


def test_links_are_followed_through_the_rewriter() -> None:
    task = download_task(
        "MGYA00000001",
        item("a.tsv"),
        lambda u: u.replace("https://www.ebi.ac.uk", "http://127.0.0.1:1"),
    )
    assert task.url.startswith("http://127.0.0.1:1/metagenomics/api/v1/")


def test_enterobase_straindata_dict_keeps_its_barcodes() -> None:
    doc = {
        "straindata": {"SAL_AA0001AA": {"strain_name": "a"}, "SAL_AA0002AA": {"x": 1}},
        "links": {"paging": {}},
    }
    assert records_of(doc, "straindata") == [
        {"strain_barcode": "SAL_AA0001AA", "strain_name": "a"},
        {"strain_barcode": "SAL_AA0002AA", "x": 1},
    ]


def test_enterobase_list_under_its_resource_key() -> None:
    doc = {"Assemblies": [{"assembly_barcode": "SAL_IA5204AA_AS"}], "links": {}}
    assert records_of(doc, "assemblies") == [{"assembly_barcode": "SAL_IA5204AA_AS"}]
    assert records_of({"Assemblies": [], "links": {}}, "assemblies") == []


@pytest.mark.parametrize("study", ["MGYS00000001", "ERP136943", "SRP000001", "DRP000001"])
def test_manifest_takes_study_accessions_mgnify_takes(study: str) -> None:
    """MGnify looks a study up by MGYS, its ENA study (ERP/SRP/DRP) or BioProject."""
    manifest = load_manifest({"sources": [{"mgnify": {"studies": [study, "PRJEB52249"]}}]})
    assert manifest.sources == (MgnifySpec(studies=(study, "PRJEB52249")),)


@pytest.mark.parametrize("wrong", ["ERR2842367", "MGYA00000001", "SAMEA2619376"])
def test_manifest_refuses_what_is_not_a_study(wrong: str) -> None:
    with pytest.raises(ManifestError, match=f"'{wrong}' is not a MGnify study accession"):
        load_manifest({"sources": [{"mgnify": {"studies": [wrong]}}]})
