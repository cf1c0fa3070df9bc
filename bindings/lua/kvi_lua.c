/*
 * kvi_lua.c -- the Lua module "kvi": the script functions of kvi for Lua
 * 5.1 (PUC Lua, LuaJIT: Kamailio's app_lua, OpenResty) and Lua 5.4, from
 * this one source, over the public C API (kvi/kvi.h) only.
 *
 *     local kvi = require "kvi"
 *     local k = kvi.new()
 *     assert(k:store("local", "a", "1"))
 *     local v, err, status = k:fetch("local", "a")
 *
 * Conventions (docs/lua.md has the whole API):
 *  - success returns the value, or true where there is none;
 *  - a miss and every store-side failure return nil, message, status name
 *    ("KVI_NOT_FOUND", "KVI_E_TIMEOUT", ...); they never raise;
 *  - wrong argument types, a non-integer delta and use of a closed
 *    context raise a Lua error (programming errors);
 *  - 64-bit counters: Lua integers on 5.3+; on 5.1 a number when it is
 *    within +-2^53 (exact in a double), else its decimal string.
 *
 * No Lua error is ever raised while the C library holds a lock or while a
 * result is owned only by a C local: results that are still to be turned
 * into Lua values are parked in the context (freed on its next call, on
 * close or by the garbage collector), and kvi_foreach_conn's callback only
 * collects handles.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "kvi/kvi.h"

/* Exported entry point; the build hides everything else. */
#if defined(__GNUC__)
#define KVI_LUA_EXPORT __attribute__((visibility("default")))
#else
#define KVI_LUA_EXPORT
#endif

/* The module's entry point, called by require "kvi": pushes the module
 * table {new, null, version, int64} and registers the context metatable in
 * the registry (once per Lua state).  Lua states of different threads each
 * load their own; a context belongs to the state that made it. */
KVI_LUA_EXPORT int luaopen_kvi(lua_State *L);

#define CTX_MT "kvi.context"

/* ---- what differs between the Lua versions ---------------------------- */

#if LUA_VERSION_NUM < 502
static void compat_setfuncs(lua_State *L, const luaL_Reg *l)
{
    for (; l->name != NULL; l++) {
        lua_pushcfunction(L, l->func);
        lua_setfield(L, -2, l->name);
    }
}
#define LKVI_SETFUNCS(L, l) compat_setfuncs(L, l)
#else
#define LKVI_SETFUNCS(L, l) luaL_setfuncs(L, l, 0)
#endif

/* Lua integers hold every int64 (5.3+ with the default 64-bit lua_Integer). */
#if LUA_VERSION_NUM >= 503 && defined(LUA_MAXINTEGER) && LUA_MAXINTEGER == INT64_MAX
#define LKVI_INT64 1
#else
#define LKVI_INT64 0
#endif

/* The largest magnitude a double holds with every integer below it. */
#define LKVI_EXACT_DOUBLE (INT64_C(1) << 53)

/* ---- the context userdata ------------------------------------------- */

typedef struct lkvi {
    kvi *k;                   /* NULL once closed */
    kvi_value pending;        /* fetched, not yet a Lua string */
    kvi_reply *pending_tree;  /* a reply not yet converted */
    kvi_conn **pending_conns; /* handles collected by stats() */
    kvi_batch *pending_batch; /* a batch being built or read by batch() */
} lkvi;

static void drop_pending(lkvi *c)
{
    kvi_value_free(&c->pending);
    kvi_reply_free(c->pending_tree);
    c->pending_tree = NULL;
    free(c->pending_conns);
    c->pending_conns = NULL;
    kvi_batch_free(c->pending_batch);
    c->pending_batch = NULL;
}

static void ctx_close(lkvi *c)
{
    drop_pending(c);
    if (c->k != NULL) {
        kvi_free(c->k);
        c->k = NULL;
    }
}

/* The open context at argument 1; a Lua error for anything else. */
static lkvi *check_ctx(lua_State *L)
{
    lkvi *c = (lkvi *)luaL_checkudata(L, 1, CTX_MT);
    if (c->k == NULL)
        luaL_error(L, "kvi: context used after close()");
    drop_pending(c);
    return c;
}

/* Checks again that c is open after reading an options table: lua_getfield
 * may run Lua code (an __index metamethod) that closed the context. */
static void recheck_ctx(lua_State *L, const lkvi *c)
{
    if (c->k == NULL)
        luaL_error(L, "kvi: context used after close()");
}

