-- redis_spec.lua -- what only a redis id shows: raw queries as Lua values,
-- connections closed by close() and by the garbage collector, a server
-- that is down, big integers in replies.
local kvi = require "kvi"
local H = require "helper"
local T = require "kviproc"

-- Number of clients connected to the server, as redis counts them.
local function clients(k, id)
    local info = assert(k:raw_query(id, "INFO clients"))
    return tonumber(info:match("connected_clients:(%d+)"))
end

-- The server notices a closed socket asynchronously: waits (up to 5 s)
-- until it counts n clients, and returns its last count.
local function clients_become(k, id, n)
    local c
    for _ = 1, 100 do
        c = clients(k, id)
        if c == n then
            break
        end
        T.sleep(0.05)
    end
    return c
end

describe("redis under " .. _VERSION, function()
    local k, id

    before_each(function()
        k, id = H.new()
    end)
    after_each(function()
        k:close()
    end)

    it("raw_query returns statuses, strings, integers and kvi.null", function()
        local key = H.key()
        assert.are.same({ ok = "OK" }, k:raw_query(id, ('SET %s "a b\\nc"'):format(key)))
        assert.are.equal("a b\nc", k:raw_query(id, "GET " .. key))
        assert.are.equal("a b\nc", k:fetch(id, key))
        assert.are.equal(kvi.null, k:raw_query(id, "GET " .. H.key("missing")))
        local n = k:raw_query(id, "INCRBY " .. H.key() .. " 42")
        assert.are.equal("42", H.int_text(n))
        if kvi.int64 then
            assert.are.equal("integer", math.type(n))
        end
    end)

    it("raw_query returns arrays as tables, nested, with kvi.null and errors in place", function()
        local key = H.key()
        assert.are.equal(3, k:raw_query(id, ("RPUSH %s a b c"):format(key)))
        assert.are.same({ "a", "b", "c" }, k:raw_query(id, ("LRANGE %s 0 -1"):format(key)))
        assert.are.same({}, k:raw_query(id, ("LRANGE %s 0 -1"):format(H.key("empty"))))
        local r = assert(k:raw_query(id,
            [[EVAL "return {1, {2, 'x'}, false, redis.error_reply('bad thing')}" 0]]))
        assert.are.equal("1", H.int_text(r[1]))
        assert.are.equal("2", H.int_text(r[2][1]))
        assert.are.equal("x", r[2][2])
        assert.are.equal(kvi.null, r[3])
        assert.are.same({ err = "bad thing" }, r[4])
    end)

    it("raw_query of big integers keeps every digit", function()
        local key = H.key()
        assert(k:store(id, key, "9223372036854775806"))
        local v = k:raw_query(id, "INCR " .. key)
        assert.are.equal("9223372036854775807", H.int_text(v))
        assert.are.equal(kvi.int64 and "number" or "string", type(v))
    end)

    it("an error reply is nil, message, KVI_E_BACKEND", function()
        local msg = H.fails("KVI_E_BACKEND", k:raw_query(id, "NOSUCHCOMMAND x"))
        assert.is_truthy(msg:lower():match("unknown command"))
        local key = H.key()
        assert(k:raw_query(id, ("RPUSH %s a"):format(key)))
        H.fails("KVI_E_BACKEND", k:raw_query(id, "INCR " .. key))
        H.fails("KVI_E_INVALID", k:raw_query(id, ""))
    end)

    it("batch runs raw queries: their replies as Lua values, error replies as failures", function()
        local key = H.key("braw")
        local res, failed = k:batch({
            { "raw_query", id, ('SET %s "x y"'):format(key) },
            { "raw_query", id, "GET " .. key },
            { "raw_query", id, ("RPUSH %s a b"):format(H.key("blist")) },
            { "raw_query", id, "NOSUCHCOMMAND z" },
            { "cache_raw_query", id, "GET " .. H.key("bmissing") },
        }, 5000)
        assert.are.equal(1, failed)
        assert.are.same({ ok = "OK" }, res[1][1])
        assert.are.equal("x y", res[2][1])
        assert.are.equal(2, res[3][1])
        assert.is_nil(res[4][1])
        assert.is_truthy(res[4][2]:match("unknown command"))
        assert.are.equal("KVI_E_BACKEND", res[4][3])
        assert.are.equal(kvi.null, res[5][1])
        assert.has_error(function() k:batch({ { "raw_query", id, {} } }) end)
    end)

    it("a list in a key is not a counter", function()
        local key = H.key()
        assert(k:raw_query(id, ("RPUSH %s a"):format(key)))
        H.fails("KVI_E_NOT_A_COUNTER", k:add(id, key, 1))
    end)

    it("close() and the garbage collector close the connection", function()
        local before = clients(k, id)
        local other = H.new()
        assert(other:ping(id))
        assert.are.equal(before + 1, clients(k, id))
        other:close()
        assert.are.equal(before, clients_become(k, id, before))
        other = H.new()
        assert(other:ping(id))
        assert.are.equal(before + 1, clients(k, id))
        other = nil
        collectgarbage("collect")
        collectgarbage("collect")
        assert.are.equal(before, clients_become(k, id, before))
    end)

    it("a server that is down is KVI_E_CONNECT within the timeout, never a Lua error", function()
        local down = kvi.new()
        local url = "redis:down://127.0.0.1:" .. H.dead_port .. "/?connect_timeout=200&lazy=yes"
        assert(down:add_url(url))
        H.fails("KVI_E_CONNECT", down:store("redis:down", "a", "1"))
        H.fails("KVI_E_CONNECT", down:ping("redis:down"))
        H.fails("KVI_E_CONNECT", down:fetch("redis:down", "a"))
        down:close()
    end)

    it("a wrong password is KVI_E_AUTH, the right one works, neither is shown", function()
        local function with_password(group, pw)
            return (H.url():gsub("^redis:t://", ("redis:%s://:%s@"):format(group, pw)))
        end
        assert.are.same({ ok = "OK" }, k:raw_query(id, "CONFIG SET requirepass Rig4tPa55"))
        finally(function()
            -- k's connection was authenticated before the password was set.
            k:raw_query(id, 'CONFIG SET requirepass ""')
        end)
        local bad = kvi.new()
        local ok, msg, st = bad:add_url(with_password("bad", "Wr0ngPa55"))
        if ok then
            ok, msg, st = bad:ping("redis:bad")
        end
        H.fails("KVI_E_AUTH", ok, msg, st)
        assert.is_nil(msg:find("Wr0ngPa55", 1, true))
        bad:close()
        local good = kvi.new()
        assert(good:add_url(with_password("good", "Rig4tPa55")))
        assert.are.equal(true, good:ping("redis:good"))
        assert(good:store("redis:good", H.key(), "authenticated"))
        good:close()
        local none = kvi.new()
        ok, msg, st = none:add_url((H.url():gsub("^redis:t://", "redis:none://")))
        if ok then
            ok, msg, st = none:ping("redis:none")
        end
        H.fails("KVI_E_AUTH", ok, msg, st)
        none:close()
    end)

    it("never shows a password in a message", function()
        local other = kvi.new()
        -- This server has no password: AUTH fails, with the server's words.
        local url = H.url():gsub("^redis:t://", "redis:pw://:N0tThePa55@")
        local ok, msg, st = other:add_url(url)
        if ok then
            ok, msg, st = other:ping("redis:pw")
        end
        assert.is_nil(ok)
        assert.are.equal("string", type(st))
        assert.is_nil(msg:find("N0tThePa55", 1, true))
        other:close()
    end)
end)
