#!/usr/bin/env bash
# test_install.sh BUILD_DIR SOURCE_DIR -- installing into any prefix
# (issue 11 item 1).  Installs the build tree with
#     DESTDIR=$T/dest cmake --install BUILD --prefix $T/prefix
# so that a file installed to an absolute path outside the prefix shows up
# under $T/dest but outside $T/dest$T/prefix (and nothing on the machine is
# touched); then moves the tree somewhere else (relocation) and runs the
# installed `kvi` against a real redis-server with KVI_MODULE_PATH and
# LD_LIBRARY_PATH unset: libkvi comes from the RUNPATH, the redis module
# from the prefix (proved by removing it: the command must then fail).
set -u
BUILD=${1:?usage: test_install.sh BUILD_DIR SOURCE_DIR}
SRC=${2:?usage: test_install.sh BUILD_DIR SOURCE_DIR}
. "$SRC/tests/support/testlib.sh"
t_init install
t_need_module "$BUILD/modules" redis
t_need_program redis-server redis-server

DEST=$T/dest
PREFIX=$T/prefix
check_ok "cmake --install succeeds" "$T/install.log" \
    env DESTDIR="$DEST" cmake --install "$BUILD" --prefix "$PREFIX"

# Nothing outside the prefix.
outside=$(find "$DEST" \( -type f -o -type l \) ! -path "$DEST$PREFIX/*" | head -5)
check "files installed outside the prefix: $outside" [ -z "$outside" ]

# Everything there: command, library, headers, pkg-config, modules.
TREE=$DEST$PREFIX
for f in bin/kvi include/kvi/kvi.h; do
    check "installed $f" [ -e "$TREE/$f" ]
done
libdir=$(dirname "$(find "$TREE" -name 'libkvi.so.*' | head -1)")
check_all "libkvi installed" -n "$libdir" -- "$libdir" != .
check "redis module in \$libdir/kvi" [ -f "$libdir/kvi/kvi_redis.so" ]
check "kvi.pc in \$libdir/pkgconfig" [ -f "$libdir/pkgconfig/kvi.pc" ]
check "kvi has RUNPATH \$ORIGIN/../lib" \
    bash -c "readelf -d '$TREE/bin/kvi' | grep -E 'RUNPATH.*\\\$ORIGIN/\\.\\./lib'"

# Relocate: the tree works wherever it is.
MOVED=$T/elsewhere/p
mkdir -p "$T/elsewhere"
mv "$TREE" "$MOVED"
libdir=$MOVED/${libdir#"$TREE"/}
unset KVI_MODULE_PATH LD_LIBRARY_PATH

t_redis_start
URL="redis://127.0.0.1:$REDIS_PORT/"
KVI="$MOVED/bin/kvi"
KVI_CMD=("$KVI" -u "$URL")
run --version
expect "installed kvi runs without LD_LIBRARY_PATH" 0 '*' ''
run store redis installed-key v1
expect "store through the installed redis module" 0 ''
run fetch redis installed-key
expect "fetch through the installed redis module" 0 'v1'
used=$(ldd "$KVI" | sed -n 's/^[[:space:]]*libkvi\.so[^ ]* => \([^ ]*\) .*/\1/p')
check "the installed kvi uses the installed libkvi (ldd: $used)" \
    [ "$(readlink -f "$used")" = "$(readlink -f "$libdir"/libkvi.so)" ]

# Proof that the module came from the prefix: without it the command fails
# with "engine module missing" (exit status of KVI_E_MODULE_MISSING) and
# says where it looked.
mv "$libdir/kvi/kvi_redis.so" "$T/kvi_redis.so.away"
run fetch redis installed-key
check "without the prefix's module the command fails (exit $rc)" [ "$rc" != 0 ]
expect_err_has "the message names the prefix's module directory" "$libdir/kvi"
mv "$T/kvi_redis.so.away" "$libdir/kvi/kvi_redis.so"
run fetch redis installed-key
expect "module back, fetch works" 0 'v1'

# The run wrote nothing outside the temp dir: the default store lives in
# $XDG_STATE_HOME (in $T) -- and -u runs do not touch it at all.
check "no default store created by -u runs" [ ! -e "$STATE/local.kvis" ]
t_done
