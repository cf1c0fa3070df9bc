/*
 * kviproc.c -- a test-only Lua module (never installed) with the few
 * process functions the kvi specs need and plain Lua lacks:
 *
 *     local t = require "kviproc"
 *     local pid = t.fork()        -- 0 in the child
 *     t.exit(code)                -- _exit(): the child leaves without
 *                                 -- running the parent's Lua finalizers
 *     local code = t.wait(pid)    -- exit status, or nil, "signal N"
 *     t.sleep(seconds)            -- fractional seconds
 *     t.getpid()
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#if defined(__GNUC__)
#define KVIPROC_EXPORT __attribute__((visibility("default")))
#else
#define KVIPROC_EXPORT
#endif

KVIPROC_EXPORT int luaopen_kviproc(lua_State *L);

static int t_fork(lua_State *L)
{
    pid_t pid;
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return luaL_error(L, "fork: %s", strerror(errno));
    lua_pushnumber(L, (lua_Number)pid);
    return 1;
}

static int t_exit(lua_State *L)
{
    int code = (int)luaL_checknumber(L, 1);
    fflush(NULL);
    _exit(code);
}

static int t_wait(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checknumber(L, 1);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return luaL_error(L, "waitpid: %s", strerror(errno));
    }
    if (WIFEXITED(status)) {
        lua_pushnumber(L, WEXITSTATUS(status));
        return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "signal %d", WTERMSIG(status));
    return 2;
}

static int t_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - floor(s)) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return 0;
}

static int t_getpid(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)getpid());
    return 1;
}

KVIPROC_EXPORT int luaopen_kviproc(lua_State *L)
{
    static const struct {
        const char *name;
        lua_CFunction fn;
    } fns[] = {{"fork", t_fork},
               {"exit", t_exit},
               {"wait", t_wait},
               {"sleep", t_sleep},
               {"getpid", t_getpid}};
    size_t i;
    lua_newtable(L);
    for (i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        lua_pushcfunction(L, fns[i].fn);
        lua_setfield(L, -2, fns[i].name);
    }
    return 1;
}
