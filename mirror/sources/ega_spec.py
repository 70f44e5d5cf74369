"""The ``ega:`` manifest entry: datasets and files, the protocol, and the account to use.

Three sources serve it: :class:`~mirror.sources.ega.EgaTicketSource` (``tickets``, the
download API with re-encryption), :class:`~mirror.sources.ega_data.EgaDataSource`
(``data-api``, pyega3's) and :class:`~mirror.sources.ega_outbox.OutboxSource` (``outbox``,
the Live Outbox: SFTP and Crypt4GH).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal

from .. import _validate as v
from .._accessions import is_ega_dataset, is_ega_file
from .._exceptions import CredentialsError
from .._listing import Listing
from .._registry import Accessions, CredentialLookup, GetOptions, SourceKind
from . import Source, SourceContext
from .ega import EgaLogin, EgaTicketSource
from .ega_data import EgaDataSource

if TYPE_CHECKING:
    from .._listing import Lister

    # The outbox's modules (asyncssh, cryptography, crypt4gh: some 30 MB) are imported
    # when a manifest asks for the outbox, not by every pull that lists the sources.
    from .ega_ssh import OutboxLogin, SshClient

__all__ = ["KIND", "EgaSpec", "login", "parse"]

Protocol = Literal["tickets", "data-api", "outbox"]

OUTBOX_ENDPOINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ega_outbox": "sftp://outbox.ega-archive.org:22",
        "ega_metadata": "https://metadata.ega-archive.org",
    }
)
#: Set by a user of the outbox (besides EGA_USERNAME, and EGA_PASSWORD or the key).
OUTBOX_ENVIRONMENT: Final = ("EGA_SSH_KEY", "C4GH_SECRET_KEY", "C4GH_PASSPHRASE")

ENDPOINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ega_access": "https://ega.ebi.ac.uk/ega/rest/access/v2",
        "ega_download": "http://ega.ebi.ac.uk/ega/rest/download/v2",
        # The current EGA Data API (pyega3's default server file).
        "ega_auth": "https://ega.ebi.ac.uk:8443/ega-openid-connect-server/token",
        "ega_data": "https://ega.ebi.ac.uk:8443/v2",
        **OUTBOX_ENDPOINTS,
    }
)


@dataclass(frozen=True, kw_only=True, slots=True)
class EgaSpec:
    datasets: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    protocol: Protocol = "tickets"
    #: Outbox only: keep the ``.c4gh`` as served beside the plaintext.
    keep_encrypted: bool = False
    #: Outbox only: the SSH client (None: OpenSSH's ``ssh`` when installed).
    ssh_client: SshClient | None = None


def parse(w: v.Where, path: v.KeyPath, body: dict[str, object]) -> EgaSpec:
    datasets = v.optional_strings(
        w,
        path,
        body,
        "datasets",
        item="EGA dataset accession",
        check=v.pattern_check(is_ega_dataset, "an EGA dataset accession (EGAD and 11 digits)"),
    )
    files = v.optional_strings(
        w,
        path,
        body,
        "files",
        item="EGA file accession",
        check=v.pattern_check(is_ega_file, "an EGA file accession (EGAF and 11 digits)"),
    )
    if not datasets and not files:
        raise w.error(path, "no datasets or files given")
    raw = body.get("protocol")
    protocol: Protocol = "tickets"
    if raw is not None:
        chosen = v.choice(w, (*path, "protocol"), raw, ("tickets", "data-api", "outbox"))
        protocol = (
            "outbox" if chosen == "outbox" else "data-api" if chosen == "data-api" else "tickets"
        )
    raw_keep = body.get("keep_encrypted")
    keep = raw_keep is not None and v.boolean(w, (*path, "keep_encrypted"), raw_keep)
    if keep and protocol != "outbox":
        raise w.error((*path, "keep_encrypted"), "only the outbox protocol serves encrypted files")
    raw_client = body.get("ssh_client")
    client: SshClient | None = None
    if raw_client is not None:
        where = (*path, "ssh_client")
        chosen = v.choice(w, where, raw_client, ("openssh", "asyncssh"))
        if protocol != "outbox":
            raise w.error(where, "only the outbox protocol uses SSH")
        client = "openssh" if chosen == "openssh" else "asyncssh"
        if client == "openssh" and shutil.which("ssh") is None:
            raise w.error(where, "no ssh client on PATH (install OpenSSH's, or say asyncssh)")
    if protocol == "outbox" and files and not datasets:
        raise w.error(
            (*path, "files"),
            "the outbox lists files per dataset: give the datasets they belong to (datasets:)",
        )
    return EgaSpec(
        datasets=datasets, files=files, protocol=protocol, keep_encrypted=keep, ssh_client=client
    )


def login(spec: EgaSpec, lookup: CredentialLookup) -> EgaLogin | OutboxLogin:
    """The account: ``EGA_USERNAME``/``EGA_PASSWORD`` (else ``~/.netrc`` for the host the
    protocol logs in at), ``EGA_REKEY`` for tickets, and the Data API's OAuth client."""
    if spec.protocol == "outbox":
        from .ega_outbox import outbox_login

        return outbox_login(lookup)
    creds = lookup.credentials
    user, password = creds.get("EGA_USERNAME"), creds.get("EGA_PASSWORD")
    if user is None or password is None:
        key = "ega_access" if spec.protocol == "tickets" else "ega_auth"
        found = creds.for_host(lookup.endpoints[key])
        if found is not None and found[0] and found[1]:
            user, password = user or found[0], password or found[1]
    missing = [n for n, s in (("EGA_USERNAME", user), ("EGA_PASSWORD", password)) if not s]
    rekey = creds.get("EGA_REKEY")
    if spec.protocol == "tickets" and rekey is None:
        missing.append("EGA_REKEY")
    if missing or user is None or password is None:
        raise CredentialsError(
            f"{lookup.where}: {' and '.join(missing)} not set. EGA needs your account "
            "(EGA_USERNAME, EGA_PASSWORD, or a ~/.netrc entry for its host)"
            + (
                " and, for tickets, the re-encryption key EGA_REKEY"
                if spec.protocol == "tickets"
                else ""
            )
        )
    return EgaLogin(
        username=user.value,
        password=password,
        rekey=rekey,
        client_id=creds.get("EGA_CLIENT_ID"),
        client_secret=creds.get("EGA_CLIENT_SECRET"),
    )


