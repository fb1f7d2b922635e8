#!/usr/bin/env bash
# Installs what the test suite and the benchmark need from Debian's packages, and only
# what is missing; safe to run again. Runs as root (CI does) or through sudo.
#
#   prometheus        differential peer of the remote-write interop test
#   victoria-metrics  peer of `lastmile bench ingest`
#   python3-venv      the Python virtualenv below (PyPI clients used as real peers)
#   chromium          the browser of the web UI's end-to-end tests (driven by playwright-core,
#                     which scripts/ui-e2e.sh installs from npm; playwright's own browser
#                     download does not work here)
#   clang, libbpf-dev the eBPF programs of crates/ebpf (clang -target bpf, bpf_helpers.h)
#   golang-go         Go 1.19: builds the Go fixtures the eBPF tests probe
#   golang-1.2x-go    Go 1.21/1.22/1.23 from bookworm-backports (the suite is added if absent)
#   prometheus-node-exporter  a real stripped cgo Go binary for the eBPF symbol tests
#   wrk               bounded HTTP load of `lastmile bench go-runtime`
#   winston-loki (npm), python-logging-loki (PyPI)  real Loki push clients (see the end)
#
# Debian's packages ship init scripts; installing them must not leave a service running
# (nothing here needs one: tests start their own instances on free ports).
set -euo pipefail

PACKAGES=(prometheus victoria-metrics python3-venv chromium clang libbpf-dev golang-go golang-1.21-go
    golang-1.22-go golang-1.23-go prometheus-node-exporter wrk)

