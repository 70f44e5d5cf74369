"""Run a client's console command with the archives' host names resolved to loopback.

``python redirect.py COMMAND ARGS...`` (with the client's own interpreter) looks up
``COMMAND`` among the installed console scripts and runs it unchanged, after one
change to the process: name resolution. ``EMU_CONNECT`` maps ``host:port`` pairs to
loopback ``127.0.0.1:port`` pairs (``www.ebi.ac.uk:443=127.0.0.1:41234,...``), so the
client's own ``https://www.ebi.ac.uk/...`` URLs reach the emulator, over TLS, with the
certificate checked against the name the client asked for (the test CA's certificate
names the public hosts; ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE`` trust it). Any other
host is refused, so a client that would reach the internet fails instead.
"""

from __future__ import annotations

import os
import socket
import sys
from importlib.metadata import entry_points
from typing import Any

_real_getaddrinfo = socket.getaddrinfo
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _routes() -> dict[tuple[str, int], tuple[str, int]]:
    routes = {}
    for item in filter(None, os.environ.get("EMU_CONNECT", "").split(",")):
        public, _, local = item.partition("=")
        host, _, port = public.rpartition(":")
        address, _, local_port = local.rpartition(":")
        routes[(host, int(port))] = (address, int(local_port))
    return routes


ROUTES = _routes()


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else str(host)
    number = int(port) if port is not None else 0
    target = ROUTES.get((name, number))
    if target is not None:
        return _real_getaddrinfo(target[0], target[1], *args, **kwargs)
    if name in _LOOPBACK:
        return _real_getaddrinfo(host, port, *args, **kwargs)
    raise socket.gaierror(socket.EAI_NONAME, f"{name}:{number} is not an emulated host")


def main() -> int:
    command, *args = sys.argv[1:]
    (entry,) = entry_points(group="console_scripts", name=command)
    socket.getaddrinfo = _getaddrinfo
    sys.argv = [command, *args]
    result = entry.load()()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
