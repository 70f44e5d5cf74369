"""Where a manifest's pull lives, read without validating the rest of it: what ``mirror
status`` needs to find the store. ``run``, ``plan`` and ``verify`` validate everything;
status reads the store, and importing every source's module to check a manifest would
cost it most of its time (W9 in benchmarks/)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["DEFAULT_DEST", "manifest_dest"]

#: ``dest`` when a manifest names none (relative to the manifest's directory).
DEFAULT_DEST: Final = "mirror-data"
#: Larger manifests go through the full reader, which bounds what YAML aliases expand to.
_LARGEST: Final = 256 * 1024


def manifest_dest(file: str) -> Path | None:
    """``dest`` of the manifest ``file``, resolved as :func:`mirror.load_manifest` does
    (against the file's directory, ``~`` expanded, symlinks resolved); None when the
    file cannot say simply (unreadable, not YAML, no mapping, a ``dest`` that is not a
    string): the caller then loads it fully, for the error message that names the line."""
    import yaml

    from ._validate import absolute

    try:
        raw = Path(file).read_bytes()
        if len(raw) > _LARGEST:
            return None
        text = raw.decode("utf-8-sig")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(text, Loader=loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    dest = data.get("dest", DEFAULT_DEST)
    if dest is None:
        dest = DEFAULT_DEST
    if not isinstance(dest, str) or not dest:
        return None
    base = absolute(Path(file).parent)
    return absolute(base / Path(dest).expanduser()).resolve()