/* nil, message, status name: the one way every call reports a miss or a
 * failure.  The message of an error is the call's detail (never a
 * password) or, when there is none, the status' text; an outcome (a miss,
 * a refusal) gets the status' text, since kvi_errmsg() keeps the last
 * *failed* call's detail, which may be an earlier call's. */
static int push_fail(lua_State *L, const lkvi *c, kvi_status st)
{
    const char *msg = c->k != NULL && KVI_STATUS_IS_ERROR(st) ? kvi_errmsg(c->k) : "";
    lua_pushnil(L);
    lua_pushstring(L, msg[0] != '\0' ? msg : kvi_strerror(st));
    lua_pushstring(L, kvi_status_name(st));
    return 3;
}

static int push_ok(lua_State *L)
{
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- 64-bit integers ------------------------------------------------- */

static void push_int64(lua_State *L, int64_t v)
{
#if LKVI_INT64
    lua_pushinteger(L, (lua_Integer)v);
#else
    if (v >= -LKVI_EXACT_DOUBLE && v <= LKVI_EXACT_DOUBLE) {
        lua_pushnumber(L, (lua_Number)v);
    } else {
        char buf[24];
        snprintf(buf, sizeof buf, "%" PRId64, v);
        lua_pushstring(L, buf);
    }
#endif
}

static void push_uint64(lua_State *L, uint64_t v)
{
    if (v <= (uint64_t)INT64_MAX) {
        push_int64(L, (int64_t)v);
    } else {
        char buf[24];
        snprintf(buf, sizeof buf, "%" PRIu64, v);
        lua_pushstring(L, buf);
    }
}

/* Strict decimal: optional '-' or '+', then 1..19 digits, within int64. */
static int parse_decimal(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    uint64_t mag = 0;
    const uint64_t limit = (uint64_t)INT64_MAX + 1u;
    if (len > 0 && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == len)
        return 0;
    for (; i < len; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return 0;
        d = (unsigned)(s[i] - '0');
        if (mag > (limit - d) / 10u)
            return 0;
        mag = mag * 10u + d;
    }
    if (!neg && mag > (uint64_t)INT64_MAX)
        return 0;
    *out = neg ? (int64_t)(0u - mag) : (int64_t)mag;
    return 1;
}

/* Raises "bad argument #argn to 'f' (<what><msg>)". */
static void int_argerror(lua_State *L, int argn, const char *what, const char *msg)
{
    lua_pushfstring(L, "%s%s", what, msg);
    luaL_argerror(L, argn, lua_tostring(L, -1));
}

/* The value at stack index idx as an int64: an integer (5.3+), an
 * integer-valued number that is exact (5.1: within +-2^53), or a decimal
 * string.  Anything else is a Lua error against argument argn, its message
 * prefixed by what ("" or "bounds.min: "). */
static int64_t to_int64(lua_State *L, int idx, int argn, const char *what)
{
    int64_t v = 0;
    if (lua_type(L, idx) == LUA_TNUMBER) {
#if LKVI_INT64
        int isint = 0;
        lua_Integer i = lua_tointegerx(L, idx, &isint);
        if (!isint)
            int_argerror(L, argn, what,
                         "integer expected, got a number with a fraction or out of range");
        v = (int64_t)i;
#else
        lua_Number d = lua_tonumber(L, idx);
        if (d != floor(d))
            int_argerror(L, argn, what, "integer expected, got a number with a fraction");
        if (!(d >= (lua_Number)-LKVI_EXACT_DOUBLE && d <= (lua_Number)LKVI_EXACT_DOUBLE))
            int_argerror(L, argn, what,
                         "number outside +-2^53 is not exact; pass it as a decimal string");
        v = (int64_t)d;
#endif
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (!parse_decimal(s, len, &v))
            int_argerror(L, argn, what, "decimal integer string expected (int64 range)");
    } else {
        lua_pushfstring(L, "integer or decimal string expected, got %s", luaL_typename(L, idx));
        int_argerror(L, argn, what, lua_tostring(L, -1));
    }
    return v;
}

static int64_t check_int64(lua_State *L, int argn)
{
    return to_int64(L, argn, argn, "");
}

/* Optional expiry in seconds; nil or absent is 0 (never expires). */
static int64_t opt_expire(lua_State *L, int argn)
{
    return lua_isnoneornil(L, argn) ? 0 : check_int64(L, argn);
}

/* Checks that the options table at argn has only the given string keys,
 * so that a misspelt option ({mn = 0}) is an error, not ignored. */
static void check_option_names(lua_State *L, int argn, const char *const *names)
{
    luaL_checktype(L, argn, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, argn) != 0) {
        const char *const *n = names;
        lua_pop(L, 1); /* the value; the key stays for lua_next */
        if (lua_type(L, -1) == LUA_TSTRING) {
            for (; *n != NULL; n++) {
                if (strcmp(*n, lua_tostring(L, -1)) == 0)
                    break;
            }
        }
        if (*n == NULL || lua_type(L, -1) != LUA_TSTRING) {
            lua_pushfstring(L, "unknown option %s",
                            lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                           : luaL_typename(L, -1));
            luaL_argerror(L, argn, lua_tostring(L, -1));
        }
    }
}

