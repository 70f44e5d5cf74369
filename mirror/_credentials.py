"""Credentials: from the environment or ``~/.netrc``, never from the manifest.

This module is the one place that reads them. Values are kept in objects whose
``repr`` hides them, so a stray log line or traceback cannot print a secret.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["Credentials", "Secret"]


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential value; ``str()`` and ``repr()`` never show it."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret(***)"

    def __bool__(self) -> bool:
        return bool(self.value)


@dataclass(frozen=True, kw_only=True, slots=True)
class Credentials:
    """Environment variables (SPEC.md names) and ``~/.netrc`` entries by host."""

    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    netrc_path: Path | None = None

    @classmethod
    def from_environment(cls) -> Credentials:
        # The sources declare what they read; the registry imports this module.
        from ._registry import OTHER_ENVIRONMENT, environment_names

        names = (*environment_names(), *OTHER_ENVIRONMENT)
        env = {name: os.environ[name] for name in names if os.environ.get(name)}
        path = Path(os.environ.get("NETRC", "~/.netrc")).expanduser()
        return cls(env=env, netrc_path=path if path.is_file() else None)

    def get(self, name: str) -> Secret | None:
        value = self.env.get(name)
        return Secret(value) if value else None

    def for_host(self, url: str) -> tuple[Secret, Secret] | None:
        """``(login, password)`` from ``~/.netrc`` for the host of ``url``."""
        if self.netrc_path is None:
            return None
        host = urlsplit(url).hostname or ""
        try:
            entry = netrc.netrc(str(self.netrc_path)).authenticators(host)
        except (OSError, netrc.NetrcParseError):
            return None
        if entry is None:
            return None
        login, _account, password = entry
        return Secret(login or ""), Secret(password or "")
