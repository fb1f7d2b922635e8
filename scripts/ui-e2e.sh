#!/usr/bin/env bash
# End-to-end tests of the web UI in a real browser: Debian's Chromium (installed by
# scripts/install-test-deps.sh) driven by playwright-core (npm, crates/ui/web's lock file).
# The tests start `lastmile serve --demo` on a free port themselves and save a screenshot
# of every step under $LASTMILE_UI_ARTIFACTS (default: target/ui-e2e/<time>), printed first.
#
# Also type-checks the UI's TypeScript (esbuild, which bundles it, only strips types) and
# runs the unit tests of its logic (test/).
# Outside CI a missing Chromium or Node.js is a printed skip; under CI=true it fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$ROOT/crates/ui/web"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/lastmile-target}"
CHROMIUM="${LASTMILE_CHROMIUM:-/usr/bin/chromium}"

log() { printf '[ui-e2e] %s\n' "$*"; }
missing() {
    if [ "${CI:-}" = "true" ]; then
        log "FAIL: $1 (CI must run the browser tests; scripts/install-test-deps.sh installs chromium)" >&2
        exit 1
    fi
    log "SKIPPED: $1"
    exit 0
}

command -v node >/dev/null 2>&1 || missing "node is not installed"
command -v npm >/dev/null 2>&1 || missing "npm is not installed"
[ -x "$CHROMIUM" ] || missing "no Chromium at $CHROMIUM (apt-get install chromium, or run scripts/install-test-deps.sh)"

# npm packages for the tests (playwright-core, typescript) next to the UI's own; reinstall
# only when the lock file changed since the last install. playwright-core downloads no
# browser: the tests use Debian's.
cd "$WEB"
stamp="node_modules/.lastmile-e2e-installed"
if ! cmp -s package-lock.json "$stamp" 2>/dev/null; then
    log "npm ci in crates/ui/web"
    npm ci --no-audit --no-fund --prefer-offline --loglevel=error
    cp package-lock.json "$stamp"
fi

log "type-checking the UI (tsc --noEmit)"
node_modules/.bin/tsc -p tsconfig.json
log "unit tests of the UI's logic"
node --test --test-reporter=spec test/

cd "$ROOT"
log "building lastmile (debug)"
cargo build -p lastmile --bin lastmile
export LASTMILE_BIN="$CARGO_TARGET_DIR/debug/lastmile"
export LASTMILE_CHROMIUM="$CHROMIUM"
export LASTMILE_UI_ARTIFACTS="${LASTMILE_UI_ARTIFACTS:-$ROOT/target/ui-e2e/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$LASTMILE_UI_ARTIFACTS"
log "Chromium: $("$CHROMIUM" --version 2>/dev/null || echo unknown)"
log "screenshots go to $LASTMILE_UI_ARTIFACTS"

cd "$WEB"
node --test --test-reporter=spec --test-timeout=600000 e2e/
log "screenshots: $LASTMILE_UI_ARTIFACTS"