/* Field name of the options table at argn as an int64; dflt when nil. */
static int64_t opt_field_int64(lua_State *L, int argn, const char *name, int64_t dflt)
{
    int64_t v = dflt;
    lua_getfield(L, argn, name);
    if (!lua_isnil(L, -1)) {
        char what[32];
        snprintf(what, sizeof what, "%s: ", name);
        v = to_int64(L, lua_gettop(L), argn, what);
    }
    lua_pop(L, 1);
    return v;
}

/* ---- module functions ------------------------------------------------ */

/* kvi.new() -> context | nil, msg, status */
static int l_new(lua_State *L)
{
    lkvi *c = (lkvi *)lua_newuserdata(L, sizeof *c);
    kvi_status st;
    memset(c, 0, sizeof *c);
    luaL_getmetatable(L, CTX_MT);
    lua_setmetatable(L, -2);
    st = kvi_new(&c->k);
    if (st != KVI_OK)
        return push_fail(L, c, st);
    return 1;
}

/* ---- context methods ------------------------------------------------- */

static int l_close(lua_State *L)
{
    lkvi *c = (lkvi *)luaL_checkudata(L, 1, CTX_MT);
    ctx_close(c);
    return push_ok(L);
}

static int l_gc(lua_State *L)
{
    lkvi *c = (lkvi *)luaL_checkudata(L, 1, CTX_MT);
    ctx_close(c);
    return 0;
}

static int l_tostring(lua_State *L)
{
    lkvi *c = (lkvi *)luaL_checkudata(L, 1, CTX_MT);
    if (c->k == NULL)
        lua_pushliteral(L, "kvi context (closed)");
    else
        lua_pushfstring(L, "kvi context (%p)", (void *)c->k);
    return 1;
}

static int l_is_closed(lua_State *L)
{
    lkvi *c = (lkvi *)luaL_checkudata(L, 1, CTX_MT);
    lua_pushboolean(L, c->k == NULL);
    return 1;
}

static int l_add_url(lua_State *L)
{
    lkvi *c = check_ctx(L);
    kvi_status st = kvi_add_url(c->k, luaL_checkstring(L, 2));
    return st == KVI_OK ? push_ok(L) : push_fail(L, c, st);
}

static int l_load_config(lua_State *L)
{
    lkvi *c = check_ctx(L);
    kvi_status st = kvi_load_config(c->k, luaL_checkstring(L, 2));
    return st == KVI_OK ? push_ok(L) : push_fail(L, c, st);
}

/* k:store(id, key, value [, expire [, {nx = true}]]) */
static int l_store(lua_State *L)
{
    static const char *const names[] = {"nx", NULL};
    lkvi *c = check_ctx(L);
    size_t klen, vlen;
    const char *id = luaL_checkstring(L, 2);
    const char *key = luaL_checklstring(L, 3, &klen);
    const char *val = luaL_checklstring(L, 4, &vlen);
    int64_t expire_s = opt_expire(L, 5);
    int nx = 0;
    kvi_status st;
    if (!lua_isnoneornil(L, 6)) {
        check_option_names(L, 6, names);
        lua_getfield(L, 6, "nx");
        if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
            luaL_argerror(L, 6, "nx: boolean expected");
        nx = lua_toboolean(L, -1);
        lua_pop(L, 1);
        recheck_ctx(L, c);
    }
    if (nx)
        st = kvi_store_nx(c->k, id, key, klen, val, vlen, expire_s);
    else
        st = kvi_store(c->k, id, key, klen, val, vlen, expire_s);
    return st == KVI_OK ? push_ok(L) : push_fail(L, c, st);
}

