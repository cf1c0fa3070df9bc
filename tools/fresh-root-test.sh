#!/bin/bash
# fresh-root-test.sh -- prove that a fresh Debian 12 machine passes CI.
#
# Makes a clean Debian 12 (bookworm) root with debootstrap --variant=minbase
# from the Debian mirror apt already uses on this machine, copies a clean
# clone of this repository's HEAD into it, and runs `.ci/run` inside it with
# chroot in private mount and pid namespaces (unshare: proc, sys, a new
# devpts and a fresh /dev/shm mounted for the run only).  Nothing of the host's installed packages is visible
# inside: every program, library and Lua rock the tests use must come from
# the project's own installer (tools/ensure-packages.sh via .ci/run).
#
# Prints the wall time of each phase.  Exit status: that of .ci/run (or 1 when
# a set-up phase fails).  Must run as root.  Not part of `make test`.
#
#   tools/fresh-root-test.sh [--keep] [--root DIR] [--rev REV]
#
#   --root DIR  where to build the root (default: a new /var/tmp/kvi-fresh-root.XXXXXX)
#   --keep      leave the root on disk afterwards (default: removed)
#   --rev REV   commit to test (default: HEAD)
#   FRESH_ROOT_MIRROR overrides the mirror URL.
set -euo pipefail

# The whole script is one function, read before it runs: editing this file
# while a run is under way (it takes half an hour) cannot change that run.
main() {
here=$(cd "$(dirname "$0")/.." && pwd)
keep=0 root="" rev=HEAD
while [ $# -gt 0 ]; do
    case "$1" in
    --keep) keep=1 ;;
    --root) root=$2; shift ;;
    --rev) rev=$2; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "fresh-root-test: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "fresh-root-test: must run as root (debootstrap, chroot, mounts)" >&2; exit 2; }

t_start=$(date +%s)
phase_t=$t_start
phase() { # phase NAME: prints the time the previous phase took
    local now; now=$(date +%s)
    printf 'fresh-root-test: [%4ds, +%4ds] %s\n' $((now - t_start)) $((now - phase_t)) "$1"
    phase_t=$now
}

# The mirror apt uses: deb822 sources first, then the one-line format.
mirror=${FRESH_ROOT_MIRROR:-}
if [ -z "$mirror" ]; then
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        m=$(awk '/^URIs:/ { u=$2 } /^Suites:/ && / bookworm( |$)/ { print u; exit }' "$f")
        [ -n "$m" ] && { mirror=$m; break; }
    done
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "fresh-root-test: no bookworm mirror found in apt's sources; set FRESH_ROOT_MIRROR" >&2; exit 1; }
security=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]*debian-security' | head -1 || true)

phase "installing debootstrap on the host if missing"
sh "$here/tools/ensure-packages.sh" debootstrap

[ -n "$root" ] || root=$(mktemp -d /var/tmp/kvi-fresh-root.XXXXXX)
# mktemp makes it 0700: as the chroot's / it would lock every other user
# (kamailio, nobody: tests run programs as them) out of the whole root.
mkdir -p "$root"
chmod 755 "$root"
cleanup() {
    if [ "$keep" = 0 ]; then rm -rf --one-file-system "$root"; else echo "fresh-root-test: root kept in $root"; fi
}
trap cleanup EXIT

phase "debootstrap --variant=minbase bookworm $root $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
    { tail -20 "$root.debootstrap.log"; echo "fresh-root-test: debootstrap failed" >&2; exit 1; }
rm -f "$root.debootstrap.log"

# apt inside sees the same suites as the host (updates and security too).
{
    echo "deb $mirror bookworm main"
    echo "deb $mirror bookworm-updates main"
    [ -z "$security" ] || echo "deb $security bookworm-security main"
} >"$root/etc/apt/sources.list"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
grep -q localhost "$root/etc/hosts" 2>/dev/null || printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' >"$root/etc/hosts"

phase "copying a clean clone of $(git -C "$here" rev-parse --short "$rev")"
git clone -q --no-local "$here" "$root/kvi"
git -C "$root/kvi" checkout -q "$(git -C "$here" rev-parse "$rev")"
rm -rf "$root/kvi/.git/hooks"

phase "running .ci/run inside the fresh root"
# A private mount and pid namespace: the mounts vanish with it, nothing
# propagates to the host's /dev, and every server a test left running dies
# when the namespace's first process exits.
set +e
unshare --mount --pid --fork --propagation private /bin/bash -euc '
    root=$1
    mount -t proc proc "$root/proc"
    mount -t sysfs sys "$root/sys"
    mkdir -p "$root/dev/pts" "$root/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
    rm -f "$root/dev/ptmx" && ln -s pts/ptmx "$root/dev/ptmx"
    mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
    exec chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -c "cd /kvi && bash .ci/run"
' fresh-root "$root"
rc=$?
set -e
phase ".ci/run finished with exit status $rc"
exit $rc
}
main "$@"
