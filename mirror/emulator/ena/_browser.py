"""ENA's Browser API (``/ena/browser/api/xml/{accession}``) for runs, and the taxonomy
REST lookups (``/ena/taxonomy/rest/...``) that ENA's clients use.

The run XML follows ENA's own (a RUN_SET with one RUN: IDENTIFIERS, TITLE,
EXPERIMENT_REF, RUN_LINKS whose ``ENA-FASTQ-FILES``/``ENA-SUBMITTED-FILES`` links are
Portal /filereport URLs, RUN_ATTRIBUTES with spot/base counts and dates), as ffq's
recorded fixture of SRR8426358 shows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from .._context import CONTEXT, Context
from ._portal import PORTAL_PREFIX
from ._records import EnaRun

__all__ = ["BROWSER_PREFIX", "TAXONOMY_PREFIX", "build_browser_app", "build_taxonomy_app"]

BROWSER_PREFIX = "/ena/browser/api"
TAXONOMY_PREFIX = "/ena/taxonomy/rest"
_FASTQ_FIELDS = "run_accession,fastq_ftp,fastq_md5,fastq_bytes"
_SUBMITTED_FIELDS = "run_accession,submitted_ftp,submitted_md5,submitted_bytes,submitted_format"


def _link(db: str, ident: str) -> str:
    link = f"<XREF_LINK>\n<DB>{db}</DB>\n<ID>{escape(ident)}</ID>\n</XREF_LINK>\n"
    return f"<RUN_LINK>\n{link}</RUN_LINK>\n"


def _attribute(tag: str, value: str) -> str:
    return f"<RUN_ATTRIBUTE>\n<TAG>{tag}</TAG>\n<VALUE>{escape(value)}</VALUE>\n</RUN_ATTRIBUTE>\n"


def _run_xml(ctx: Context, run: EnaRun) -> str:
    extra = run.extra
    portal = ctx.public_base("www") + PORTAL_PREFIX
    report = f"{portal}/filereport?accession={run.accession}&result=read_run&fields="
    title = extra.get("experiment_title") or " ".join(
        part
        for part in (extra.get("instrument_model", ""), run.library_layout.lower(), "sequencing")
        if part
    )
    links = [
        _link("ENA-STUDY", run.secondary_study or run.study),
        _link("ENA-SAMPLE", run.secondary_sample or run.sample),
    ]
    if run.fastq:
        links.append(_link("ENA-FASTQ-FILES", report + _FASTQ_FIELDS))
    if run.submitted:
        links.append(_link("ENA-SUBMITTED-FILES", report + _SUBMITTED_FIELDS))
    attributes = [
        _attribute(tag, extra[key])
        for tag, key in (
            ("ENA-SPOT-COUNT", "read_count"),
            ("ENA-BASE-COUNT", "base_count"),
            ("ENA-FIRST-PUBLIC", "first_public"),
            ("ENA-LAST-UPDATE", "last_updated"),
        )
        if extra.get(key)
    ]
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<RUN_SET>\n',
        f"<RUN accession={quoteattr(run.accession)} alias={quoteattr(run.accession)}"
        ' center_name="EMULATED">\n',
        f"<IDENTIFIERS>\n<PRIMARY_ID>{run.accession}</PRIMARY_ID>\n</IDENTIFIERS>\n",
        f"<TITLE>{escape(title)}</TITLE>\n",
        f"<EXPERIMENT_REF accession={quoteattr(run.experiment)}>\n<IDENTIFIERS>\n"
        f"<PRIMARY_ID>{run.experiment}</PRIMARY_ID>\n</IDENTIFIERS>\n</EXPERIMENT_REF>\n",
        "<RUN_LINKS>\n",
        *links,
        "</RUN_LINKS>\n",
    ]
    if attributes:
        parts += ["<RUN_ATTRIBUTES>\n", *attributes, "</RUN_ATTRIBUTES>\n"]
    parts.append("</RUN>\n</RUN_SET>\n")
    return "".join(parts)


async def _xml(request: web.Request) -> web.Response:
    ctx = request.config_dict[CONTEXT]
    accession = request.match_info["accession"].upper()
    runs = list(ctx.catalog.runs_for(accession, "run"))
    if not runs:
        # The Browser API's answer for an accession it does not hold.
        return web.Response(status=404, text=f"Accession {accession} not found")
    return web.Response(text=_run_xml(ctx, runs[0]), content_type="application/xml")


def build_browser_app() -> web.Application:
    """``xml/{accession}`` for runs (a trailing slash is 404, as on ENA since 2024)."""
    app = web.Application()
    app.router.add_get("/xml/{accession:[^/]+}", _xml)
    return app


def _taxa(ctx: Context) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for record in ctx.catalog.iter_runs():
        name, tax_id = record.extra.get("scientific_name"), record.extra.get("tax_id")
        if name and tax_id and tax_id not in seen:
            seen.add(tax_id)
            yield tax_id, name


def _taxon(tax_id: str, name: str) -> dict[str, str]:
    # The fields of ENA's answer; rank and lineage are not in the catalog.
    return {
        "taxId": tax_id,
        "scientificName": name,
        "formalName": "true" if " " in name and name[0].isupper() else "false",
        "rank": "species",
        "division": "UNC",
        "lineage": "",
        "geneticCode": "1",
        "submittable": "true",
    }


async def _by_name(request: web.Request) -> web.Response:
    ctx = request.config_dict[CONTEXT]
    wanted = unquote(request.match_info["name"]).casefold()
    found = [_taxon(t, n) for t, n in _taxa(ctx) if n.casefold() == wanted]
    if not found:
        return web.Response(status=404, text="No results.")
    return web.json_response(found)


async def _by_id(request: web.Request) -> web.Response:
    ctx = request.config_dict[CONTEXT]
    wanted = request.match_info["tax_id"]
    for tax_id, name in _taxa(ctx):
        if tax_id == wanted:
            return web.json_response(_taxon(tax_id, name))
    return web.Response(status=404, text="No results.")


def build_taxonomy_app() -> web.Application:
    """``scientific-name/{name}`` (a list) and ``tax-id/{id}`` (one object)."""
    app = web.Application()
    app.router.add_get("/scientific-name/{name}", _by_name)
    app.router.add_get("/tax-id/{tax_id:[0-9]+}", _by_id)
    return app