static int l_fetch(lua_State *L)
{
    lkvi *c = check_ctx(L);
    size_t klen;
    const char *id = luaL_checkstring(L, 2);
    const char *key = luaL_checklstring(L, 3, &klen);
    kvi_status st = kvi_fetch(c->k, id, key, klen, &c->pending);
    if (st != KVI_OK)
        return push_fail(L, c, st);
    lua_pushlstring(L, c->pending.data, c->pending.len);
    kvi_value_free(&c->pending);
    return 1;
}

static int l_remove(lua_State *L)
{
    lkvi *c = check_ctx(L);
    size_t klen;
    const char *id = luaL_checkstring(L, 2);
    const char *key = luaL_checklstring(L, 3, &klen);
    kvi_status st = kvi_remove(c->k, id, key, klen);
    return st == KVI_OK ? push_ok(L) : push_fail(L, c, st);
}

typedef kvi_status (*counter_op)(kvi *k, const char *id, const void *key, size_t key_len,
                                 int64_t delta, int64_t expire_s, int64_t *new_value);
typedef kvi_status (*bounded_op)(kvi *k, const char *id, const void *key, size_t key_len,
                                 int64_t delta, int64_t expire_s, int64_t min, int64_t max,
                                 int64_t *value);

/* k:add / k:sub (id, key, delta [, expire [, {min = m, max = n}]]): with a
 * bounds table the bounded form (an absent side is open); a refusal is
 * nil, msg, "KVI_OUT_OF_BOUNDS", current value. */
static int counter_change(lua_State *L, counter_op op, bounded_op bop)
{
    static const char *const names[] = {"min", "max", NULL};
    lkvi *c = check_ctx(L);
    size_t klen;
    const char *id = luaL_checkstring(L, 2);
    const char *key = luaL_checklstring(L, 3, &klen);
    int64_t delta = check_int64(L, 4);
    int64_t expire_s = opt_expire(L, 5);
    int64_t value = 0;
    kvi_status st;
    if (lua_isnoneornil(L, 6)) {
        st = op(c->k, id, key, klen, delta, expire_s, &value);
    } else {
        int64_t min, max;
        check_option_names(L, 6, names);
        min = opt_field_int64(L, 6, "min", INT64_MIN);
        max = opt_field_int64(L, 6, "max", INT64_MAX);
        recheck_ctx(L, c);
        st = bop(c->k, id, key, klen, delta, expire_s, min, max, &value);
        if (st == KVI_OUT_OF_BOUNDS) {
            push_fail(L, c, st);
            push_int64(L, value);
            return 4;
        }
    }
    if (st != KVI_OK)
        return push_fail(L, c, st);
    push_int64(L, value);
    return 1;
}

static int l_add(lua_State *L)
{
    return counter_change(L, kvi_add, kvi_add_bounded);
}

static int l_sub(lua_State *L)
{
    return counter_change(L, kvi_sub, kvi_sub_bounded);
}

typedef kvi_status (*key_int_op)(kvi *k, const char *id, const void *key, size_t key_len,
                                 int64_t *out);

/* counter_fetch and ttl: a key in, an integer out. */
static int key_to_int(lua_State *L, key_int_op op)
{
    lkvi *c = check_ctx(L);
    size_t klen;
    const char *id = luaL_checkstring(L, 2);
    const char *key = luaL_checklstring(L, 3, &klen);
    int64_t v = 0;
    kvi_status st = op(c->k, id, key, klen, &v);
    if (st != KVI_OK)
        return push_fail(L, c, st);
    push_int64(L, v);
    return 1;
}

static int l_counter_fetch(lua_State *L)
{
    return key_to_int(L, kvi_counter_fetch);
}

static int l_ttl(lua_State *L)
{
    return key_to_int(L, kvi_ttl);
}

/* The sentinel for a nil reply inside a raw query's result (kvi.null). */
static void push_null(lua_State *L)
{
    lua_pushlightuserdata(L, NULL);
}

/* Pushes one reply as a Lua value: strings, integers, tables for arrays,
 * {ok = "OK"} for a status, {err = "..."} for an error inside an array,
 * kvi.null for nil. */
