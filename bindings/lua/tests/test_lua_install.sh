#!/usr/bin/env bash
# test_lua_install.sh BUILD_DIR SOURCE_DIR -- the Lua module as installed
# and as built by luarocks (issue 14 item 1):
#  1. `cmake --install` into a DESTDIR prefix puts kvi.so into
#     $libdir/lua/5.1/ and $libdir/lua/5.4/; the tree is moved elsewhere
#     and each interpreter, with only LUA_CPATH pointing into the moved
#     tree, loads it (libkvi from its RUNPATH $ORIGIN/../..) and talks to
#     the local engine and, through the installed redis module, to a real
#     redis-server this script starts (and stops by PID);
#  2. `luarocks make` of bindings/lua/kvi-*.rockspec (in a copy, so the
#     source tree stays clean) against that installed libkvi builds a
#     kvi.so for each Lua version that works the same way.
set -u
BUILD=${1:?usage: test_lua_install.sh BUILD_DIR SOURCE_DIR}
SRC=${2:?usage: test_lua_install.sh BUILD_DIR SOURCE_DIR}
. "$SRC/tests/support/testlib.sh"
t_init lua-install
t_need_program luarocks luarocks
t_need_module "$BUILD/modules" redis
versions=()
for v in 5.1 5.4; do
    if [ -f "$BUILD/bindings/lua/$v/kvi.so" ] && command -v "lua$v" >/dev/null; then
        versions+=("$v")
    else
        t_skip "the Lua $v module or lua$v is missing ($BUILD/bindings/lua/$v/kvi.so)"
    fi
done

PREFIX=$T/prefix
check_ok "cmake --install succeeds" "$T/install.log" \
    env DESTDIR="$T/dest" cmake --install "$BUILD" --prefix "$PREFIX"
TREE=$T/dest$PREFIX
lib=$(dirname "$(find "$TREE" -name 'libkvi.so.*' | head -1)")
lib=${lib#"$TREE"/}
for v in "${versions[@]}"; do
    check "kvi.so installed into \$libdir/lua/$v" [ -f "$TREE/$lib/lua/$v/kvi.so" ]
done
MOVED=$T/elsewhere/p
mkdir -p "$T/elsewhere"
mv "$TREE" "$MOVED"
unset KVI_MODULE_PATH LD_LIBRARY_PATH LUA_PATH LUA_CPATH LUA_CPATH_5_4 LUA_PATH_5_4

t_redis_start
SCRIPT='local k = require("kvi").new()
assert(k:store("local", "a", "1"))
assert(k:add_url(arg[1]))
assert(k:store("redis", "lua-installed", arg[2]))
print(k:fetch("local", "a"), k:fetch("redis", "lua-installed"))'
echo "$SCRIPT" >"$T/check.lua"

# try NAME LUA CPATH: the script under LUA with only LUA_CPATH=CPATH set.
try() {
    env -i LUA_CPATH="$3" "$2" "$T/check.lua" "redis://127.0.0.1:$REDIS_PORT/" "$1" \
        >"$T/out" 2>"$T/err"
    rc=$?
    expect "$1" 0 "1\t$1\n"
}

for v in "${versions[@]}"; do
    try "installed-$v" "$(command -v "lua$v")" "$MOVED/$lib/lua/$v/?.so"
    check "installed $v kvi.so has RUNPATH \$ORIGIN/../.." \
        bash -c "readelf -d '$MOVED/$lib/lua/$v/kvi.so' | grep -q 'RUNPATH.*\\\$ORIGIN/\\.\\./\\.\\.'"
done

# luarocks make, from a copy of the binding, against the moved install.
cp -r "$SRC/bindings/lua" "$T/rock"
for v in "${versions[@]}"; do
    check_ok "luarocks make for Lua $v" "$T/rock-$v.log" \
        bash -c 'cd "$1" && shift && exec "$@"' rock "$T/rock" \
        luarocks --lua-version="$v" make --tree "$T/rocks" KVI_DIR="$MOVED" KVI_LIBDIR="$MOVED/$lib"
    try "luarocks-$v" "$(command -v "lua$v")" "$T/rocks/lib/lua/$v/?.so"
done
t_done