log() { printf '[install-test-deps] %s\n' "$*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        log "not root and no sudo: cannot install ${PACKAGES[*]}" >&2
        exit 1
    fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        log "$p: already installed ($(dpkg-query -W -f='${Version}' "$p"))"
    else
        missing+=("$p")
    fi
done

# Go 1.21+ only exist in bookworm-backports: add that suite (same mirror and component as
# the machine's main suite) when no apt source names it yet.
ensure_backports() {
    if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return 1
    fi
    local uri
    uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    if [ -z "$uri" ]; then
        uri="$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
    fi
    uri="${uri:-http://deb.debian.org/debian}"
    log "adding the bookworm-backports suite from $uri"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" |
        "${SUDO[@]}" tee /etc/apt/sources.list.d/lastmile-bookworm-backports.sources >/dev/null
    return 0
}

if [ "${#missing[@]}" -eq 0 ]; then
    log "nothing to install"
else
    # Refresh the package lists only when one of the packages is unknown to apt.
    if ensure_backports; then
        "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=900 update
    fi
    for p in "${missing[@]}"; do
        if ! apt-cache show "$p" >/dev/null 2>&1; then
            log "package $p unknown to apt: running apt-get update"
            "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=900 update
            break
        fi
    done

    # Keep maintainer scripts from starting services: policy-rc.d exit 101 means
    # "action forbidden" to invoke-rc.d. Only a policy file this script created is removed.
    created_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# installed temporarily by lastmile scripts/install-test-deps.sh\nexit 101\n' |
            "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
        created_policy=yes
    fi
    cleanup_policy() {
        if [ -n "$created_policy" ]; then
            "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d
        fi
    }
    trap cleanup_policy EXIT

    apt_install() {
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${missing[@]}"
    }
    log "installing: ${missing[*]}"
    if ! apt_install; then
        # Package lists older than the mirror name files it no longer has.
        log "install failed: refreshing the package lists and retrying once"
        "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=900 update
        apt_install
    fi
    cleanup_policy
    trap - EXIT
fi

# No service of these packages may be left running (a container has no systemd, but an
# init script could still have been run). Stop only the daemons their pid files name.
for svc in prometheus victoria-metrics prometheus-node-exporter; do
    pidfile="/run/$svc/$svc.pid"
    if [ -f "$pidfile" ]; then
        pid="$(cat "$pidfile" 2>/dev/null || true)"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            log "stopping the $svc service the package started (pid $pid)"
            if [ -x "/etc/init.d/$svc" ]; then
                "${SUDO[@]}" "/etc/init.d/$svc" stop || "${SUDO[@]}" kill "$pid" || true
            else
                "${SUDO[@]}" kill "$pid" || true
            fi
        fi
    fi
done

for bin in prometheus victoria-metrics chromium clang go prometheus-node-exporter wrk \
    /usr/lib/go-1.21/bin/go /usr/lib/go-1.22/bin/go /usr/lib/go-1.23/bin/go; do
    if ! command -v "$bin" >/dev/null 2>&1; then
        log "$bin is still missing after the install" >&2
        exit 1
    fi
done
log "ready: $(prometheus --version 2>&1 | head -n1); victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics); chromium $(dpkg-query -W -f='${Version}' chromium)"
log "ready: $(clang --version | head -n1); $(go version); $(/usr/lib/go-1.23/bin/go version)"

# ---- Python virtualenv: real clients from PyPI -------------------------------------------
# One venv for every Python peer of the tests, under ~/.cache/lastmile-venv (tests find it
# there, or at $LASTMILE_VENV). Versions are pinned so a fresh machine gets what the tests
# were written against; one package per line, so additions merge cleanly. Installing is
# skipped when the venv already has exactly these pins.
VENV="${LASTMILE_VENV:-${HOME:-/root}/.cache/lastmile-venv}"
PY_PACKAGES=(
    # OTLP tests: the OpenTelemetry Python SDK and its exporters (HTTP protobuf, gRPC, HTTP JSON)
    opentelemetry-sdk==1.45.1
    opentelemetry-exporter-otlp-proto-http==1.45.1
    opentelemetry-exporter-otlp-proto-grpc==1.45.1
    opentelemetry-exporter-otlp-json-http==0.66b1
)
if [ ! -x "$VENV/bin/python" ]; then
    log "creating the Python venv $VENV"
    /usr/bin/python3 -m venv "$VENV"
fi
wanted="$(printf '%s\n' "${PY_PACKAGES[@]}" | grep -v '^ *#' | sed 's/^ *//' | sort)"
stamp="$VENV/.lastmile-packages"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    log "Python venv $VENV: packages already installed"
else
    log "Python venv $VENV: installing $(echo "$wanted" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install --disable-pip-version-check --no-input $wanted
    echo "$wanted" >"$stamp"
fi
log "ready: $("$VENV/bin/python" --version) in $VENV"

# ---- Loki push clients (log path tests) ---------------------------------------------------
# npm: winston-loki (protobuf + snappy by default), pinned by the committed package-lock.json
# of crates/lastmile/tests/fixtures/loki-clients (node_modules/ is git-ignored); reinstalled
# only when the lock file changes. PyPI: python-logging-loki (JSON push) in the shared venv.
LOKI_FIXTURE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/crates/lastmile/tests/fixtures/loki-clients"
apt_install_now() {
    if ! apt-cache show "$@" >/dev/null 2>&1; then
        "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=900 update
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "$@"
}
if ! command -v npm >/dev/null 2>&1; then
    log "npm missing: installing Debian's nodejs and npm"
    apt_install_now nodejs npm
fi
lock_sum="$(sha256sum "$LOKI_FIXTURE/package-lock.json" | cut -d' ' -f1)"
if [ -f "$LOKI_FIXTURE/node_modules/.lastmile-lock" ] && [ "$(cat "$LOKI_FIXTURE/node_modules/.lastmile-lock")" = "$lock_sum" ]; then
    log "npm Loki clients: already installed"
else
    log "npm Loki clients: npm ci in $LOKI_FIXTURE"
    (cd "$LOKI_FIXTURE" && npm ci --no-audit --no-fund)
    echo "$lock_sum" >"$LOKI_FIXTURE/node_modules/.lastmile-lock"
fi
LOG_VENV="${LASTMILE_VENV:-${HOME:-/root}/.cache/lastmile-venv}"
LOG_PY_PACKAGES=(python-logging-loki==0.3.1)
if [ ! -x "$LOG_VENV/bin/python" ]; then
    if ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; then
        apt_install_now python3-venv
    fi
    log "creating the Python venv $LOG_VENV"
    /usr/bin/python3 -m venv "$LOG_VENV"
fi
log_stamp="$LOG_VENV/.lastmile-packages-logs"
if [ -f "$log_stamp" ] && [ "$(cat "$log_stamp")" = "${LOG_PY_PACKAGES[*]}" ]; then
    log "Python Loki client: already installed"
else
    log "Python Loki client: installing ${LOG_PY_PACKAGES[*]} into $LOG_VENV"
    "$LOG_VENV/bin/pip" install --disable-pip-version-check --no-input "${LOG_PY_PACKAGES[@]}"
    echo "${LOG_PY_PACKAGES[*]}" >"$log_stamp"
fi
log "ready: Loki clients (winston-loki $(node -p 'require("'"$LOKI_FIXTURE"'/node_modules/winston-loki/package.json").version'), python-logging-loki in $LOG_VENV)"