static void push_reply(lua_State *L, const kvi_reply *r)
{
    size_t len, i, n;
    const char *s;
    luaL_checkstack(L, 4, "kvi: reply too deep");
    switch (kvi_reply_type_of(r)) {
    case KVI_REPLY_INTEGER:
        push_int64(L, kvi_reply_integer(r));
        break;
    case KVI_REPLY_STRING:
        s = kvi_reply_str(r, &len);
        lua_pushlstring(L, s, len);
        break;
    case KVI_REPLY_STATUS:
    case KVI_REPLY_ERROR:
        s = kvi_reply_str(r, &len);
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, s, len);
        lua_setfield(L, -2, kvi_reply_type_of(r) == KVI_REPLY_STATUS ? "ok" : "err");
        break;
    case KVI_REPLY_ARRAY:
        n = kvi_reply_count(r);
        lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
        for (i = 0; i < n; i++) {
            push_reply(L, kvi_reply_element(r, i));
            lua_rawseti(L, -2, (int)(i + 1));
        }
        break;
    case KVI_REPLY_NIL:
    default:
        push_null(L);
        break;
    }
}

static int l_raw_query(lua_State *L)
{
    lkvi *c = check_ctx(L);
    size_t qlen;
    const char *id = luaL_checkstring(L, 2);
    const char *q = luaL_checklstring(L, 3, &qlen);
    kvi_status st = kvi_raw_query(c->k, id, q, qlen, &c->pending_tree);
    if (st != KVI_OK)
        return push_fail(L, c, st);
    if (kvi_reply_type_of(c->pending_tree) == KVI_REPLY_ERROR) {
        size_t len;
        const char *s = kvi_reply_str(c->pending_tree, &len);
        lua_pushnil(L);
        lua_pushlstring(L, s, len);
        lua_pushstring(L, kvi_status_name(KVI_E_BACKEND));
        drop_pending(c);
        return 3;
    }
    push_reply(L, c->pending_tree);
    drop_pending(c);
    return 1;
}


/* ---- batches ---------------------------------------------------------- */

/* Pushes t[name] of the table at idx without metamethods: no Lua code may
 * run (and close the context, freeing the batch) while a batch is built. */
static void raw_field(lua_State *L, int idx, const char *name)
{
    lua_pushstring(L, name);
    lua_rawget(L, idx);
}

#if LUA_VERSION_NUM >= 502
#define lua_objlen_compat lua_rawlen
#else
#define lua_objlen_compat lua_objlen
#endif

/* The {nx = true} table of a store operation at idx (argn names the
 * argument for errors). */
static int batch_nx(lua_State *L, int idx, int argn)
{
    int nx;
    if (lua_isnil(L, idx))
        return 0;
    if (!lua_istable(L, idx))
        luaL_argerror(L, argn, "store options: table expected");
    raw_field(L, idx, "nx");
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
        luaL_argerror(L, argn, "nx: boolean expected");
    nx = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return nx;
}

/* Adds the operation {name, id, ...} (the table at idx, operation number
 * n for messages) to b; the arguments are those of the method of the same
 * name.  A Lua error for an unknown name or an argument of the wrong type;
 * what the library refuses becomes that operation's result. */
