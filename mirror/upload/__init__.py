"""Uploading files to ENA's Webin upload area over explicit FTPS, resumably, each with
its ``FILE.md5``; and checking that the files a submission names are there.

``_ftps`` is the FTPS client (why not aioftp: its docstring), ``_decide`` what to send
of a file, ``_state`` the record of what was sent, ``_run`` the uploads, ``_check``
the files a submission document names.
"""

from __future__ import annotations

from ._check import FileRef, Problem, check_files, document_files
from ._ftps import Endpoint, FtpsClient, parse_endpoint
from ._run import Target, Uploader, UploadOutcome, UploadSettings, md5_text
from ._state import Record, RecordKey, UploadState, default_state_path

__all__ = [
    "Endpoint",
    "FileRef",
    "FtpsClient",
    "Problem",
    "Record",
    "RecordKey",
    "Target",
    "UploadOutcome",
    "UploadSettings",
    "UploadState",
    "Uploader",
    "check_files",
    "default_state_path",
    "document_files",
    "md5_text",
    "parse_endpoint",
]
