-- api_spec.lua -- the module itself, on the local engine (no server):
-- its table, argument errors, the 64-bit integer rules of each Lua
-- version, configuration calls, contexts' lifetime.
local kvi = require "kvi"
local H = require "helper"

local function tmpname()
    local p = os.tmpname()
    os.remove(p)
    return p
end

describe("the kvi module under " .. _VERSION, function()
    it("has new, null, version and int64", function()
        assert.are.equal("function", type(kvi.new))
        assert.are.equal("userdata", type(kvi.null))
        assert.is_truthy(kvi.version:match("^%d+%.%d+%.%d+"))
        assert.are.equal(_VERSION ~= "Lua 5.1", kvi.int64)
    end)

    it("gives each context its own local store", function()
        local a, b = kvi.new(), kvi.new()
        assert(a:store("local", "k", "a"))
        H.fails("KVI_NOT_FOUND", b:fetch("local", "k"))
        assert(b:store("local", "k", "b"))
        assert.are.equal("a", a:fetch("local", "k"))
        assert.are.equal("b", b:fetch("local", "k"))
        a:close()
        assert.are.equal("b", b:fetch("local", "k"))
        b:close()
    end)
end)

describe("argument errors raise Lua errors", function()
    local k
    before_each(function()
        k = kvi.new()
    end)
    after_each(function()
        k:close()
    end)

    it("for wrong types of id, key and value", function()
        assert.has_error(function() k:store(nil, "a", "1") end)
        assert.has_error(function() k:store("local", {}, "1") end)
        assert.has_error(function() k:store("local", "a", nil) end)
        assert.has_error(function() k:fetch("local") end)
        assert.has_error(function() k:remove("local", true) end)
        assert.has_error(function() k:keys("local", {}) end)
        assert.has_error(function() k:remove_chunk("local") end)
        assert.has_error(function() k:add_url(nil) end)
        assert.has_error(function() k:load_config() end)
        assert.has_error(function() kvi.new().fetch(nil, "local", "a") end)
        assert.has_error(function() k.fetch({}, "local", "a") end)
    end)

    it("for a delta with a fraction, 1.5 or '1.5'", function()
        local ok, err = pcall(k.add, k, "local", "c", 1.5)
        assert.is_false(ok)
        assert.is_truthy(err:match("bad argument"))
        assert.is_truthy(err:match("integer"))
        assert.has_error(function() k:sub("local", "c", "1.5") end)
        assert.has_error(function() k:add("local", "c", 0 / 0) end)
        assert.has_error(function() k:add("local", "c", math.huge) end)
        H.fails("KVI_NOT_FOUND", k:fetch("local", "c"))
    end)

    it("for deltas that are not decimal integers", function()
        for _, bad in ipairs({ "", "-", "+", " 5", "5 ", "0x10", "1e3", "abc", "5\0",
                               "9223372036854775808", "-9223372036854775809",
                               "99999999999999999999" }) do
            assert.has_error(function() k:add("local", "c", bad) end, nil, "delta " .. bad)
        end
        assert.has_error(function() k:add("local", "c", {}) end)
        assert.has_error(function() k:add("local", "c") end)
        assert.has_error(function() k:add("local", "c", 1, "soon") end)
        assert.has_error(function() k:store("local", "c", "1", 2.5) end)
        H.fails("KVI_NOT_FOUND", k:fetch("local", "c"))
    end)

    it("for bad bounds and store options", function()
        assert(k:store("local", "c", "5"))
        assert.has_error(function() k:sub("local", "c", 1, nil, { mn = 0 }) end)
        assert.has_error(function() k:sub("local", "c", 1, nil, { min = 1.5 }) end)
        assert.has_error(function() k:sub("local", "c", 1, nil, { min = "zero" }) end)
        assert.has_error(function() k:add("local", "c", 1, nil, { max = {} }) end)
        assert.has_error(function() k:add("local", "c", 1, nil, { 0, 10 }) end)
        assert.has_error(function() k:add("local", "c", 1, nil, 0) end)
        assert.has_error(function() k:store("local", "c", "1", nil, { nx = 1 }) end)
        assert.has_error(function() k:store("local", "c", "1", nil, { NX = true }) end)
        assert.has_error(function() k:store("local", "c", "1", nil, "nx") end)
        local ok, err = pcall(function() return k:sub("local", "c", 1, nil, { mn = 0 }) end)
        assert.is_false(ok)
        assert.is_truthy(err:match("unknown option mn"))
        assert.are.equal("5", k:fetch("local", "c"))
    end)

    it("accepts integer-valued numbers and decimal strings", function()
        assert.are.equal("3", H.int_text(k:add("local", "c", 3.0)))
        assert.are.equal("10", H.int_text(k:add("local", "c", "+7")))
        assert.are.equal("0", H.int_text(k:sub("local", "c", "10", "0")))
        assert(k:store("local", "e", "x", "60"))
        assert.is_true(k:ttl("local", "e") > 0)
    end)

    if H.int64 then
        it("5.4: takes every int64 as an integer and no float beyond", function()
            local v = k:add("local", "m", math.maxinteger)
            assert.are.equal(math.maxinteger, v)
            assert.are.equal("integer", math.type(v))
            assert.are.equal(-1, k:add("local", "m", math.mininteger))
            assert.has_error(function() k:add("local", "m", 2.0 ^ 63) end)
            assert.are.equal(2 ^ 53 - 1, k:add("local", "n", 2.0 ^ 53 - 1))
            assert.are.equal("integer", math.type(k:counter_fetch("local", "n")))
        end)
    else
        it("5.1: takes numbers up to +-2^53, beyond only as decimal strings", function()
            assert.are.equal(2 ^ 53, k:add("local", "m", 2 ^ 53))
            assert.are.equal(0, k:add("local", "m", -2 ^ 53))
            local ok, err = pcall(k.add, k, "local", "m", 2 ^ 53 + 2)
            assert.is_false(ok)
            assert.is_truthy(err:match("decimal string"))
            assert.has_error(function() k:add("local", "m", -2 ^ 53 - 2) end)
            assert.has_error(function() k:add("local", "m", 2 ^ 63) end)
            assert.are.equal("9007199254740994", k:add("local", "m", "9007199254740994"))
        end)
    end
end)

