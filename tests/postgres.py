"""A real PostgreSQL server for the tests: initdb into a temporary directory, a free port.

``postgres_server`` is one server for the whole test session: under xdist the first
worker that needs it starts it and the others use it (the controller hands them a
directory to meet in, and stops the server by its PID once every worker is done);
without xdist the pytest process runs its own. It runs Debian's (or any)
``initdb``/``postgres`` as the ``postgres`` user when the tests run as root (PostgreSQL
refuses to run as root). ``postgres_url`` gives each test a fresh empty database.
``start_postgres`` is the same server for scripts (the benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import glob
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

__all__ = ["PostgresServer", "find_bindir", "postgres_server", "postgres_url", "start_postgres"]

#: A role that must log in with a password (scram-sha-256); every other role is trusted.
PASSWORD_ROLE = "mirror_pw"
SUPERUSER = "postgres"


class PostgresMissing(RuntimeError):
    """No PostgreSQL server programs on this machine."""


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``postgres`` and ``pg_ctl``: from PATH, else
    Debian's ``/usr/lib/postgresql/<version>/bin`` (the newest)."""
    found = shutil.which("initdb")
    if found:
        # Debian's /usr/local/bin (or a user's) symlink: the real directory has the rest.
        bindir = Path(found).resolve().parent
        if (bindir / "postgres").exists():
            return bindir
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(re.sub(r"\D", "", p.split("/")[4]) or 0),
    )
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresMissing(
        "PostgreSQL is not installed: no initdb on PATH nor in /usr/lib/postgresql/*/bin; "
        "install Debian's postgresql package (bash .ci/tools does)"
    )


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """A running server: TCP on 127.0.0.1:``port``, trust for every role but ``password_role``."""

    bindir: Path
    port: int
    directory: Path
    password_role: str
    password: str
    version: int
    host: str = "127.0.0.1"
    superuser: str = SUPERUSER
    #: The postmaster's PID (0: not known).
    pid: int = 0

    def url(self, database: str, *, user: str | None = None) -> str:
        return f"postgresql://{user or self.superuser}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser; its output (unaligned, tuples only)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        done = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.superuser,
                "-d",
                database,
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, *, owner: str | None = None) -> str:
        name = f"t_{secrets.token_hex(6)}"
        # FILE_COPY: copying template1's few files beats WAL-logging every block of it.
        strategy = " STRATEGY FILE_COPY" if self.version >= 15 else ""
        _admin(self).execute(f"CREATE DATABASE {name} OWNER {owner or self.superuser}{strategy}")
        return name

    def drop_database(self, name: str) -> None:
        _admin(self).execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class _Admin:
    """A superuser connection to the ``postgres`` database, on a thread and event loop
    of its own: a database per test costs a statement, not a psql process and a new
    server backend for each CREATE and DROP."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="postgres-admin", daemon=True
        )
        self._thread.start()
        self._lock = threading.Lock()
        self._conn: asyncpg.Connection = self._wait(asyncpg.connect(url))

    def _wait(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=120)

    def execute(self, sql: str) -> None:
        with self._lock:  # one statement at a time on the one connection
            self._wait(self._conn.execute(sql))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._wait(self._conn.close(timeout=5))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


_T = TypeVar("_T")
#: This process's admin connection to each server it uses, by port.
_ADMINS: dict[int, _Admin] = {}
_ADMINS_LOCK = threading.Lock()


def _admin(server: PostgresServer) -> _Admin:
    with _ADMINS_LOCK:
        admin = _ADMINS.get(server.port)
        if admin is None:
            admin = _ADMINS[server.port] = _Admin(server.url("postgres"))
        return admin


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres() -> dict[str, Any]:
    """Popen arguments that run a server program as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresMissing(
            "running as root, and there is no postgres user to run PostgreSQL as "
            "(Debian's postgresql package creates it)"
        ) from None
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def start_postgres(*, durable: bool = False) -> Iterator[PostgresServer]:
    """initdb a temporary cluster and run it until the block ends.

    ``durable=False`` (tests) turns fsync off: the tests check logic, not the disk.
    """
    server = _start(durable=durable)
    try:
        yield server
    finally:
        stop_postgres(server)


