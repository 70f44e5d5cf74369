"""The tools the suite needs (nginx, aria2c, curl, openssl, …): found, or installed from Debian."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGES",
    "ToolMissing",
    "ensure_tools",
    "find_tool",
    "machine_info",
    "machine_name",
]

#: Command → the Debian package that provides it.
PACKAGES: dict[str, str] = {
    "nginx": "nginx",
    "aria2c": "aria2",
    "curl": "curl",
    "wget": "wget",
    # W1 and W2 over HTTPS: the suite's CA and nginx's certificate.
    "openssl": "openssl",
    # W10: the Live Outbox's server, and OpenSSH's client as the peer.
    "sshd": "openssh-server",
    "sftp": "openssh-client",
    # W11: the Webin upload area's server, and lftp as the peer FTPS client.
    "vsftpd": "vsftpd",
    "lftp": "lftp",
    # GNU time: peak RSS of a command without its parent's (see _measure).
    "time": "time",
}
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class ToolMissing(RuntimeError):
    """A tool the selected workloads need is not installed and could not be installed."""


def find_tool(name: str) -> str | None:
    """Absolute path of ``name`` on PATH (or in an sbin directory, where nginx lives)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_tools(
    required: Iterable[str], optional: Iterable[str], *, install: bool
) -> dict[str, str]:
    """Paths of the tools; missing ones are apt-get installed when allowed and possible.

    A missing required tool raises :class:`ToolMissing` with the command that would
    install it; a missing optional one is left out of the answer (its runs are skipped).
    """
    required, optional = list(required), list(optional)
    missing = [t for t in (*required, *optional) if find_tool(t) is None]
    if missing and install:
        _apt_install(sorted({PACKAGES[t] for t in missing}))
    found = {t: p for t in (*required, *optional) if (p := find_tool(t)) is not None}
    absent = [t for t in required if t not in found]
    if absent:
        packages = " ".join(sorted({PACKAGES[t] for t in absent}))
        raise ToolMissing(
            f"the benchmarks need {', '.join(absent)}, which is not installed"
            + ("" if install else " (--no-install given)")
            + f". On Debian/Ubuntu: sudo apt-get install -y {packages}"
        )
    return found


def _apt_install(packages: list[str]) -> None:
    apt = shutil.which("apt-get")
    if apt is None:
        print(f"benchmarks: no apt-get here; cannot install {' '.join(packages)}", file=sys.stderr)
        return
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if sudo is None or subprocess.run([sudo, "-n", "true"], check=False).returncode != 0:
            print(
                f"benchmarks: not root and no password-less sudo; cannot install "
                f"{' '.join(packages)}",
                file=sys.stderr,
            )
            return
        prefix = [sudo, "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, apt, "install", "-y", "-q", *packages]
    print(f"benchmarks: installing {' '.join(packages)} with apt-get", file=sys.stderr)
    if subprocess.run(install, env=env, check=False).returncode != 0:
        # A fresh container has no package lists yet.
        subprocess.run([*prefix, apt, "update", "-q"], env=env, check=False)
        subprocess.run(install, env=env, check=False)


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else ""


def _version_argv(name: str, path: str, flags: dict[str, list[str]]) -> list[str]:
    # OpenSSH's sftp has no version flag; ssh, from the same package beside it, has.
    if name == "sftp":
        return [str(Path(path).with_name("ssh")), "-V"]
    return [path, *flags.get(name, [])]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return ""
    return done.stdout.rstrip()


def machine_name() -> str:
    """What the results file of this machine is called: its CPUs, e.g. ``2cpu-amd-epyc``.

    The kind of machine, not its host name: a container or a CI runner gets a new host
    name each time, and results of the same kind of machine should replace each other.
    """
    model = re.sub(r"[^a-z0-9]+", "-", _cpu_model().lower()).strip("-") or "unknown"
    return f"{os.cpu_count()}cpu-{model}"


def machine_info(tools: dict[str, str], repo: Path) -> dict[str, Any]:
    """What the numbers were measured on: CPUs, memory, kernel, tool versions, commit."""
    versions = {
        "nginx": ["-v"],
        "aria2c": ["--version"],
        "curl": ["--version"],
        "wget": ["--version"],
        "openssl": ["version"],
        "time": ["--version"],
        "sshd": ["-V"],
    }
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "tools": {
            name: {"path": path, "version": _first_line(_version_argv(name, path, versions))}
            for name, path in tools.items()
        },
        "git_commit": _git(repo, "rev-parse", "HEAD").strip(),
        "git_dirty": _git(repo, "status", "--short", "--untracked-files=no").splitlines(),
    }
