#!/usr/bin/env bash
# Create .venv from the pinned requirements and install modelcert (editable) into it.
# Idempotent: skips the install when requirements and pyproject have not changed since the last run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,11) else 1)'; then
      PY="$cand"; break
    fi
  done
fi
if [[ -z "$PY" ]]; then
  echo "modelcert needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 2
fi
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
STAMP=.venv/.modelcert-installed
WANT="$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
pipq() {  # quiet pip; on failure show its output (minus noise about absent local index folders) and stop
  local log; log="$(mktemp)"
  if ! .venv/bin/python -m pip "$@" >"$log" 2>&1; then
    grep -v "is ignored: it is neither" "$log" >&2 || true
    rm -f "$log"; echo "pip $* failed" >&2; exit 1
  fi
  rm -f "$log"
}
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  echo "==> installing pinned requirements into .venv (about a minute)"
  pipq install --upgrade "pip==26.3"
  pipq install -r requirements.txt
  pipq install --no-deps -r requirements-nodeps.txt
  pipq install --no-deps -e .
  echo "$WANT" > "$STAMP"
fi
