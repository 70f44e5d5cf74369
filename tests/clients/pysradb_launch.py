"""redirect.py for pysradb, which downloads ``ftp.sra.ebi.ac.uk`` paths with ftplib.

ENA serves the same paths over HTTPS; the emulator serves HTTPS only. This launcher
maps pysradb's two FTP helpers (file size, download) onto its own HTTP code path with
the URL's scheme changed to ``https://``: pysradb's ``download_file`` (HEAD, ranged
GET into ``.part``, MD5 check) then does the work. Nothing else changes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pysradb.download as download  # type: ignore[import-not-found]
import requests  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).parent))
import redirect  # type: ignore[import-not-found]


def _https(url: str) -> str:
    return "https://" + url.removeprefix("ftp://")


def _size(url: str) -> int:
    answer = requests.head(_https(url), timeout=30)
    answer.raise_for_status()
    return int(answer.headers["content-length"])


def _fetch(url: str, file_path: str, timeout: Any, block_size: int, show_progress: bool) -> None:
    download.download_file(_https(url), file_path, None, timeout, block_size, show_progress)


download._get_ftp_file_size = _size
download._download_ftp_file = _fetch

if __name__ == "__main__":
    sys.exit(redirect.main())
