"""``mirror ls ega``: the datasets an account may download and their files, from the
emulator's Data API over loopback and from the Live Outbox (OpenSSH's sshd, tests/outbox.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mirror.emulator import Catalog, EgaDataset, EgaFile, EgaOptions
from tests.inproc import Cli, ThreadedEmulator
from tests.outbox import SMALL_CATALOG, OutboxServer
from tests.replay import Answer, Replay
from tests.threaded import serving

USER, PASSWORD = "lister@example.org", "pw-S3CRET-ls-71c2"
GRANTED, OTHER, REFUSED = "EGAD00010000805", "EGAD00010000806", "EGAD00010000999"
RECORDED_DATASET = "EGAD00001003338"


def _files(dataset: str, n: int, **last: str) -> tuple[EgaFile, ...]:
    return tuple(
        EgaFile(
            file_id=f"EGAF{dataset[-5:]}{i:06d}",
            file_name=f"EGAZ0000000{i}/b37/sample_{i}.bam.cip",
            size=1000 * (i + 1) + i,
            dataset=dataset,
            **(last if i == n - 1 else {}),
        )
        for i in range(n)
    )


#: Two datasets granted to USER (one file of the first is not available), one not.
CATALOG = Catalog(
    ega_datasets=(
        EgaDataset(dataset_id=GRANTED, files=_files(GRANTED, 3, status="unavailable")),
        EgaDataset(dataset_id=OTHER, files=_files(OTHER, 1)),
        EgaDataset(dataset_id=REFUSED, files=_files(REFUSED, 2)),
    )
)
OPTIONS = EgaOptions(users={USER: PASSWORD}, grants={USER: [GRANTED, OTHER]})
ENV = {"EGA_USERNAME": USER, "EGA_PASSWORD": PASSWORD}


@pytest.fixture
def ega(emulator_thread: Callable[..., ThreadedEmulator]) -> ThreadedEmulator:
    return emulator_thread(CATALOG, ega=OPTIONS)


def endpoints(emu: ThreadedEmulator) -> list[str]:
    args = []
    for name in ("ega_auth", "ega_data"):
        args += ["--endpoint", f"{name}={emu.endpoints[name]}"]
    return args


def test_without_datasets_lists_the_granted_ones(ega: ThreadedEmulator, cli: Cli) -> None:
    done = cli("ls", "ega", *endpoints(ega), env=ENV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [GRANTED, OTHER]
    as_json = cli("ls", "ega", "--json", *endpoints(ega), env=ENV)
    doc = json.loads(as_json.stdout)
    assert doc == {
        "archive": "ega",
        "protocol": "data-api",
        "datasets": [
            {"id": GRANTED, "files": None, "error": None},
            {"id": OTHER, "files": None, "error": None},
        ],
    }


def test_a_datasets_files_as_a_table_and_as_json(ega: ThreadedEmulator, cli: Cli) -> None:
    done = cli("ls", "ega", GRANTED, *endpoints(ega), env=ENV)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{GRANTED}  3 files, 5.9 KiB"
    assert lines[1].split() == ["FILE", "NAME", "SIZE", "STATUS", "CHECKSUM"]
    files = CATALOG.ega_datasets[0].files
    for line, f in zip(lines[2:], files, strict=True):
        cells = line.split()
        # Names as they land (.cip dropped: the plain download is not encrypted).
        assert cells[:2] == [f.file_id, f"sample_{files.index(f)}.bam"]
        assert cells[-2:] == [f.status, "MD5"]
    # Columns are aligned: every row's status starts where the header's does.
    at = lines[1].index("STATUS")
    assert {line[at : at + 5] for line in lines[2:]} <= {"avail", "unava"}

    doc = json.loads(cli("ls", "ega", GRANTED, "--json", *endpoints(ega), env=ENV).stdout)
    assert doc["datasets"] == [
        {
            "id": GRANTED,
            "error": None,
            "files": [
                {
                    "id": f.file_id,
                    "name": Path(f.file_name).name.removesuffix(".cip"),
                    "size": f.size,
                    "status": f.status,
                    "checksum_type": "MD5",
                }
                for f in files
            ],
        }
    ]
    # The size is the plaintext's (what lands): the API lists IV_SIZE bytes more.
    listed = [e for e in ega.log() if e["path"] == f"/v2/metadata/datasets/{GRANTED}/files"]
    assert len(listed) == 2


def test_a_refused_dataset_is_named_and_exits_one(ega: ThreadedEmulator, cli: Cli) -> None:
    done = cli("ls", "ega", OTHER, REFUSED, "--json", *endpoints(ega), env=ENV)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert [d["id"] for d in doc["datasets"]] == [OTHER, REFUSED]
    only = CATALOG.ega_datasets[1].files[0]
    assert [f["id"] for f in doc["datasets"][0]["files"]] == [only.file_id]
    assert doc["datasets"][1]["files"] is None
    assert "HTTP 403" in doc["datasets"][1]["error"]
    assert (
        f"not authorised for metadata/datasets/{REFUSED}/files (HTTP 403): ask the" in done.stderr
    )


def test_a_wrong_password_exits_two_without_it(ega: ThreadedEmulator, cli: Cli) -> None:
    wrong = {**ENV, "EGA_PASSWORD": "not-the-S3CRET"}
    for extra in ((), (GRANTED,)):
        done = cli("ls", "ega", *extra, *endpoints(ega), env=wrong)
        assert done.returncode == 2
        assert "EGA refused the login (EGA_USERNAME/EGA_PASSWORD)" in done.stderr
        assert done.stdout == ""
        for text in (done.stdout, done.stderr):
            assert "not-the-S3CRET" not in text
            assert USER not in text
    assert not any("/metadata/" in e["path"] for e in ega.log())


def test_missing_credentials_and_bad_arguments_exit_two(cli: Cli) -> None:
    done = cli("ls", "ega", env={"EGA_USERNAME": "", "EGA_PASSWORD": "", "NETRC": "/nonexistent"})
    assert done.returncode == 2
    assert "EGA_USERNAME and EGA_PASSWORD not set" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert cli("ls", "ega", "EGAF00000000001", env=ENV).returncode == 2
    ena = cli("ls", "ena", env=ENV)
    assert ena.returncode == 2
    assert "'ena' cannot be listed; one of: ega" in ena.stderr
    protocol = cli("ls", "ega", "--protocol", "tickets", env=ENV)
    assert protocol.returncode == 2
    assert "ega lists through data-api, outbox, not 'tickets'" in protocol.stderr
    bad = cli("ls", "ega", "--endpoint", "ega_data=ftp://x", env=ENV)
    assert bad.returncode == 2
    assert "URL http or https" in bad.stderr


# -- the Live Outbox ---------------------------------------------------------------------

OUTBOX_DATASET = SMALL_CATALOG.outbox_datasets[0]


def outbox_args(server: OutboxServer) -> list[str]:
    args = ["--protocol", "outbox"]
    for name, url in server.endpoints().items():
        args += ["--endpoint", f"{name}={url}"]
    return args


def outbox_env(server: OutboxServer) -> dict[str, str]:
    # No Crypt4GH key: a listing decrypts nothing.
    env = server.env(key=False)
    env["C4GH_SECRET_KEY"] = env["C4GH_PASSPHRASE"] = ""
    return {**env, "EGA_KNOWN_HOSTS": str(server.known_hosts)}


@pytest.mark.parametrize("client", ["openssh", "asyncssh"])
def test_outbox_datasets_and_files_with_the_cold_one_unavailable(
    outbox: OutboxServer, cli: Cli, client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client a run picks where no manifest says (OpenSSH's ssh where installed).
    monkeypatch.setattr("mirror.sources.ega_ssh.default_client", lambda: client)
    done = cli("ls", "ega", *outbox_args(outbox), env=outbox_env(outbox))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [OUTBOX_DATASET.dataset_id]

    dataset = OUTBOX_DATASET.dataset_id
    listed = cli("ls", "ega", dataset, "--json", *outbox_args(outbox), env=outbox_env(outbox))
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["protocol"] == "outbox"
    expected = sorted(
        (
            {
                "id": f.accession,
                "name": f.name,
                "size": f.size,
                "status": "unavailable" if i == 2 else "available",
                "checksum_type": "MD5" if i == 3 else "SHA256",
            }
            for i, f in enumerate(OUTBOX_DATASET.files)
        ),
        key=lambda f: str(f["name"]),
    )
    assert doc["datasets"] == [{"id": dataset, "error": None, "files": expected}]

    table = cli("ls", "ega", dataset, *outbox_args(outbox), env=outbox_env(outbox))
    assert table.returncode == 0
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[2:]}
    assert rows[OUTBOX_DATASET.files[2].accession][-2:] == ["unavailable", "SHA256"]


def test_outbox_a_dataset_not_there_exits_one_and_a_wrong_password_two(
    outbox: OutboxServer, cli: Cli
) -> None:
    done = cli("ls", "ega", "EGAD50000000099", *outbox_args(outbox), env=outbox_env(outbox))
    assert done.returncode == 1
    assert "no directory EGAD50000000099" in done.stderr
    wrong = {**outbox_env(outbox), "EGA_PASSWORD": "wrong-S3CRET-pw"}
    refused = cli("ls", "ega", *outbox_args(outbox), env=wrong)
    assert refused.returncode == 2
    assert "refused the login (EGA_USERNAME with EGA_PASSWORD)" in refused.stderr
    assert "wrong-S3CRET-pw" not in refused.stdout + refused.stderr


# -- the Data API as EGA answers it (recorded) --------------------------------------------


def test_the_recorded_listing_and_datasets_as_pyega3_reads_them(cli: Cli) -> None:
    """``metadata/datasets`` as pyega3 reads it (a list of ids); the real listing of
    tests/fixtures/real-responses/ega/dataset_files.json, every file shown."""
    routes: dict[str, Answer | Callable[..., Answer]] = {
        "/ega-openid-connect-server/token": Answer.recorded("ega/token_answer.json"),
        "/v2/metadata/datasets": Answer(body=json.dumps([RECORDED_DATASET]).encode()),
        f"/v2/metadata/datasets/{RECORDED_DATASET}/files": Answer.recorded(
            "ega/dataset_files.json"
        ),
    }
    with serving(Replay(routes)) as served:
        base = served.value.base
        args = [
            *("--endpoint", f"ega_auth={base}/ega-openid-connect-server/token"),
            *("--endpoint", f"ega_data={base}/v2"),
        ]
        granted = cli("ls", "ega", "--json", *args, env=ENV)
        listed = cli("ls", "ega", RECORDED_DATASET, "--json", *args, env=ENV)
    assert granted.returncode == 0, granted.stderr
    assert [d["id"] for d in json.loads(granted.stdout)["datasets"]] == [RECORDED_DATASET]
    assert listed.returncode == 0, listed.stderr
    files = json.loads(listed.stdout)["datasets"][0]["files"]
    assert files == [
        {
            "id": "EGAF00001753747",
            "name": "NA12878.bam.bai",
            "size": 8_949_984 - 16,
            "status": "available",
            "checksum_type": "MD5",
        },
        {
            "id": "EGAF00001753748",
            "name": "NA12878.bam.gpg",
            "size": 1_000_000,
            "status": "available",
            "checksum_type": "MD5",
        },
        {
            "id": "EGAF00001753749",
            "name": "NA12879.bam",
            "size": 2_000_000,
            "status": "unavailable",
            "checksum_type": "MD5",
        },
    ]
