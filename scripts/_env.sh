# Shared set-up for scripts/demo and scripts/test: a virtual environment with the pinned
# packages, and a clear word about any system program that is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "missing: Python 3.11 or newer ($PY not found)" >&2; exit 2
fi
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "missing: Python 3.11 or newer ($("$PY" --version) found)" >&2; exit 2
fi

VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha"
WANT="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setting up the virtual environment in .venv ..." >&2
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "installing pinned packages into .venv ..." >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r requirements.txt -r requirements-dev.txt
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# Programs the local default runs besides Python. Each check names what to install.
require_programs() {
  local missing=()
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null \
     && [ -z "${DR_PG_BIN:-}" ]; then
    missing+=("PostgreSQL server binaries (apt-get install postgresql, or set DR_PG_BIN)")
  fi
  command -v redis-server >/dev/null || missing+=("redis-server (apt-get install redis-server)")
  command -v node >/dev/null || missing+=("Node.js 18+ with npm, for Azurite (apt-get install nodejs npm)")
  command -v npm >/dev/null || missing+=("npm, for Azurite (apt-get install npm)")
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "cannot run: these programs are missing:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 2
  fi
}
