#!/usr/bin/env bash
# Keeps the shared build cache ($CARGO_TARGET_DIR) under a size budget.
#
# Why: CI and every fresh clone reuse one target directory outside the clone. Cargo never
# deletes an artifact whose hash changed (a new dependency, other features, another
# profile), so the directory only grows: it reached 64 GB in a day and filled the disk
# mid-link. Run before a build: when the cache is over budget, first drop incremental
# state and every file nobody has read for two days (atime; relatime refreshes it at
# most daily, so two days is safely stale), then, if still over budget, the whole cache.
# The same happens when the disk holding it has less than the free-space floor left.
# Cargo rebuilds whatever is missing, so the worst case is one cold build.
#
#   LASTMILE_CACHE_BUDGET_GB   budget in GiB (default 24)
#   LASTMILE_MIN_FREE_GB       free-space floor in GiB (default 16)
set -euo pipefail

target="${CARGO_TARGET_DIR:?CARGO_TARGET_DIR must name the build cache}"
budget_gb="${LASTMILE_CACHE_BUDGET_GB:-24}"
budget_kb=$((budget_gb * 1024 * 1024))
min_free_kb=$((${LASTMILE_MIN_FREE_GB:-16} * 1024 * 1024))

size_kb() { du -sk "$target" 2>/dev/null | cut -f1; }
free_kb() { df -Pk "$target" | awk 'NR == 2 { print $4 }'; }
too_big() { [ "$1" -gt "$budget_kb" ] || [ "$(free_kb)" -lt "$min_free_kb" ]; }
gib() { awk -v kb="$1" 'BEGIN { printf "%.1f GiB", kb / 1048576 }'; }

[ -d "$target" ] || { echo "build cache $target: absent (cold build)"; exit 0; }
before=$(size_kb)
if ! too_big "$before"; then
    echo "build cache $target: $(gib "$before") (budget ${budget_gb} GiB, $(gib "$(free_kb)") free)"
    exit 0
fi

echo "build cache $target: $(gib "$before"), $(gib "$(free_kb)") free on its disk; over budget, pruning"
find "$target" -mindepth 2 -maxdepth 2 -name incremental -type d -exec rm -rf {} +
find "$target" -type f -atime +2 -delete
find "$target" -mindepth 1 -type d -empty -delete
after=$(size_kb)
echo "  removed incremental state and files unread for two days: $(gib "$after") left"

if too_big "$after"; then
    echo "  still over budget: removing the whole cache (this run builds from scratch)"
    rm -rf "${target:?}"/*
fi