def _build(spec: EgaSpec, ctx: SourceContext, account: EgaLogin | OutboxLogin) -> Source:
    if not isinstance(account, EgaLogin):
        from .ega_outbox import OutboxSource

        return OutboxSource(
            spec.datasets,
            spec.files,
            ctx,
            account,
            keep=spec.keep_encrypted,
            client=spec.ssh_client,
        )
    if spec.protocol == "tickets":
        return EgaTicketSource(spec.datasets, spec.files, ctx, account)
    return EgaDataSource(spec.datasets, spec.files, ctx, account)


@contextlib.asynccontextmanager
async def _lister(
    protocol: str, lookup: CredentialLookup, ctx: SourceContext
) -> AsyncIterator[Lister]:
    """``mirror ls ega``: the Data API's source or the outbox's, logged in as a run would."""
    if protocol == "outbox":
        from .ega_outbox import OutboxSource, outbox_login

        # Listing decrypts nothing: no Crypt4GH key is asked for.
        outbox = OutboxSource((), (), ctx, login=outbox_login(lookup, decrypt=False))
        try:
            yield outbox
        finally:
            await outbox.aclose()  # its SSH connection
        return
    account = login(EgaSpec(protocol="data-api"), lookup)
    if not isinstance(account, EgaLogin):
        raise TypeError("the Data API's login is an EgaLogin")
    yield EgaDataSource((), (), ctx, login=account)


def _entry(accessions: tuple[str, ...], options: GetOptions) -> EgaSpec:
    return EgaSpec(
        datasets=tuple(a for a in accessions if is_ega_dataset(a)),
        files=tuple(a for a in accessions if not is_ega_dataset(a)),
    )


KIND: SourceKind[EgaSpec, EgaLogin | OutboxLogin] = SourceKind(
    key="ega",
    spec=EgaSpec,
    fields=("datasets", "files", "protocol", "keep_encrypted", "ssh_client"),
    parse=parse,
    credentials=login,
    build=_build,
    environment=("EGA_USERNAME", "EGA_PASSWORD", "EGA_REKEY", *OUTBOX_ENVIRONMENT),
    # The Data API's OAuth client, when not pyega3's; the outbox's SSH key passphrase
    # and known hosts.
    optional_environment=(
        "EGA_CLIENT_ID",
        "EGA_CLIENT_SECRET",
        "EGA_SSH_PASSPHRASE",
        "EGA_KNOWN_HOSTS",
    ),
    endpoints=ENDPOINTS,
    accessions=Accessions(
        title="EGA",
        claims=lambda acc: is_ega_dataset(acc) or is_ega_file(acc),
        entry=_entry,
    ),
    listing=Listing(
        protocols=("data-api", "outbox"),
        is_dataset=is_ega_dataset,
        dataset="an EGA dataset accession (EGAD and 11 digits)",
        open=_lister,
    ),
)
