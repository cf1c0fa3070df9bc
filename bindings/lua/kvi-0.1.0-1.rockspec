-- luarocks make kvi-0.1.0-1.rockspec [KVI_DIR=/usr/local]
-- Builds the Lua module kvi (kvi_lua.c) against an installed libkvi
-- (headers in $KVI_DIR/include/kvi, libkvi.so in $KVI_DIR/lib or
-- $KVI_DIR/lib/<multiarch>), for the Lua luarocks is configured for.
rockspec_format = "3.0"
package = "kvi"
version = "0.1.0-1"
source = {
   url = "git+file:///dev/null", -- built from a checkout with `luarocks make`
}
description = {
   summary = "One key-value interface over local, redis and memcached stores",
   detailed = [[
      The script functions of kvi (store, fetch, remove, add, sub,
      counter_fetch, raw_query, ttl, keys, remove_chunk, stats, ping) with
      their OpenSIPS aliases, over libkvi.  See docs/lua.md.
   ]],
   license = "see the kvi repository",
}
dependencies = {
   "lua >= 5.1, < 5.5",
}
external_dependencies = {
   KVI = {
      header = "kvi/kvi.h",
      library = "kvi",
   },
}
build = {
   type = "builtin",
   modules = {
      kvi = {
         sources = { "kvi_lua.c" },
         libraries = { "kvi" },
         incdirs = { "$(KVI_INCDIR)" },
         libdirs = { "$(KVI_LIBDIR)" },
      },
   },
}
