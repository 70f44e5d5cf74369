"""Links on the public host are moved onto the configured endpoint; others are not."""

from __future__ import annotations

import pytest

from mirror.sources._links import rewrite

MG = "https://www.ebi.ac.uk/metagenomics/api/v1"
EB = "https://enterobase.warwick.ac.uk/api/v2.0"


@pytest.mark.parametrize(
    ("url", "configured", "default", "expected"),
    [
        pytest.param(
            f"{MG}/analyses?page=2",
            "http://127.0.0.1:8/metagenomics/api/v1",
            MG,
            "http://127.0.0.1:8/metagenomics/api/v1/analyses?page=2",
            id="same-path",
        ),
        pytest.param(
            f"{MG}/analyses/MGYA1/file/x.tsv",
            "http://mirror.local/mg",
            MG,
            "http://mirror.local/mg/analyses/MGYA1/file/x.tsv",
            id="other-prefix",
        ),
        pytest.param(
            "http://enterobase.warwick.ac.uk/api/v2.0/senterica/assemblies?offset=50",
            "http://127.0.0.1:9/api/v2.0",
            EB,
            "http://127.0.0.1:9/api/v2.0/senterica/assemblies?offset=50",
            id="http-link",
        ),
        pytest.param(
            "http://enterobase.warwick.ac.uk/upload/download?assembly_barcode=X",
            EB,
            EB,
            "https://enterobase.warwick.ac.uk/upload/download?assembly_barcode=X",
            id="public-http-link-upgraded-to-https",
        ),
        pytest.param(
            "http://enterobase.warwick.ac.uk/upload/download?a=1",
            "http://127.0.0.1:9/api/v2.0",
            EB,
            "http://127.0.0.1:9/upload/download?a=1",
            id="outside-base-path",
        ),
        pytest.param(
            "https://ftp.ebi.ac.uk/pub/x.gz",
            "http://127.0.0.1:8/mg",
            MG,
            "https://ftp.ebi.ac.uk/pub/x.gz",
            id="other-host",
        ),
    ],
)
def test_rewrite(url: str, configured: str, default: str, expected: str) -> None:
    assert rewrite(url, configured, default) == expected
