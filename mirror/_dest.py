"""Where the product's files are written: one seam between the engine and the disk.

Everything the mirror keeps goes through a :class:`Destination`: the ``.part`` of a
file being fetched (appended to, or written at offsets by a segmented download),
its landing at the final path (mode, then an atomic rename), the sizes of what is
already there, whole small files written atomically (``index.tsv``, metadata
records, receipts), and reading files back (``mirror verify``, EGA's check of a
resumed range). Another destination (an object store) is one new class; the
engine, the downloader and the sources only ever hold a ``Destination``.

Every method blocks: callers run them in a worker thread, batched the way the hot
path needs (one hop per write batch, one hop to land a file). Errors are the
``OSError`` the file system raised, unchanged: the downloader tells a full or
read-only disk from a file's own trouble by its ``errno``.

Paths stay absolute :class:`~pathlib.Path` objects: the destination's ``root``
holds the mirror, and a task with a ``root`` of its own (the CRAM reference cache)
lands under that one instead (:meth:`Destination.final`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from ._paths import final_path, part_path

__all__ = [
    "SLICES_SUFFIX",
    "Destination",
    "LocalDestination",
    "PartFile",
    "SizedPart",
    "Staged",
    "temporary_name",
]

_READ = 8 << 20
#: Beside a ``.part``: the progress of a segmented download's slices.
SLICES_SUFFIX = ".slices"


class PartFile(Protocol):
    """A ``.part`` written front to back (one stream)."""

    def size(self) -> int:
        """Bytes it holds."""
        ...

    def chunks(self) -> Iterator[bytes]:
        """Its bytes from the start, in pieces; writing continues after them."""
        ...

    def restart(self) -> None:
        """Drop every byte: the next write is the first."""
        ...

    def append(self, chunks: Sequence[bytes]) -> None:
        """Write ``chunks`` at the end, out of the process's buffers before returning."""
        ...

    def close(self) -> None: ...


class SizedPart(Protocol):
    """A ``.part`` of known size whose pieces land at their offsets (Range slices)."""

    def write_at(self, chunks: Sequence[bytes | memoryview], position: int) -> None: ...

    def read_at(self, position: int, n: int) -> bytes: ...

    def close(self) -> None: ...


class Staged(Protocol):
    """A whole file written piece by piece under a temporary name, then put in place."""

    path: Path

    def write(self, text: str) -> None: ...

    def finish(self) -> Path:
        """Close it and return the temporary name, still not in place (to merge)."""
        ...

    def commit(self) -> None:
        """Close it and rename it to ``path``: readers see the old file or the new one."""
        ...

    def abort(self) -> None:
        """Close it and remove the temporary file; nothing changes at ``path``."""
        ...


class Destination(Protocol):
    """The mirror's storage. Methods block; call them in a worker thread."""

    #: Where the mirror lives (``dest``); ``root/.mirror`` holds the engine's own files.
    root: Path

    # -- layout (pure) ------------------------------------------------------------------

    def final(self, path: str, root: str | None = None) -> Path:
        """Where a task's file lands: under its own ``root`` if it has one, else ``root``."""
        ...

    def part(self, final: Path) -> Path:
        """Where ``final`` is written until it is complete and checked."""
        ...

    # -- files being fetched ------------------------------------------------------------

    def open_part(self, part: Path) -> PartFile:
        """Open ``part`` to continue it (or start it). A ``.part`` a segmented download
        left (full-size with holes, not a prefix) is dropped first."""
        ...

    def open_sized(self, part: Path, size: int, fresh: bool) -> SizedPart:
        """Open ``part`` at ``size`` bytes (holes where nothing landed); ``fresh``
        empties it first."""
        ...

    def land(self, part: Path, final: Path, mode: int | None) -> None:
        """Give ``part`` its ``mode`` and rename it to ``final``, atomically."""
        ...

    def drop_empty(self, part: Path) -> None:
        """Remove ``part`` if it holds nothing (no progress to keep, only litter)."""
        ...

    # -- any file -----------------------------------------------------------------------

    def size(self, path: Path) -> int | None:
        """Bytes of the file at ``path``; None when there is none."""
        ...

    def exists(self, path: Path) -> bool: ...

    def is_file(self, path: Path) -> bool:
        """Whether ``path`` is a regular file (False when absent, a directory, …)."""
        ...

    def drop(self, path: Path) -> None:
        """Remove the file at ``path`` if there is one."""
        ...

    def read_bytes(self, path: Path) -> bytes: ...

    def open_read(self, path: Path) -> BinaryIO:
        """``path`` opened for reading front to back (a file too large to hold)."""
        ...

    def hash(
        self, path: Path, algorithm: str = "md5", *, start: int = 0, limit: int | None = None
    ) -> tuple[str, int]:
        """Digest and length of the bytes of ``path`` from ``start`` (at most ``limit``)."""
        ...

    def write_atomic(self, path: Path, data: bytes, *, tmp: Path | None = None) -> None:
        """Replace ``path`` with ``data`` through a temporary file (by default one no
        other writer uses, beside it)."""
        ...

    def stage(self, path: Path, *, tmp: Path | None = None) -> Staged:
        """A :class:`Staged` UTF-8 text file for ``path`` (temporary name as above)."""
        ...

    def replace(self, src: Path, dst: Path) -> None:
        """Rename ``src`` to ``dst`` atomically."""
        ...

    def link(self, src: Path, dst: Path, mode: int) -> None:
        """Put the bytes of ``src`` at ``dst`` too (a hard link where one can be made),
        atomically, with ``mode``."""
        ...

    def free(self, path: Path) -> int | None:
        """Bytes free for writing near ``path``; None when unknown."""
        ...

    def scratch(self, path: Path) -> Path:
        """A local file for working state that belongs near ``path`` but is never part
        of the mirror (EnteroBase's merge database). Its directory exists."""
        ...


