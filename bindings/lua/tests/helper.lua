-- helper.lua -- shared set-up of the kvi Lua specs.
--
-- The runner (lua_runner.c) and CTest pass, in the environment:
--   KVI_TEST_ENGINE       local | shm | redis | redis-cluster | memcached: the engine under
--                         test (shm: a local collection in the shared-memory
--                         segment KVI_TEST_SHM_NAME, removed by its last closer)
--   KVI_TEST_LUA_VERSION  5.1 | 5.4: the Lua this run must be
--   KVI_TEST_REDIS_URL, KVI_TEST_MEMCACHED_URL: servers the runner started
--   KVI_TEST_DEAD_PORT    a 127.0.0.1 port nothing listens on
local kvi = require "kvi"

local H = {}

H.engine = os.getenv("KVI_TEST_ENGINE") or "local"
H.lua_version = os.getenv("KVI_TEST_LUA_VERSION")
H.dead_port = os.getenv("KVI_TEST_DEAD_PORT")
H.int64 = kvi.int64

local url_var = { redis = "KVI_TEST_REDIS_URL", ["redis-cluster"] = "KVI_TEST_REDIS_URL",
                  memcached = "KVI_TEST_MEMCACHED_URL" }

-- The URL of the engine under test, defined as id "<scheme>:t".
function H.url()
    if H.engine == "local" then
        return "local:t://"
    end
    if H.engine == "shm" then
        local name = assert(os.getenv("KVI_TEST_SHM_NAME"), "KVI_TEST_SHM_NAME is not set")
        return "local:t://?shm=" .. name .. "&shm_unlink=yes"
    end
    local url = os.getenv(url_var[H.engine] or "")
    assert(url, "no server URL for engine " .. H.engine .. " (run through kvi-lua-runner)")
    return (url:gsub("^(%w+)://", "%1:t://"))
end

H.scheme = ({ shm = "local", ["redis-cluster"] = "redis" })[H.engine] or H.engine
H.id = H.scheme .. ":t"

-- A new context with the engine under test defined; returns k, id.
function H.new()
    local k = assert(kvi.new())
    assert(k:add_url(H.url()))
    return k, H.id
end

-- Keys unique to this process, so runs against one server never collide.
local seq = 0
local prefix = ("lt%d_%d_"):format(os.time(), math.random(1, 1e9))
function H.key(name)
    seq = seq + 1
    return prefix .. seq .. "_" .. (name or "k")
end

-- Asserts the miss/failure convention: nil, a message, the status name.
function H.fails(status, v, msg, st)
    assert(v == nil, ("expected nil, got %s"):format(tostring(v)))
    assert(type(msg) == "string" and #msg > 0, "expected a message")
    assert(st == status, ("expected %s, got %s (%s)"):format(status, tostring(st), tostring(msg)))
    return msg
end

-- Integer results: a Lua integer on 5.4, a number within +-2^53 or a
-- decimal string outside it on 5.1.  Compares against the decimal text.
function H.int_text(v)
    if type(v) == "string" then
        return v
    end
    if H.int64 then
        assert(math.type(v) == "integer", "expected a Lua integer, got " .. tostring(v))
        return tostring(v)
    end
    assert(type(v) == "number" and v == math.floor(v), "expected an integer number")
    return ("%.0f"):format(v)
end

return H