describe("configuration", function()
    local k
    before_each(function()
        k = kvi.new()
    end)
    after_each(function()
        k:close()
    end)

    it("add_url defines an id; a bad URL is KVI_E_BAD_URL naming the part", function()
        assert.are.equal(true, k:add_url("local:sessions://"))
        assert(k:store("local:sessions", "a", "1"))
        H.fails("KVI_NOT_FOUND", k:fetch("local", "a"))
        local msg = H.fails("KVI_E_BAD_URL", k:add_url("redis://127.0.0.1:99999/"))
        assert.is_truthy(msg:match("port"))
        H.fails("KVI_E_BAD_URL", k:add_url("no scheme at all"))
        H.fails("KVI_E_EXISTS", k:add_url("local:sessions://"))
        H.fails("KVI_E_MODULE_MISSING", k:add_url("nosuchengine://host/"))
        H.fails("KVI_E_INVALID", k:add_url("local:x://?nosuchoption=1"))
    end)

    it("never puts a password in a message", function()
        local v, msg, st = k:add_url("redis:pw://:Sup3rS3cret@127.0.0.1:99999/")
        H.fails("KVI_E_BAD_URL", v, msg, st)
        assert.is_nil(msg:find("Sup3rS3cret", 1, true))
        v, msg = k:add_url("nosuch:pw://user:Sup3rS3cret@127.0.0.1/")
        assert.is_nil(v)
        assert.is_nil(msg:find("Sup3rS3cret", 1, true))
    end)

    it("load_config reads URLs; a bad line names the file and line", function()
        local path = tmpname()
        local f = assert(io.open(path, "w"))
        f:write("# ids\n\n  local:one://  \nlocal:two://\n")
        f:close()
        assert.are.equal(true, k:load_config(path))
        assert(k:store("local:one", "a", "1"))
        assert(k:store("local:two", "a", "2"))
        f = assert(io.open(path, "w"))
        f:write("local:three://\nredis://127.0.0.1:0x/\n")
        f:close()
        local msg = H.fails("KVI_E_BAD_URL", k:load_config(path))
        assert.is_truthy(msg:find(path, 1, true))
        assert.is_truthy(msg:find("2", 1, true))
        assert(k:store("local:three", "a", "3"))
        os.remove(path)
        local v, _, st = k:load_config(path)
        assert.is_nil(v)
        assert.are.equal("string", type(st))
        assert.are_not.equal("KVI_OK", st)
    end)

    it("a miss after a failed call has its own message, not the failure's", function()
        H.fails("KVI_E_UNKNOWN_ENGINE", k:fetch("redis:undefined", "a"))
        local msg = H.fails("KVI_NOT_FOUND", k:fetch("local", "a"))
        assert.is_nil(msg:find("undefined", 1, true))
        H.fails("KVI_E_UNKNOWN_ENGINE", k:fetch("redis:undefined", "a"))
        assert(k:store("local", "c", "1"))
        local _, m2 = k:sub("local", "c", 5, nil, { min = 0 })
        assert.is_nil(m2:find("undefined", 1, true))
    end)

    it("stats() gives a table per defined id", function()
        assert(k:add_url("local:s://"))
        assert(k:store("local:s", "a", "1"))
        local all = assert(k:stats())
        assert.are.equal(1, all["local:s"].ops)
        assert.are.equal(1, all["local:s"].entries)
    end)
end)