def _start(*, durable: bool) -> PostgresServer:
    """initdb a temporary cluster and start it; ``stop_postgres`` stops it and removes it."""
    bindir = find_bindir()
    as_postgres = _as_postgres()
    version_text = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"\)\s+(\d+)", version_text)  # "postgres (PostgreSQL) 15.18 (Debian ...)"
    version = int(found.group(1)) if found else 0
    # Under /tmp, not pytest's tmp_path: the postgres user must reach it, and unix socket
    # paths are limited to ~100 bytes.
    directory = Path(tempfile.mkdtemp(prefix="ebi-mirror-pg-"))
    try:
        if as_postgres:
            os.chown(directory, as_postgres["user"], as_postgres["group"])
        data = directory / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_"))}
        env["LANG"] = "C"
        initdb = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            **as_postgres,
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stderr.strip()[-2000:]}")
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]
        if not durable:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            settings += ["-c", "full_page_writes=off"]
        proc, port = _launch(bindir, data, settings, env, as_postgres)
        _CHILDREN[proc.pid] = proc
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    password = secrets.token_urlsafe(12)
    server = PostgresServer(
        bindir=bindir,
        port=port,
        directory=directory,
        password_role=PASSWORD_ROLE,
        password=password,
        version=version,
        pid=proc.pid,
    )
    try:
        server.psql(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{password}'")
    except BaseException:
        stop_postgres(server)
        raise
    return server


#: Servers this process started, by PID: waited for (reaped) when stopped here.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def stop_postgres(server: PostgresServer) -> None:
    """Stop the server by its PID (whichever process started it) and remove its files."""
    admin = _ADMINS.pop(server.port, None)
    if admin is not None:
        admin.close()
    try:
        # SIGQUIT: PostgreSQL's "immediate" shutdown (no checkpoint: the cluster's files
        # are removed next).
        os.kill(server.pid, signal.SIGQUIT)
        if not _exited(server.pid, timeout=30):
            os.kill(server.pid, signal.SIGKILL)
            _exited(server.pid, timeout=30)
    except ProcessLookupError:
        pass
    finally:
        _CHILDREN.pop(server.pid, None)
        shutil.rmtree(server.directory, ignore_errors=True)


def _exited(pid: int, *, timeout: float) -> bool:
    """Wait until ``pid`` has exited: reaped if this process started it; else gone, or a
    zombie its parent (an xdist worker that started it) has yet to reap."""
    child = _CHILDREN.get(pid)
    if child is not None:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.02)
    return False


def _launch(
    bindir: Path, data: Path, settings: list[str], env: dict[str, str], as_postgres: dict[str, Any]
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``postgres`` on a free port; another port if one is taken before its bind."""
    log_path = data.parent / "postgres.log"
    for attempt in range(5):
        port = _free_port()
        log_path = data.parent / f"postgres-{attempt}.log"
        command = [str(bindir / "postgres"), "-D", str(data), "-p", str(port)]
        command += ["-k", str(data.parent), *settings]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                command,
                cwd=data.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                **as_postgres,
            )
        if _wait_ready(bindir, port, proc):
            return proc, port
        proc.wait()
        if "could not bind" not in log_path.read_text(errors="replace"):
            raise RuntimeError(f"postgres did not start: {_tail(log_path)}")
    raise RuntimeError(f"postgres found no free port: {_tail(log_path)}")


def _wait_ready(bindir: Path, port: int, proc: subprocess.Popen[bytes]) -> bool:
    """Poll until the server accepts connections (True) or exits (False)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        ready = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "1"],
            check=False,
        )
        if ready.returncode == 0:
            return True
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"postgres on port {port} did not accept connections within 60 s")


def _tail(path: Path) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-5:])


#: Where the xdist workers of one session meet to share one server (a directory the
#: controller makes and removes): ``server.json`` describes the running server.
_MEETING = pytest.StashKey[Path]()
_WORKERINPUT_KEY = "ebi_mirror_postgres"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: hand each worker the directory where the session's server is."""
    config: pytest.Config = node.config
    meeting = config.stash.get(_MEETING, None)
    if meeting is None:
        meeting = Path(tempfile.mkdtemp(prefix="ebi-mirror-pg-session-"))
        config.stash[_MEETING] = meeting
    node.workerinput[_WORKERINPUT_KEY] = str(meeting)


def pytest_unconfigure(config: pytest.Config) -> None:
    """xdist controller, once every worker is done: stop the session's server, if one ran."""
    meeting = config.stash.get(_MEETING, None)
    if meeting is None:
        return
    info = meeting / "server.json"
    if info.exists():
        stop_postgres(_load(info))
    shutil.rmtree(meeting, ignore_errors=True)


def _load(info: Path) -> PostgresServer:
    fields = json.loads(info.read_text(encoding="utf-8"))
    fields["bindir"] = Path(fields["bindir"])
    fields["directory"] = Path(fields["directory"])
    return PostgresServer(**fields)


def _session_server(meeting: Path) -> PostgresServer:
    """The server of the whole session: started by the first worker that asks for it."""
    info = meeting / "server.json"
    with (meeting / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if info.exists():
            return _load(info)
        server = _start(durable=False)
        fields = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(server).items()}
        info.write_text(json.dumps(fields), encoding="utf-8")
        return server


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """One PostgreSQL server for the test session (shared by the xdist workers)."""
    workerinput: dict[str, Any] = getattr(request.config, "workerinput", {})
    meeting = workerinput.get(_WORKERINPUT_KEY)
    try:
        if meeting is not None:
            # The controller stops it once every worker is done with it.
            yield _session_server(Path(meeting))
        else:
            with start_postgres() as server:
                yield server
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test: ``postgresql://postgres@127.0.0.1:PORT/DB``."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)
