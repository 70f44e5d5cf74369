"""Accession patterns: official ENA kinds, MGnify and EGA, and the near-misses around them."""

from __future__ import annotations

import pytest

from mirror._accessions import (
    ENA_KINDS,
    Archive,
    EnaKind,
    PortalType,
    archive_of,
    ena_kind,
    is_ega_dataset,
    is_ega_file,
    is_ena,
    is_mgnify_analysis,
    is_mgnify_study,
    portal_type,
)

ENA_CASES = [
    pytest.param("PRJEB1787", "project", id="project-prjeb"),
    pytest.param("PRJNA257197", "project", id="project-prjna"),
    pytest.param("PRJDB2", "project", id="project-prjdb-short"),
    pytest.param("ERP001736", "study", id="study-erp"),
    pytest.param("SRP000001", "study", id="study-srp"),
    pytest.param("DRP1234567", "study", id="study-drp-seven-digits"),
    pytest.param("SAMEA2619376", "biosample", id="biosample-samea"),
    pytest.param("SAMN12345678", "biosample", id="biosample-samn"),
    pytest.param("SAMD00000001", "biosample", id="biosample-samd"),
    pytest.param("SAME1234", "biosample", id="biosample-no-letter"),
    pytest.param("ERS000001", "sample", id="sample-ers"),
    pytest.param("SRS1234567", "sample", id="sample-srs"),
    pytest.param("ERX123456", "experiment", id="experiment-erx"),
    pytest.param("DRX000001", "experiment", id="experiment-drx"),
    pytest.param("ERR2842367", "run", id="run-err"),
    pytest.param("SRR123456", "run", id="run-srr-six-digits"),
    pytest.param("DRR000001", "run", id="run-drr"),
    pytest.param("ERZ123456", "analysis", id="analysis-erz"),
    pytest.param("ERA123456", "submission", id="submission-era"),
    pytest.param("SRA000001", "submission", id="submission-sra"),
    # Near misses: none of these is an ENA accession.
    pytest.param("XRR12", None, id="unknown-prefix"),
    pytest.param("XRR123456", None, id="unknown-prefix-long"),
    pytest.param("ERR12345", None, id="run-five-digits"),
    pytest.param("ERR", None, id="run-no-digits"),
    pytest.param("PRJEB", None, id="project-no-digits"),
    pytest.param("PRJXB1", None, id="project-bad-centre"),
    pytest.param("PRJE1", None, id="project-no-letter"),
    pytest.param("err123456", None, id="lowercase-run"),
    pytest.param("Err123456", None, id="mixed-case-run"),
    pytest.param("prjeb1787", None, id="lowercase-project"),
    pytest.param("SAMEA", None, id="samea-no-digits"),
    pytest.param("SAMEAB123", None, id="samea-two-letters"),
    pytest.param("SAMX123", None, id="biosample-bad-centre"),
    pytest.param("samea2619376", None, id="lowercase-biosample"),
    pytest.param("ERR123456 ", None, id="trailing-space"),
    pytest.param(" ERR123456", None, id="leading-space"),
    pytest.param("ERR123456\n", None, id="trailing-newline"),
    pytest.param("ERR123456_1", None, id="suffix"),
    pytest.param("ERR１２３４５６", None, id="non-ascii-digits"),
    pytest.param("", None, id="empty"),
    pytest.param("MGYS00002008", None, id="mgnify-is-not-ena"),
    pytest.param("EGAD00010000805", None, id="ega-is-not-ena"),
    pytest.param("GCA_000001405.15", None, id="assembly-not-accepted"),
]


@pytest.mark.parametrize(("acc", "kind"), ENA_CASES)
def test_ena_kind(acc: str, kind: EnaKind | None) -> None:
    assert ena_kind(acc) == kind
    assert is_ena(acc) is (kind is not None)


def test_ena_kinds_lists_every_kind() -> None:
    assert set(ENA_KINDS) == {
        "project",
        "study",
        "biosample",
        "sample",
        "experiment",
        "run",
        "analysis",
        "submission",
    }


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param("project", "study", id="project"),
        pytest.param("study", "study", id="study"),
        pytest.param("biosample", "sample", id="biosample"),
        pytest.param("sample", "sample", id="sample"),
        pytest.param("experiment", "experiment", id="experiment"),
        pytest.param("run", "run", id="run"),
        pytest.param("analysis", "analysis", id="analysis"),
        pytest.param("submission", None, id="submission-has-no-portal-type"),
    ],
)
def test_portal_type(kind: EnaKind, expected: PortalType | None) -> None:
    assert portal_type(kind) == expected


@pytest.mark.parametrize(
    ("acc", "archive"),
    [
        pytest.param("MGYS00002008", "mgnify", id="mgnify-study"),
        pytest.param("MGYA00140023", "mgnify", id="mgnify-analysis"),
        pytest.param("EGAD00010000805", "ega", id="ega-dataset"),
        pytest.param("EGAF00001383154", "ega", id="ega-file"),
        pytest.param("PRJEB1787", "ena", id="ena-project"),
        pytest.param("ERR2842367", "ena", id="ena-run"),
        pytest.param("SAMN12345678", "ena", id="ena-biosample"),
        pytest.param("ERA123456", "ena", id="ena-submission"),
        pytest.param("MGYS0000200", None, id="mgnify-seven-digits"),
        pytest.param("MGYS000020080", None, id="mgnify-nine-digits"),
        pytest.param("mgys00002008", None, id="mgnify-lowercase"),
        pytest.param("MGYP00002008", None, id="mgnify-protein-not-served"),
        pytest.param("EGAD0001000080", None, id="ega-ten-digits"),
        pytest.param("EGAS00001000805", None, id="ega-study-not-served"),
        pytest.param("XRR12", None, id="nothing"),
        pytest.param("", None, id="empty"),
    ],
)
def test_archive_of(acc: str, archive: Archive | None) -> None:
    assert archive_of(acc) == archive


@pytest.mark.parametrize(
    ("acc", "study", "analysis", "dataset", "file"),
    [
        pytest.param("MGYS00002008", True, False, False, False, id="mgys"),
        pytest.param("MGYA00140023", False, True, False, False, id="mgya"),
        pytest.param("EGAD00010000805", False, False, True, False, id="egad"),
        pytest.param("EGAF00001383154", False, False, False, True, id="egaf"),
        pytest.param("ERR2842367", False, False, False, False, id="ena-run"),
    ],
)
def test_small_predicates(acc: str, study: bool, analysis: bool, dataset: bool, file: bool) -> None:
    assert is_mgnify_study(acc) is study
    assert is_mgnify_analysis(acc) is analysis
    assert is_ega_dataset(acc) is dataset
    assert is_ega_file(acc) is file
