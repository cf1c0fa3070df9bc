-- contract_spec.lua -- every kvi function through Lua on the engine under
-- test (KVI_TEST_ENGINE: local, redis or memcached), with the return
-- conventions: value or true; nil, message, status name otherwise.
local kvi = require "kvi"
local H = require "helper"
local T = require "kviproc"

describe("kvi on " .. H.engine .. " under " .. _VERSION, function()
    local k, id

    before_each(function()
        k, id = H.new()
    end)
    after_each(function()
        k:close()
    end)

    it("runs under the Lua version CTest asked for", function()
        assert.are.equal("Lua " .. H.lua_version, _VERSION)
    end)

    it("store returns true and fetch returns the value", function()
        local key = H.key()
        assert.are.equal(true, k:store(id, key, "v1"))
        assert.are.equal("v1", k:fetch(id, key))
        assert.are.equal(true, k:store(id, key, "v2"))
        assert.are.equal("v2", k:fetch(id, key))
    end)

    it("fetch of a missing key returns nil, message, KVI_NOT_FOUND", function()
        H.fails("KVI_NOT_FOUND", k:fetch(id, H.key("missing")))
    end)

    it("keeps binary values and keys exactly", function()
        local bin = "a\0b\255\254 \r\n\t" .. string.rep("\0", 10) .. "end"
        local key = H.key("bin\0 key\255")
        assert(k:store(id, key, bin))
        assert.are.equal(bin, k:fetch(id, key))
        local all = {}
        for i = 0, 255 do
            all[#all + 1] = string.char(i)
        end
        all = table.concat(all)
        assert(k:store(id, key, all))
        assert.are.equal(all, k:fetch(id, key))
    end)

    it("stores an empty value as an empty string, not a miss", function()
        local key = H.key()
        assert(k:store(id, key, ""))
        assert.are.equal("", k:fetch(id, key))
    end)

    it("stores 1 MiB values and 1024-byte keys; longer keys are KVI_E_INVALID", function()
        local big = string.rep("0123456789abcdef", 65536)
        local key = H.key()
        assert(k:store(id, key, big))
        assert.are.equal(big, k:fetch(id, key))
        local long = H.key() .. string.rep("k", 1024)
        long = long:sub(1, 1024)
        assert(k:store(id, long, "x"))
        assert.are.equal("x", k:fetch(id, long))
        H.fails("KVI_E_INVALID", k:store(id, long .. "k", "x"))
        H.fails("KVI_E_INVALID", k:store(id, "", "x"))
    end)

    it("remove returns true, then nil, message, KVI_NOT_FOUND", function()
        local key = H.key()
        assert(k:store(id, key, "x"))
        assert.are.equal(true, k:remove(id, key))
        H.fails("KVI_NOT_FOUND", k:remove(id, key))
        H.fails("KVI_NOT_FOUND", k:fetch(id, key))
    end)

    it("store with an expiry gives a ttl; without one ttl is -1", function()
        local key = H.key()
        assert(k:store(id, key, "x", 100))
        local ttl = k:ttl(id, key)
        assert.is_true(ttl > 0 and ttl <= 100)
        assert(k:store(id, key, "x"))
        assert.are.equal(-1, k:ttl(id, key))
        H.fails("KVI_NOT_FOUND", k:ttl(id, H.key("missing")))
    end)

    it("expire < 0 is KVI_E_INVALID and writes nothing", function()
        local key = H.key()
        H.fails("KVI_E_INVALID", k:store(id, key, "x", -1))
        H.fails("KVI_NOT_FOUND", k:fetch(id, key))
        H.fails("KVI_E_INVALID", k:add(id, key, 1, -5))
        H.fails("KVI_NOT_FOUND", k:fetch(id, key))
    end)

    it("a key with expire 1 is gone after 2 seconds", function()
        local key = H.key()
        assert(k:store(id, key, "x", 1))
        assert.are.equal("x", k:fetch(id, key))
        T.sleep(2.2)
        H.fails("KVI_NOT_FOUND", k:fetch(id, key))
    end)

    it("add and sub create the counter and return new values", function()
        local key = H.key()
        assert.are.equal("5", H.int_text(k:add(id, key, 5)))
        assert.are.equal("2", H.int_text(k:sub(id, key, 3)))
        assert.are.equal("-8", H.int_text(k:sub(id, key, 10)))
        assert.are.equal("-8", H.int_text(k:counter_fetch(id, key)))
        assert.are.equal("-8", k:fetch(id, key))
        local key2 = H.key()
        assert.are.equal("-4", H.int_text(k:sub(id, key2, 4, 100)))
        local ttl = k:ttl(id, key2)
        assert.is_true(ttl > 0 and ttl <= 100)
    end)

    it("a stored decimal string is a counter", function()
        local key = H.key()
        assert(k:store(id, key, "17"))
        assert.are.equal("18", H.int_text(k:add(id, key, 1)))
    end)

    it("add on a non-integer is KVI_E_NOT_A_COUNTER and changes nothing", function()
        local key = H.key()
        assert(k:store(id, key, "abc"))
        H.fails("KVI_E_NOT_A_COUNTER", k:add(id, key, 1))
        H.fails("KVI_E_NOT_A_COUNTER", k:sub(id, key, 1))
        H.fails("KVI_E_NOT_A_COUNTER", k:counter_fetch(id, key))
        assert.are.equal("abc", k:fetch(id, key))
        H.fails("KVI_NOT_FOUND", k:counter_fetch(id, H.key("missing")))
    end)

    it("counts up to INT64_MAX and refuses to overflow", function()
        local key = H.key()
        assert(k:store(id, key, "9223372036854775806"))
        local v = k:add(id, key, 1)
        assert.are.equal("9223372036854775807", H.int_text(v))
        if H.int64 then
            assert.are.equal(math.maxinteger, v)
        else
            assert.are.equal("string", type(v))
        end
        H.fails("KVI_E_OVERFLOW", k:add(id, key, 1))
        assert.are.equal("9223372036854775807", H.int_text(k:counter_fetch(id, key)))
    end)

    it("counts down to INT64_MIN and refuses to overflow", function()
        local key = H.key()
        assert(k:store(id, key, "-9223372036854775807"))
        local v = k:sub(id, key, 1)
        assert.are.equal("-9223372036854775808", H.int_text(v))
        if H.int64 then
            assert.are.equal(math.mininteger, v)
        end
        H.fails("KVI_E_OVERFLOW", k:sub(id, key, 1))
        assert.are.equal("-9223372036854775808", k:fetch(id, key))
    end)

    it("returns counters within +-2^53 as numbers and beyond as exact text", function()
        local key = H.key()
        assert(k:store(id, key, "9007199254740991"))
        local v = k:add(id, key, 1)
        assert.are.equal("number", type(v))
        assert.are.equal(9007199254740992, v)
        v = k:add(id, key, 1)
        assert.are.equal("9007199254740993", H.int_text(v))
        assert.are.equal(H.int64 and "number" or "string", type(v))
        local neg = H.key()
        assert(k:store(id, neg, "-9007199254740992"))
        v = k:counter_fetch(id, neg)
        assert.are.equal("number", type(v))
        v = k:sub(id, neg, 1)
        assert.are.equal("-9007199254740993", H.int_text(v))
    end)

    it("takes deltas as decimal strings over the whole int64 range", function()
        local key = H.key()
        assert.are.equal("9223372036854775807", H.int_text(k:add(id, key, "9223372036854775807")))
        assert.are.equal("-1", H.int_text(k:add(id, key, "-9223372036854775808")))
        assert.are.equal("9223372036854775806",
            H.int_text(k:sub(id, key, "-9223372036854775807")))
        -- DECRBY's rule: the negation of INT64_MIN does not exist.
        H.fails("KVI_E_INVALID", k:sub(id, key, "-9223372036854775808"))
        assert.are.equal("9223372036854775806", k:fetch(id, key))
    end)

    it("answers every alias of the OpenSIPS script functions", function()
        local key = H.key()
        assert.are.equal(true, k:cache_store(id, key, "10"))
        assert.are.equal("10", k:cache_fetch(id, key))
        assert.are.equal("13", H.int_text(k:cache_add(id, key, 3)))
        assert.are.equal("11", H.int_text(k:cache_sub(id, key, 2)))
        assert.are.equal("11", H.int_text(k:cache_counter_fetch(id, key)))
        assert.are.equal(true, k:cache_remove(id, key))
        H.fails("KVI_NOT_FOUND", k:cache_fetch(id, key))
        local caps = k:caps(id)
        if caps.raw_query then
            assert.are.same({ ok = "PONG" }, k:cache_raw_query(id, "PING"))
        else
            H.fails("KVI_E_UNSUPPORTED", k:cache_raw_query(id, "PING"))
        end
        if caps.iterate then
            assert(k:store(id, key .. "a", "1"))
            assert.are.equal(1, k:cache_remove_chunk(id, key .. "*"))
        else
            H.fails("KVI_E_UNSUPPORTED", k:cache_remove_chunk(id, key .. "*"))
        end
    end)

    it("lists and removes keys by glob where the engine can", function()
        local p = H.key("glob")
        for _, s in ipairs({ "a", "b", "c" }) do
            assert(k:store(id, p .. s, s))
        end
        assert(k:store(id, H.key("other"), "x"))
        if not k:caps(id).iterate then
            H.fails("KVI_E_UNSUPPORTED", k:keys(id, p .. "*"))
            H.fails("KVI_E_UNSUPPORTED", k:remove_chunk(id, p .. "*"))
            return
        end
        local keys = assert(k:keys(id, p .. "*"))
        table.sort(keys)
        assert.are.same({ p .. "a", p .. "b", p .. "c" }, keys)
        assert.are.same({ p .. "b" }, k:keys(id, p .. "[b]"))
        assert.are.same({}, k:keys(id, p .. "zz*"))
        assert.is_true(#assert(k:keys(id)) >= 4)
        H.fails("KVI_E_INVALID", k:remove_chunk(id, ""))
        assert.are.equal(3, k:remove_chunk(id, p .. "*"))
        assert.are.equal(0, k:remove_chunk(id, p .. "*"))
        assert.are.same({}, k:keys(id, p .. "*"))
    end)

    it("ping returns true", function()
        assert.are.equal(true, k:ping(id))
    end)

    it("stats counts the operations of an id", function()
        local key = H.key()
        assert(k:store(id, key, "x"))
        assert(k:fetch(id, key))
        assert(not k:fetch(id, H.key("missing")))
        local s = assert(k:stats(id))
        assert.is_true(s.ops >= 3)
        assert.is_true(s.misses >= 1)
        assert.are.equal(0, s.errors)
        local all = assert(k:stats())
        assert.are.equal(s.ops, all[id].ops)
        H.fails("KVI_E_UNKNOWN_ENGINE", k:stats("nosuch:id"))
        -- A shared collection says its counts are every process's.
        if H.engine == "shm" then
            assert.are.equal(true, s.shared)
            assert.is_true(s.processes >= 1)
        else
            assert.is_nil(s.shared)
        end
    end)

    it("an undefined engine id is nil, message, KVI_E_UNKNOWN_ENGINE", function()
        H.fails("KVI_E_UNKNOWN_ENGINE", k:fetch(H.scheme .. ":undefined", "a"))
        H.fails("KVI_E_UNKNOWN_ENGINE", k:store("redis:undefined", "a", "1"))
        H.fails("KVI_E_UNKNOWN_ENGINE", k:ping("memcached:undefined"))
    end)

    it("a server that never answers is KVI_E_TIMEOUT, within the timeout", function()
        if H.scheme == "local" then
            pending("the local engine has no server to wait for")
            return
        end
        local socket = require "socket"
        -- Connections complete in the listen queue; nothing ever replies.
        local mute = assert(socket.bind("127.0.0.1", 0))
        local _, port = mute:getsockname()
        local slow = kvi.new()
        local sid = H.scheme .. ":slow"
        assert(slow:add_url(("%s://127.0.0.1:%d/?timeout=300&connect_timeout=300&lazy=yes")
            :format(sid, port)))
        local t0 = socket.gettime()
        H.fails("KVI_E_TIMEOUT", slow:ping(sid))
        H.fails("KVI_E_TIMEOUT", slow:fetch(sid, "a"))
        -- Two calls of 300 ms: far below this bound even on a loaded machine.
        assert.is_true(socket.gettime() - t0 < 10)
        slow:close()
        mute:close()
    end)

    it("defining the same id twice is KVI_E_EXISTS", function()
        H.fails("KVI_E_EXISTS", k:add_url(H.url()))
    end)

    it("reports its capabilities", function()
        local caps = assert(k:caps(id))
        assert.is_true(caps.ttl)
        assert.is_true(caps.counters)
        assert.is_true(caps.binary)
        H.fails("KVI_E_UNKNOWN_ENGINE", k:caps("nosuch:id"))
    end)

    -- Bounded add/sub and store-if-absent: on an engine without
    -- KVI_CAP_CONDITIONAL the calls must say KVI_E_UNSUPPORTED, and the
    -- rows are reported as pending (loudly), not passed.
    local function conditional()
        if k:caps(id).conditional then
            return true
        end
        H.fails("KVI_E_UNSUPPORTED", k:sub(id, H.key(), 1, nil, { min = 0 }))
        H.fails("KVI_E_UNSUPPORTED", k:store(id, H.key(), "x", nil, { nx = true }))
        pending(H.engine .. " lacks KVI_CAP_CONDITIONAL (bounded add/sub, store if absent)")
        return false
    end

    it("a bounded sub applies only within [min, max]", function()
        if not conditional() then return end
        local key = H.key()
        assert(k:store(id, key, "2"))
        local v, msg, st, current = k:sub(id, key, 3, nil, { min = 0 })
        H.fails("KVI_OUT_OF_BOUNDS", v, msg, st)
        assert.are.equal("2", H.int_text(current))
        assert.are.equal("2", k:fetch(id, key))
        assert.are.equal("0", H.int_text(k:sub(id, key, 2, nil, { min = 0 })))
        assert.are.equal("10", H.int_text(k:add(id, key, 10, nil, { max = 10 })))
        v, msg, st, current = k:add(id, key, 1, nil, { min = 0, max = 10 })
        H.fails("KVI_OUT_OF_BOUNDS", v, msg, st)
        assert.are.equal("10", H.int_text(current))
        assert.are.equal("-5", H.int_text(k:sub(id, key, 15, nil, {})))
        assert.are.equal("-5", H.int_text(k:cache_counter_fetch(id, key)))
        v, msg, st, current = k:cache_sub(id, key, 1, nil, { min = -5 })
        H.fails("KVI_OUT_OF_BOUNDS", v, msg, st)
        assert.are.equal("-5", H.int_text(current))
        assert.are.equal("-4", H.int_text(k:cache_add(id, key, 1, nil, { min = -5, max = -4 })))
    end)

    it("a bounded sub creates a missing counter only within the bounds", function()
        if not conditional() then return end
        local key = H.key()
        local v, msg, st, current = k:sub(id, key, 5, 100, { min = 0 })
        H.fails("KVI_OUT_OF_BOUNDS", v, msg, st)
        assert.are.equal("0", H.int_text(current))
        H.fails("KVI_NOT_FOUND", k:fetch(id, key))
        assert.are.equal("-5", H.int_text(k:sub(id, key, 5, 100, { min = -5 })))
        local ttl = k:ttl(id, key)
        assert.is_true(ttl > 0 and ttl <= 100)
    end)

    it("bounds take the whole int64 range; overflow, non-counters and min > max stay errors", function()
        if not conditional() then return end
        local key = H.key()
        local lo, hi = "-9223372036854775808", "9223372036854775807"
        assert(k:store(id, key, "9223372036854775806"))
        assert.are.equal(hi, H.int_text(k:add(id, key, 1, nil, { min = lo, max = hi })))
        H.fails("KVI_E_OVERFLOW", k:add(id, key, 1, nil, { min = lo, max = hi }))
        assert.are.equal(hi, k:fetch(id, key))
        assert(k:store(id, key, "abc"))
        H.fails("KVI_E_NOT_A_COUNTER", k:sub(id, key, 1, nil, { min = 0 }))
        assert.are.equal("abc", k:fetch(id, key))
        assert(k:store(id, key, "1"))
        H.fails("KVI_E_INVALID", k:add(id, key, 1, nil, { min = 5, max = 1 }))
        H.fails("KVI_E_INVALID", k:sub(id, key, lo, nil, { min = 0 }))
        assert.are.equal("1", k:fetch(id, key))
    end)

    it("store with nx writes only an absent key, with its expiry", function()
        if not conditional() then return end
        local key = H.key()
        assert.are.equal(true, k:store(id, key, "first", 100, { nx = true }))
        local ttl = k:ttl(id, key)
        assert.is_true(ttl > 0 and ttl <= 100)
        H.fails("KVI_KEY_EXISTS", k:store(id, key, "second", 0, { nx = true }))
        H.fails("KVI_KEY_EXISTS", k:cache_store(id, key, "third", nil, { nx = true }))
        assert.are.equal("first", k:fetch(id, key))
        assert.are.equal(true, k:store(id, key, "plain", nil, { nx = false }))
        assert.are.equal("plain", k:fetch(id, key))
        local short = H.key()
        assert(k:store(id, short, "old", 1, { nx = true }))
        T.sleep(2.2)
        assert.are.equal(true, k:store(id, short, "new", 0, { nx = true }))
        assert.are.equal("new", k:fetch(id, short))
    end)

    it("racing processes: bounded subs never cross min, exactly one nx wins", function()
        if not conditional() then return end
        if not k:caps(id).shared then
            pending("the " .. H.engine .. " store is per process; the races run on redis and memcached")
            return
        end
        local credit, lock = H.key("credit"), H.key("lock")
        assert(k:store(id, credit, "100"))
        local pids = {}
        for p = 1, 4 do
            local pid = T.fork()
            if pid == 0 then
                local wins, bad = 0, false
                for _ = 1, 40 do
                    local v, _, st = k:sub(id, credit, 1, nil, { min = 0 })
                    if v then
                        wins = wins + 1
                        bad = bad or tonumber(v) < 0
                    elseif st ~= "KVI_OUT_OF_BOUNDS" then
                        bad = true
                    end
                end
                local nx = k:store(id, lock, tostring(p), 60, { nx = true })
                -- exit status: wins (0..40), +64 when this one won the lock, 255 on error
                T.exit(bad and 255 or wins + (nx and 64 or 0))
            end
            pids[#pids + 1] = pid
        end
        local wins, locks = 0, 0
        for _, pid in ipairs(pids) do
            local code = assert(T.wait(pid))
            assert.are_not.equal(255, code)
            if code >= 64 then
                locks = locks + 1
                code = code - 64
            end
            wins = wins + code
        end
        assert.are.equal(100, wins)
        assert.are.equal(1, locks)
        assert.are.equal("0", k:fetch(id, credit))
    end)

    it("a forked child uses and closes the parent's context; the parent's still works", function()
        local key = H.key()
        assert(k:store(id, key, "parent"))
        local pid = T.fork()
        if pid == 0 then
            -- The child: every failure is its exit status, read below.
            local ok = k:fetch(id, key) == "parent" and k:store(id, key .. "c", "child")
                and k:add(id, key .. "n", 1) ~= nil
            -- Closing the child's copy must not close the parent's connections.
            k:close()
            T.exit(ok and 0 or 1)
        end
        assert.are.equal(0, T.wait(pid))
        assert.are.equal("parent", k:fetch(id, key))
        if k:caps(id).shared then
            assert.are.equal("child", k:fetch(id, key .. "c"))
            assert.are.equal("2", H.int_text(k:add(id, key .. "n", 1)))
        end
    end)
    it("batch runs every kind of operation and returns one result per operation, in order", function()
        local a, n, t, none = H.key("a"), H.key("n"), H.key("t"), H.key("none")
        assert(k:store(id, t, "text"))
        local ops = {
            { "store", id, a, "apple" },
            { "fetch", id, a },
            { "cache_fetch", id, none },
            { "add", id, n, 5 },
            { "sub", id, n, 2 },
            { "counter_fetch", id, n },
            { "add", id, t, 1 },
            { "sub", id, n, 10, 0, { min = 0 } },
            { "add", id, n, 1, nil, { max = 100 } },
            { "store", id, a, "other", 0, { nx = true } },
            { "remove", id, a },
            { "remove", id, a },
            { "fetch", id, "" },
        }
        local res, failed = k:batch(ops, 5000)
        assert.are.equal(#ops, #res)
        assert.are.equal(2, failed)
        assert.are.same({ true }, res[1])
        assert.are.equal("apple", res[2][1])
        H.fails("KVI_NOT_FOUND", res[3][1], res[3][2], res[3][3])
        assert.are.equal("5", H.int_text(res[4][1]))
        assert.are.equal("3", H.int_text(res[5][1]))
        assert.are.equal("3", H.int_text(res[6][1]))
        H.fails("KVI_E_NOT_A_COUNTER", res[7][1], res[7][2], res[7][3])
        H.fails("KVI_OUT_OF_BOUNDS", res[8][1], res[8][2], res[8][3])
        assert.are.equal("3", H.int_text(res[8][4]))
        assert.are.equal("4", H.int_text(res[9][1]))
        H.fails("KVI_KEY_EXISTS", res[10][1], res[10][2], res[10][3])
        assert.are.same({ true }, res[11])
        H.fails("KVI_NOT_FOUND", res[12][1], res[12][2], res[12][3])
        H.fails("KVI_E_INVALID", res[13][1], res[13][2], res[13][3])
        H.fails("KVI_NOT_FOUND", k:fetch(id, a))
        assert.are.equal("4", H.int_text(k:counter_fetch(id, n)))
        assert.are.same({}, (k:batch({})))
    end)

    it("batch raises a Lua error for a malformed operation and keeps the context usable", function()
        assert.has_error(function() k:batch({ { "nosuch", id, "a" } }) end)
        assert.has_error(function() k:batch({ { "fetch", id } }) end)
        assert.has_error(function() k:batch({ "fetch" }) end)
        assert.has_error(function() k:batch({ { "add", id, "a", 1.5 } }) end)
        assert.has_error(function() k:batch({ { "store", id, "a", "v", 0, { nx = 1 } } }) end)
        assert.has_error(function() k:batch({}, -1) end)
        assert.has_error(function() k:batch("x") end)
        local key = H.key()
        local res = k:batch({ { "store", id, key, "ok" }, { "fetch", id, key } })
        assert.are.equal("ok", res[2][1])
    end)
end)
