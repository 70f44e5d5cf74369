#!/usr/bin/env bash
# One virtual environment per client, from tests/clients/requirements/NAME.txt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
for req in "$here"/requirements/*.txt; do
  [ -e "$req" ] || continue
  name="$(basename "$req" .txt)"
  venv="$root/.venv-clients/$name"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$req"
done