describe("lifetime", function()
    it("close returns true, is idempotent and makes later use a Lua error", function()
        local k = kvi.new()
        assert(k:store("local", "a", "1"))
        assert.is_false(k:is_closed())
        assert.are.equal(true, k:close())
        assert.are.equal(true, k:close())
        assert.is_true(k:is_closed())
        assert.are.equal("kvi context (closed)", tostring(k))
        local ok, err = pcall(k.fetch, k, "local", "a")
        assert.is_false(ok)
        assert.is_truthy(err:match("used after close"))
        assert.has_error(function() k:store("local", "a", "1") end)
        assert.has_error(function() k:stats() end)
    end)

    it("closing from an option table's __index during a call is a Lua error", function()
        -- Reading an option runs Lua code (a metatable's __index); that code
        -- may close the context the call is using.
        local function closer(k, value)
            return setmetatable({}, {__index = function()
                k:close()
                return value
            end})
        end
        local calls = {
            {"store nx", function(k) return k:store("local", "a", "1", 0, closer(k, true)) end},
            {"add min", function(k) return k:add("local", "c", 1, 0, closer(k, 0)) end},
            {"sub max", function(k) return k:sub("local", "c", 1, 0, closer(k, 9)) end},
        }
        for _, case in ipairs(calls) do
            local k = kvi.new()
            local ok, err = pcall(case[2], k)
            assert.is_false(ok, case[1] .. ": no error")
            assert.is_truthy(tostring(err):match("context used after close%(%)"),
                case[1] .. ": " .. tostring(err))
            assert.is_true(k:is_closed())
        end
    end)

    it("the garbage collector closes a context (its snapshot is written)", function()
        local path = tmpname()
        do
            local k = kvi.new()
            assert(k:add_url("local:snap://?file=" .. path))
            assert(k:store("local:snap", "a", "kept"))
        end
        collectgarbage("collect")
        collectgarbage("collect")
        local k2 = kvi.new()
        assert(k2:add_url("local:snap://?file=" .. path))
        assert.are.equal("kept", k2:fetch("local:snap", "a"))
        k2:close()
        os.remove(path)
    end)

    it("a Lua error in the application leaves no lock behind", function()
        local path = tmpname()
        local k = kvi.new()
        assert(k:add_url("local:snap://?file=" .. path))
        -- The snapshot file is locked against a second writer while k is open.
        local other = kvi.new()
        H.fails("KVI_E_LOCKED", other:add_url("local:snap://?file=" .. path))
        local ok = pcall(function()
            assert(k:store("local:snap", "a", "1"))
            error("application failure")
        end)
        assert.is_false(ok)
        assert.are.equal("1", k:fetch("local:snap", "a"))
        ok = pcall(function() k:add("local:snap", "a", 0.5) end)
        assert.is_false(ok)
        assert.are.equal("1", k:fetch("local:snap", "a"))
        k = nil
        collectgarbage("collect")
        collectgarbage("collect")
        assert(other:add_url("local:snap://?file=" .. path))
        assert.are.equal("1", other:fetch("local:snap", "a"))
        other:close()
        os.remove(path)
    end)

    if _VERSION >= "Lua 5.4" then
        it("5.4: a <close> variable closes the context at the end of its scope", function()
            local f = assert(load([[
                local kvi = ...
                local kept
                do
                    local k <close> = kvi.new()
                    kept = k
                end
                return kept
            ]]))
            assert.is_true(f(kvi):is_closed())
        end)
    end
end)
