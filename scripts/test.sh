#!/usr/bin/env bash
# The tests: install (.venv from pinned requirements), then every layer — unit, store (real PostgreSQL:
# embedded unless MODELCERT_TEST_DATABASE_URL is set), DAG integrity, dag.test() runs, e2e with real Airflow
# processes. Slow tests are marked `slow` and run here too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/modelcert-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
# Browser tests drive headless Chromium (/usr/bin/chromium, Debian package) over the DevTools protocol.
# As root with apt-get (CI) install it when missing, and require the browser tests to run (they fail
# rather than skip); elsewhere they are skipped with the reason when Chromium is missing.
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  if [ ! -x /usr/bin/chromium ] || ! command -v pdftoppm >/dev/null 2>&1; then
    echo "==> installing chromium and poppler-utils (pdftoppm) for the browser and PDF tests (apt-get; log in /tmp/modelcert-apt-chromium.log)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
      poppler-utils) >/tmp/modelcert-apt-chromium.log 2>&1 \
      || echo "WARNING: chromium/poppler-utils install failed; the browser and PDF tests will fail" >&2
  fi
  export MODELCERT_REQUIRE_BROWSER=1
fi
exec .venv/bin/python -m pytest -q "$@"