static void batch_add_op(lua_State *L, kvi_batch *b, int idx, int n)
{
    size_t klen = 0, vlen = 0;
    const char *name, *id, *key;
    int base = lua_gettop(L);
    int argn = 2;
    char what[48];
    if (!lua_istable(L, idx)) {
        lua_pushfstring(L, "operation %d: table expected, got %s", n, luaL_typename(L, idx));
        luaL_argerror(L, argn, lua_tostring(L, -1));
    }
    for (int i = 1; i <= 7; i++)
        lua_rawgeti(L, idx, i); /* base+1 .. base+7 */
    name = lua_tostring(L, base + 1);
    id = lua_tostring(L, base + 2);
    if (name == NULL || lua_type(L, base + 1) != LUA_TSTRING || id == NULL ||
        lua_type(L, base + 2) != LUA_TSTRING) {
        lua_pushfstring(L, "operation %d: {name, id, ...} with strings expected", n);
        luaL_argerror(L, argn, lua_tostring(L, -1));
    }
    if (strncmp(name, "cache_", 6) == 0)
        name += 6;
    snprintf(what, sizeof what, "operation %d: ", n);
    if (strcmp(name, "raw_query") == 0) {
        const char *q = lua_tolstring(L, base + 3, &vlen);
        if (q == NULL)
            int_argerror(L, argn, what, "query string expected");
        kvi_batch_raw_query(b, id, q, vlen);
        lua_settop(L, base);
        return;
    }
    key = lua_type(L, base + 3) == LUA_TSTRING ? lua_tolstring(L, base + 3, &klen) : NULL;
    if (key == NULL)
        int_argerror(L, argn, what, "key string expected");
    if (strcmp(name, "fetch") == 0) {
        kvi_batch_fetch(b, id, key, klen);
    } else if (strcmp(name, "remove") == 0) {
        kvi_batch_remove(b, id, key, klen);
    } else if (strcmp(name, "counter_fetch") == 0) {
        kvi_batch_counter_fetch(b, id, key, klen);
    } else if (strcmp(name, "store") == 0) {
        const char *val = lua_type(L, base + 4) == LUA_TSTRING || lua_type(L, base + 4) == LUA_TNUMBER
                              ? lua_tolstring(L, base + 4, &vlen)
                              : NULL;
        int64_t expire_s = lua_isnil(L, base + 5) ? 0 : to_int64(L, base + 5, argn, what);
        if (val == NULL)
            int_argerror(L, argn, what, "value string expected");
        if (batch_nx(L, base + 6, argn))
            kvi_batch_store_nx(b, id, key, klen, val, vlen, expire_s);
        else
            kvi_batch_store(b, id, key, klen, val, vlen, expire_s);
    } else if (strcmp(name, "add") == 0 || strcmp(name, "sub") == 0) {
        int sub = name[0] == 's';
        int64_t delta = to_int64(L, base + 4, argn, what);
        int64_t expire_s = lua_isnil(L, base + 5) ? 0 : to_int64(L, base + 5, argn, what);
        if (lua_isnil(L, base + 6)) {
            (sub ? kvi_batch_sub : kvi_batch_add)(b, id, key, klen, delta, expire_s);
        } else {
            int64_t min = INT64_MIN, max = INT64_MAX;
            if (!lua_istable(L, base + 6))
                int_argerror(L, argn, what, "bounds table {min = m, max = n} expected");
            raw_field(L, base + 6, "min");
            if (!lua_isnil(L, -1))
                min = to_int64(L, lua_gettop(L), argn, what);
            raw_field(L, base + 6, "max");
            if (!lua_isnil(L, -1))
                max = to_int64(L, lua_gettop(L), argn, what);
            (sub ? kvi_batch_sub_bounded : kvi_batch_add_bounded)(b, id, key, klen, delta,
                                                                  expire_s, min, max);
        }
    } else {
        lua_pushfstring(L, "operation %d: unknown operation '%s'", n, name);
        luaL_argerror(L, argn, lua_tostring(L, -1));
    }
    lua_settop(L, base);
}

/* Pushes the result of operation i as a table: {value} on success (true
 * for store and remove), {nil, msg, status} otherwise, with the current
 * value as [4] for a refused bounded change.  Returns 1 for a raw query
 * whose reply is an error reply (a failure here, status OK in the batch). */
static int push_batch_result(lua_State *L, kvi_batch *b, size_t i)
{
    kvi_status st = kvi_batch_status(b, i);
    kvi_op_kind kind = kvi_batch_kind(b, i);
    size_t len = 0;
    const kvi_reply *r;
    lua_createtable(L, 4, 0);
    if (st != KVI_OK) {
        const char *msg = kvi_batch_errmsg(b, i);
        lua_pushstring(L, msg[0] != '\0' ? msg : kvi_strerror(st));
        lua_rawseti(L, -2, 2);
        lua_pushstring(L, kvi_status_name(st));
        lua_rawseti(L, -2, 3);
        if (st == KVI_OUT_OF_BOUNDS) {
            push_int64(L, kvi_batch_integer(b, i));
            lua_rawseti(L, -2, 4);
        }
        return 0;
    }
    switch (kind) {
    case KVI_OP_FETCH: {
        const char *v = kvi_batch_value(b, i, &len);
        lua_pushlstring(L, v != NULL ? v : "", len);
        break;
    }
    case KVI_OP_ADD:
    case KVI_OP_SUB:
    case KVI_OP_ADD_BOUNDED:
    case KVI_OP_SUB_BOUNDED:
    case KVI_OP_COUNTER_FETCH:
        push_int64(L, kvi_batch_integer(b, i));
        break;
    case KVI_OP_RAW_QUERY:
        r = kvi_batch_reply(b, i);
        if (kvi_reply_type_of(r) == KVI_REPLY_ERROR) {
            const char *s = kvi_reply_str(r, &len);
            lua_pushlstring(L, s, len);
            lua_rawseti(L, -2, 2);
            lua_pushstring(L, kvi_status_name(KVI_E_BACKEND));
            lua_rawseti(L, -2, 3);
            return 1;
        }
        push_reply(L, r);
        break;
    default:
        lua_pushboolean(L, 1);
        break;
    }
    lua_rawseti(L, -2, 1);
    return 0;
}

