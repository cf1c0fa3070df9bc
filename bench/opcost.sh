#!/bin/sh
# opcost.sh -- instructions per operation (callgrind's Ir, exact and
# repeatable; this is how to count them where perf has no hardware
# counters, e.g. on a VM): kvi's local engine, its shared collection and
# the GHashTable+mutex baseline, for a fetch that hits, one that misses and
# an overwrite, on KEYS keys (default 250000) with OPS operations each
# (default 100000).  Needs valgrind.
#
#   sh bench/opcost.sh [BUILD_DIR] [KEYS] [OPS]
#
# Prints one line per target and operation: Ir per op and the ratio to the
# baseline (< 1 = fewer instructions than the baseline).
set -eu
build=${1:-build}
keys=${2:-250000}
ops=${3:-100000}
bench=$build/kvi-bench
[ -x "$bench" ] || { echo "opcost.sh: no $bench (build first)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "opcost.sh: needs valgrind" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in ghash+mutex local local:shm; do
    f=$tmp/$(echo "$t" | tr ':+' '__').out
    valgrind --tool=callgrind --callgrind-out-file="$f" \
        --toggle-collect='cost_*' \
        "$bench" --cost "$t" --keys "$keys" --ops "$ops" >/dev/null 2>&1 ||
        { echo "opcost.sh: $t failed" >&2; exit 1; }
    callgrind_annotate --inclusive=yes "$f" 2>/dev/null |
        awk -v t="$t" -v ops="$ops" '
            /:cost_(fetch_hit|fetch_miss|store) / {
                n = $1; gsub(",", "", n); op = $0; sub(/.*:cost_/, "", op); sub(/ .*/, "", op)
                printf "%s %s %.0f\n", t, op, n / ops
            }' >>"$tmp/all"
done
printf '%-12s %-11s %8s %8s\n' target op Ir/op ratio
awk '{ ir[$1" "$2] = $3; if ($1 == "ghash+mutex") base[$2] = $3; line[NR] = $1" "$2 }
     END { for (i = 1; i <= NR; i++) { split(line[i], a, " ");
               printf "%-12s %-11s %8d %8.2f\n", a[1], a[2], ir[line[i]], ir[line[i]] / base[a[2]] } }' \
    "$tmp/all"
echo "keys $keys, ops $ops per operation; $(valgrind --version)"
