"""Following the links an archive hands back, on the endpoint the manifest configured."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["rewrite"]


def rewrite(url: str, configured: str, default: str) -> str:
    """``url`` moved onto ``configured`` when it names ``default``'s public host.

    MGnify and EnteroBase answer with absolute links to their public hosts (and
    EnteroBase's say ``http://``). When the manifest points a service elsewhere (a
    local mirror, the emulator), following those links would leave it; so a link
    on the default host gets the configured scheme and host, and, where its path
    starts with the default base path, the configured base path (SPEC.md). Links to
    any other host are followed as given. On the default endpoint itself this turns
    EnteroBase's ``http://`` links into ``https://``, so its token never crosses the
    network in clear.
    """
    link = urlsplit(url)
    base = urlsplit(default)
    if (link.hostname or "").lower() != (base.hostname or "").lower():
        return url
    target = urlsplit(configured)
    path = link.path
    prefix = base.path.rstrip("/")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = target.path.rstrip("/") + path[len(prefix) :]
    return urlunsplit((target.scheme, target.netloc, path, link.query, link.fragment))