/* k:batch({{"fetch", id, key}, {"add", id, key, delta [, expire [, bounds]]}, ...}
 *         [, timeout_ms]) -> results, failed
 * Runs the operations together (one round trip per server where the engine
 * can) and returns one result table per operation, in order, and the number
 * that failed. */
static int l_batch(lua_State *L)
{
    lkvi *c = check_ctx(L);
    int64_t timeout_ms = 0;
    size_t n, i;
    kvi_status st;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) {
        timeout_ms = check_int64(L, 3);
        if (timeout_ms < 0 || timeout_ms > UINT32_MAX)
            luaL_argerror(L, 3, "timeout_ms: 0..4294967295 expected");
    }
    st = kvi_batch_new(c->k, &c->pending_batch);
    if (st != KVI_OK)
        return push_fail(L, c, st);
    n = (size_t)lua_objlen_compat(L, 2);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, (int)i);
        batch_add_op(L, c->pending_batch, lua_gettop(L), (int)i);
        lua_pop(L, 1);
        recheck_ctx(L, c);
    }
    (void)kvi_batch_run(c->pending_batch, (uint32_t)timeout_ms);
    lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
    /* An error reply of a raw query is a failure here as in k:raw_query(),
     * so it counts in failed like the batch's own errors. */
    size_t failed = kvi_batch_failed(c->pending_batch);
    for (i = 0; i < kvi_batch_count(c->pending_batch); i++) {
        failed += (size_t)push_batch_result(L, c->pending_batch, i);
        lua_rawseti(L, -2, (int)(i + 1));
    }
    push_uint64(L, (uint64_t)failed);
    drop_pending(c);
    return 2;
}

/* Optional glob at idx: nil/absent is "" (every key). */
static const char *opt_glob(lua_State *L, int idx, size_t *len)
{
    if (lua_isnoneornil(L, idx)) {
        *len = 0;
        return "";
    }
    return luaL_checklstring(L, idx, len);
}

static int l_keys(lua_State *L)
{
    lkvi *c = check_ctx(L);
    size_t glen;
    const char *id = luaL_checkstring(L, 2);
    const char *glob = opt_glob(L, 3, &glen);
    kvi_status st = kvi_keys(c->k, id, glob, glen, &c->pending_tree);
    if (st != KVI_OK)
        return push_fail(L, c, st);
    push_reply(L, c->pending_tree);
    drop_pending(c);
    return 1;
}

static int l_remove_chunk(lua_State *L)
{
    lkvi *c = check_ctx(L);
    size_t glen;
    const char *id = luaL_checkstring(L, 2);
    const char *glob = luaL_checklstring(L, 3, &glen);
    uint64_t removed = 0;
    kvi_status st = kvi_remove_chunk(c->k, id, glob, glen, &removed);
    if (st != KVI_OK)
        return push_fail(L, c, st);
    push_uint64(L, removed);
    return 1;
}

static int l_ping(lua_State *L)
{
    lkvi *c = check_ctx(L);
    kvi_status st = kvi_ping(c->k, luaL_checkstring(L, 2));
    return st == KVI_OK ? push_ok(L) : push_fail(L, c, st);
}

static void set_u64(lua_State *L, const char *name, uint64_t v)
{
    push_uint64(L, v);
    lua_setfield(L, -2, name);
}

static void push_stats(lua_State *L, const kvi_stats *s)
{
    lua_createtable(L, 0, 12);
    set_u64(L, "ops", s->ops);
    set_u64(L, "errors", s->errors);
    set_u64(L, "misses", s->misses);
    set_u64(L, "slow_ops", s->slow_ops);
    set_u64(L, "rejected", s->rejected);
    set_u64(L, "total_us", s->total_us);
    if (s->has_content) {
        set_u64(L, "entries", s->entries);
        set_u64(L, "bytes", s->bytes);
        set_u64(L, "hits", s->hits);
        set_u64(L, "expired", s->expired);
        set_u64(L, "evicted", s->evicted);
        if (s->near_hits > 0)
            set_u64(L, "near_hits", s->near_hits);
    }
    if (s->shared) {
        /* ops, errors, misses and hits are every attached process's. */
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "shared");
        set_u64(L, "processes", s->processes);
    }
}

struct conn_list {
    kvi_conn **v;
    size_t n, cap;
    int nomem;
};

