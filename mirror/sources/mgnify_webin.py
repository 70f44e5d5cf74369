"""MGnify API v2's Webin login: a sliding JWT, refreshed before it expires.

``POST /auth/sliding`` with ``{"username", "password"}`` answers ``{"token"}``;
``POST /auth/sliding/refresh`` with ``{"token"}`` a new one that keeps the first
login's ``refresh_exp`` (django-ninja-jwt), so after that a fresh login is needed.
The API refuses a bad or expired token with 401 on every endpoint, anonymous ones too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._credentials import Secret
from .._exceptions import CredentialsError, HTTPStatusError, SourceError
from . import SourceContext

__all__ = ["REFRESH_MARGIN", "WebinLogin", "WebinSession"]

logger = logging.getLogger(__name__)

#: Refreshed when less than this much of a token's life is left (or a quarter of
#: its lifetime, when that is shorter).
REFRESH_MARGIN = 300.0


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class WebinLogin:
    """``MGNIFY_WEBIN_USER`` / ``MGNIFY_WEBIN_PASSWORD``."""

    username: Secret
    password: Secret


def _claims(token: str) -> dict[str, Any]:
    """A JWT's payload (base64url JSON), read without checking its signature."""
    try:
        part = token.split(".")[1]
        doc = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


class WebinSession:
    """A Webin JWT for MGnify v2, logged in when first needed and refreshed in time.

    The token never leaves this object but in an ``Authorization`` header: not in a
    message, a log line or the state store.
    """

    def __init__(
        self,
        ctx: SourceContext,
        base: str,
        login: WebinLogin,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.ctx = ctx
        self.base = base
        self.login = login
        self.now = now
        self._token: str | None = None
        self._exp = self._iat = 0.0
        self._lock = asyncio.Lock()

    async def bearer(self) -> str:
        """A token that is not about to expire."""
        async with self._lock:
            token = self._token
            if token is not None and self.now() < self._exp - self._margin():
                return token
            if token is not None:
                refreshed = await self._post("/auth/sliding/refresh", {"token": token})
                if refreshed is not None:
                    logger.info("MGnify: Webin token refreshed")
                    return self._keep(refreshed)
                logger.info("MGnify: Webin token refresh refused; logging in again")
            return self._keep(await self._log_in())

    async def refused(self, token: str) -> None:
        """The API refused ``token`` (401): the next :meth:`bearer` renews it."""
        async with self._lock:
            if self._token == token:
                self._exp = 0.0

    def _margin(self) -> float:
        return min(REFRESH_MARGIN, max(0.0, self._exp - self._iat) / 4)

    def _keep(self, token: str) -> str:
        claims = _claims(token)
        now = self.now()
        exp, iat = claims.get("exp"), claims.get("iat")
        # A token without a readable exp is used until the API refuses it.
        self._exp = float(exp) if isinstance(exp, int | float) else math.inf
        self._iat = float(iat) if isinstance(iat, int | float) else now
        self._token = token
        return token

    async def _log_in(self) -> str:
        body = {"username": self.login.username.value, "password": self.login.password.value}
        token = await self._post("/auth/sliding", body)
        if token is None:
            raise CredentialsError(
                "MGnify refused the Webin login (MGNIFY_WEBIN_USER/MGNIFY_WEBIN_PASSWORD)",
                hint="check MGNIFY_WEBIN_USER (Webin-N) and MGNIFY_WEBIN_PASSWORD",
            )
        logger.info("MGnify: logged in with a Webin account")
        return token

    async def _post(self, path: str, body: Mapping[str, str]) -> str | None:
        """The ``token`` of a JSON answer; None when refused (401, 400, 403)."""
        url = self.base + path
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}

        async def once() -> Any:
            async with self.ctx.http.request("POST", url, data=data, headers=headers) as resp:
                return await resp.json()

        try:
            doc = await self.ctx.http.retrying(url, once)
        except HTTPStatusError as exc:
            if exc.status in (400, 401, 403):
                return None
            raise SourceError(f"MGnify {path}: {exc}") from exc
        token = doc.get("token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError(f"MGnify {path}: no token in the answer")
        return token
