"""redirect.py for ena-upload-cli, whose sessions ignore the environment.

ena-upload-cli sets ``trust_env = False`` on every requests session it opens, so
``REQUESTS_CA_BUNDLE`` never reaches them and requests checks certificates against
certifi's bundle alone. This launcher makes a new session verify against the bundle
that variable names (the test CA); verification stays on. Nothing else changes: the
client still builds its own ``https://wwwdev.ebi.ac.uk/...`` URLs, which redirect.py
routes to the emulator.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import requests  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).parent))
import redirect  # type: ignore[import-not-found]

_session_init = requests.Session.__init__


def _trusting_init(self: Any) -> None:
    _session_init(self)
    self.verify = os.environ["REQUESTS_CA_BUNDLE"]


requests.Session.__init__ = _trusting_init

if __name__ == "__main__":
    sys.exit(redirect.main())
