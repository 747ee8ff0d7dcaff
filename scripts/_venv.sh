# Create .venv and install the project into it when pyproject.toml is newer than the last install (so
# repeated runs start at once). Usage: `bash scripts/_venv.sh [EXTRAS]` (scripts/run and scripts/test
# run it so), or `source scripts/_venv.sh EXTRAS` in a shell. Never source it without an argument from
# a script: a sourced file sees the caller's arguments as its own ($1 would become the extras).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
EXTRAS="${1:-}"
if [[ ! "$EXTRAS" =~ ^[A-Za-z0-9_,-]*$ || "$EXTRAS" == -* ]]; then
    echo "_venv.sh: '$EXTRAS' is not a name of pip extras" >&2
    exit 2
fi
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi
STAMP="$VENV/.installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    "$VENV/bin/python" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}"
    touch "$STAMP"
fi
