#!/usr/bin/env bash
# Installs what the test suite and the benchmark need from Debian's packages, and only
# what is missing; safe to run again. Runs as root (CI does) or through sudo.
#
#   prometheus        differential peer of the remote-write interop test
#   victoria-metrics  peer of `lastmile bench ingest`
#   winston-loki (npm), python-logging-loki (PyPI)  real Loki push clients (see the end)
#
# Debian's packages ship init scripts; installing them must not leave a service running
# (nothing here needs one: tests start their own instances on free ports).
set -euo pipefail

PACKAGES=(prometheus victoria-metrics)

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

if [ "${#missing[@]}" -eq 0 ]; then
    log "nothing to install"
else
    # Refresh the package lists only when one of the packages is unknown to apt.
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
for svc in prometheus victoria-metrics; do
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

for bin in prometheus victoria-metrics; do
    if ! command -v "$bin" >/dev/null 2>&1; then
        log "$bin is still missing after the install" >&2
        exit 1
    fi
done
log "ready: $(prometheus --version 2>&1 | head -n1); victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics)"

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
