"""URL helpers: the host key of limits and gates, URLs safe to show, Basic auth.

Pure string work on URLs, shared by the HTTP client, the fetcher, the sources and
the index; nothing here touches the network.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit, urlunsplit

__all__ = ["basic_auth", "host_key", "redact_url"]

_SECRET_PARAMS = frozenset({"session", "token", "access_token", "password", "pass", "key"})


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` value for HTTP Basic (RFC 7617, UTF-8)."""
    raw = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {raw}"


def host_key(url: str) -> str:
    """``host`` or ``host:port`` of ``url``, the key of host limits and gates.

    Spelt as in a URL and in the manifest's ``hosts:``: lower-cased, and an IPv6
    literal in brackets (``[::1]:8080``), which ``urlsplit().hostname`` drops.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def redact_url(url: str) -> str:
    """``url`` with user info and secret query parameters replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "&".join(
        f"{k}=***" if k.lower() in _SECRET_PARAMS else (f"{k}={v}" if sep else k)
        for k, sep, v in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