/* Runs under the context's iteration: collects only, never touches Lua. */
static void collect_conn(void *ud, kvi_conn *conn)
{
    struct conn_list *l = (struct conn_list *)ud;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        kvi_conn **v = (kvi_conn **)realloc(l->v, cap * sizeof(kvi_conn *));
        if (v == NULL) {
            l->nomem = 1;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = conn;
}

/* k:stats(id) -> table of one id; k:stats() -> { [id] = table, ... } */
static int l_stats(lua_State *L)
{
    lkvi *c = check_ctx(L);
    kvi_stats s;
    kvi_status st;
    struct conn_list l = {NULL, 0, 0, 0};
    size_t i;
    if (!lua_isnoneornil(L, 2)) {
        st = kvi_stats_get(c->k, luaL_checkstring(L, 2), &s);
        if (st != KVI_OK)
            return push_fail(L, c, st);
        push_stats(L, &s);
        return 1;
    }
    st = kvi_foreach_conn(c->k, collect_conn, &l);
    c->pending_conns = l.v; /* freed by drop_pending, also after a Lua error */
    if (st == KVI_OK && l.nomem)
        st = KVI_E_NOMEM;
    if (st != KVI_OK) {
        drop_pending(c);
        return push_fail(L, c, st);
    }
    lua_createtable(L, 0, l.n > INT32_MAX ? INT32_MAX : (int)l.n);
    for (i = 0; i < l.n; i++) {
        st = kvi_conn_stats(l.v[i], &s);
        if (st != KVI_OK) {
            drop_pending(c);
            return push_fail(L, c, st);
        }
        push_stats(L, &s);
        lua_setfield(L, -2, kvi_conn_id(l.v[i]));
    }
    drop_pending(c);
    return 1;
}

/* k:caps(id) -> { ttl = true, counters = true, ... } (the bits it has) */
static int l_caps(lua_State *L)
{
    lkvi *c = check_ctx(L);
    kvi_conn *conn;
    uint32_t caps;
    unsigned i;
    kvi_status st = kvi_conn_get(c->k, luaL_checkstring(L, 2), &conn);
    if (st != KVI_OK)
        return push_fail(L, c, st);
    caps = kvi_conn_caps(conn);
    lua_newtable(L);
    for (i = 0; i < KVI_CAP_BITS; i++) {
        const char *name = kvi_cap_name(1u << i);
        if ((caps & (1u << i)) != 0 && name != NULL) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, name);
        }
    }
    return 1;
}

/* Every method with its OpenSIPS alias where the script interface has one. */
static const luaL_Reg ctx_methods[] = {
    {"add_url", l_add_url},
    {"load_config", l_load_config},
    {"store", l_store},
    {"fetch", l_fetch},
    {"remove", l_remove},
    {"add", l_add},
    {"sub", l_sub},
    {"counter_fetch", l_counter_fetch},
    {"raw_query", l_raw_query},
    {"ttl", l_ttl},
    {"keys", l_keys},
    {"remove_chunk", l_remove_chunk},
    {"stats", l_stats},
    {"ping", l_ping},
    {"caps", l_caps},
    {"batch", l_batch},
    {"close", l_close},
    {"is_closed", l_is_closed},
    {"cache_store", l_store},
    {"cache_fetch", l_fetch},
    {"cache_remove", l_remove},
    {"cache_add", l_add},
    {"cache_sub", l_sub},
    {"cache_counter_fetch", l_counter_fetch},
    {"cache_raw_query", l_raw_query},
    {"cache_remove_chunk", l_remove_chunk},
    {NULL, NULL},
};

static const luaL_Reg ctx_meta[] = {
    {"__gc", l_gc},
#if LUA_VERSION_NUM >= 504
    {"__close", l_gc},
#endif
    {"__tostring", l_tostring},
    {NULL, NULL},
};

static const luaL_Reg module_funcs[] = {
    {"new", l_new},
    {NULL, NULL},
};

KVI_LUA_EXPORT int luaopen_kvi(lua_State *L)
{
    if (luaL_newmetatable(L, CTX_MT)) {
        LKVI_SETFUNCS(L, ctx_meta);
        lua_newtable(L);
        LKVI_SETFUNCS(L, ctx_methods);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, "kvi context");
        lua_setfield(L, -2, "__name");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);

    lua_newtable(L);
    LKVI_SETFUNCS(L, module_funcs);
    push_null(L);
    lua_setfield(L, -2, "null");
    lua_pushstring(L, kvi_version());
    lua_setfield(L, -2, "version");
    lua_pushboolean(L, LKVI_INT64);
    lua_setfield(L, -2, "int64");
    return 1;
}