def temporary_name(path: Path) -> Path:
    """A name beside ``path`` no other writer uses (not ``mkstemp``: its files are 0600,
    and the records should get the same mode as the data files)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


class _LocalPart:
    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def size(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    def chunks(self) -> Iterator[bytes]:
        self._file.seek(0)
        while chunk := self._file.read(_READ):
            yield chunk

    def restart(self) -> None:
        self._file.seek(0)
        self._file.truncate()

    def append(self, chunks: Sequence[bytes]) -> None:
        for data in chunks:
            self._file.write(data)
        # Out of our buffer into the kernel's: a killed process keeps these bytes.
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _LocalSized:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write_at(self, chunks: Sequence[bytes | memoryview], position: int) -> None:
        """``os.pwritev`` until every byte is written: a short write is not an error."""
        views = [memoryview(b) for b in chunks]
        while views:
            n = os.pwritev(self._fd, views, position)
            position += n
            while views and n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            if views and n:
                views[0] = views[0][n:]

    def read_at(self, position: int, n: int) -> bytes:
        return os.pread(self._fd, n, position)

    def close(self) -> None:
        os.close(self._fd)


class _LocalStaged:
    def __init__(self, path: Path, tmp: Path) -> None:
        self.path = path
        self._tmp = tmp
        self._file: BinaryIO | None = tmp.open("wb")

    def write(self, text: str) -> None:
        assert self._file is not None
        self._file.write(text.encode("utf-8"))

    def finish(self) -> Path:
        if self._file is not None:
            self._file.close()
            self._file = None
        return self._tmp

    def commit(self) -> None:
        os.replace(self.finish(), self.path)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.finish()
        with contextlib.suppress(OSError):
            self._tmp.unlink()


class LocalDestination:
    """The mirror on a local (or mounted) file system.

    ``fsync``: flush each landed file to stable storage before its rename, for a
    destination that must survive a power cut, not only a killed process (off by
    default: the kernel writes the pages back soon enough for a re-run's checks).
    """

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = root
        self.fsync = fsync

    def final(self, path: str, root: str | None = None) -> Path:
        return final_path(self.root, path, root)

    def part(self, final: Path) -> Path:
        return part_path(final)

    def open_part(self, part: Path) -> PartFile:
        part.parent.mkdir(parents=True, exist_ok=True)
        sidecar = part.with_name(part.name + SLICES_SUFFIX)
        if sidecar.exists():
            part.unlink(missing_ok=True)
            sidecar.unlink()
        try:
            return _LocalPart(part.open("r+b"))
        except FileNotFoundError:
            return _LocalPart(part.open("w+b"))

    def open_sized(self, part: Path, size: int, fresh: bool) -> SizedPart:
        part.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(part, os.O_RDWR | os.O_CREAT | (os.O_TRUNC if fresh else 0), 0o644)
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)  # sparse: slices land at their offsets
        except BaseException:
            os.close(fd)
            raise
        return _LocalSized(fd)

    def land(self, part: Path, final: Path, mode: int | None) -> None:
        if mode is not None:
            os.chmod(part, mode)
        if self.fsync:
            fd = os.open(part, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        # os.replace is atomic on POSIX: readers see no file or the whole file.
        os.replace(part, final)

    def drop_empty(self, part: Path) -> None:
        with contextlib.suppress(OSError):
            if part.stat().st_size == 0:
                part.unlink()

    def size(self, path: Path) -> int | None:
        try:
            return path.stat().st_size
        except OSError:
            return None

    def exists(self, path: Path) -> bool:
        return path.exists()

    def is_file(self, path: Path) -> bool:
        return path.is_file()

    def drop(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def read_bytes(self, path: Path) -> bytes:
        return path.read_bytes()

    def open_read(self, path: Path) -> BinaryIO:
        return path.open("rb")

    def hash(
        self, path: Path, algorithm: str = "md5", *, start: int = 0, limit: int | None = None
    ) -> tuple[str, int]:
        h = hashlib.new(algorithm)
        n = 0
        with path.open("rb") as f:
            if start:
                f.seek(start)
            while limit is None or n < limit:
                chunk = f.read(_READ if limit is None else min(_READ, limit - n))
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
        return h.hexdigest(), n

    def write_atomic(self, path: Path, data: bytes, *, tmp: Path | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp or temporary_name(path)
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def stage(self, path: Path, *, tmp: Path | None = None) -> Staged:
        tmp = tmp or temporary_name(path)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        return _LocalStaged(path, tmp)

    def replace(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def link(self, src: Path, dst: Path, mode: int) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:  # a file system without hard links: the same bytes, copied
            shutil.copyfile(src, tmp)
            tmp.chmod(mode)
        os.replace(tmp, dst)

    def free(self, path: Path) -> int | None:
        try:
            st = os.statvfs(path)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def scratch(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
