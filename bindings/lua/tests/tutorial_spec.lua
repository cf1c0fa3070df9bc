-- tutorial_spec.lua -- the two scripts of the tutorial (examples/), run on
-- the engine under test: the password cache loading from a SQLite
-- subscriber table through LuaSQL on a miss, and the billing route (credit
-- check at INVITE, atomic sub at BYE).
local H = require "helper"
local T = require "kviproc"
local luasql = require "luasql.sqlite3"
local password_cache = require "password_cache"
local billing = require "billing"

describe("tutorial on " .. H.engine .. " under " .. _VERSION, function()
    local k, id

    before_each(function()
        k, id = H.new()
    end)
    after_each(function()
        k:close()
    end)

    describe("password cache", function()
        local env, db, path, users

        before_each(function()
            path = os.tmpname()
            env = assert(luasql.sqlite3())
            db = assert(env:connect(path))
            assert(db:execute("CREATE TABLE subscriber (username TEXT PRIMARY KEY, password TEXT)"))
            users = {}
            for i = 1, 50 do
                -- Unique per run: a shared server keeps other runs' keys.
                users[i] = H.key("user" .. i)
                assert(db:execute(("INSERT INTO subscriber VALUES ('%s', 'pw%d')")
                    :format(users[i], i)))
            end
            users.quote = H.key("o'brien")
            assert(db:execute(("INSERT INTO subscriber VALUES ('%s', 'it''s')")
                :format(db:escape(users.quote))))
        end)
        after_each(function()
            db:close()
            env:close()
            os.remove(path)
        end)

        it("reads the database once per user, then the cache", function()
            local cache = password_cache.new(k, id, db, 7200)
            for i, u in ipairs(users) do
                assert.are.same({ "pw" .. i, "db" }, { cache:password(u) })
            end
            for round = 1, 3 do
                for i, u in ipairs(users) do
                    assert.are.same({ "pw" .. i, "cache" }, { cache:password(u) })
                end
            end
            assert.are.equal(#users, cache.db_queries)
            assert.are.equal(0, cache.cache_errors)
            assert.are.equal("pw7", k:fetch(id, "passwd_" .. users[7]))
        end)

        it("stores the password with its lifetime", function()
            local cache = password_cache.new(k, id, db, 120)
            assert(cache:password(users[1]))
            local ttl = assert(k:ttl(id, "passwd_" .. users[1]))
            assert.is_true(ttl > 0 and ttl <= 120)
        end)

        it("goes back to the database after forget and for expired entries", function()
            local cache = password_cache.new(k, id, db, 1)
            assert.are.same({ "pw2", "db" }, { cache:password(users[2]) })
            assert.are.equal(true, cache:forget(users[2]))
            assert.are.same({ "pw2", "db" }, { cache:password(users[2]) })
            T.sleep(2.2)
            assert.are.same({ "pw2", "db" }, { cache:password(users[2]) })
            assert.are.equal(3, cache.db_queries)
        end)

        it("does not cache unknown users and quotes user names for SQL", function()
            local cache = password_cache.new(k, id, db, 60)
            local nobody = H.key("nobody' OR '1'='1")
            assert.are.same({ nil, "unknown user" }, { cache:password(nobody) })
            H.fails("KVI_NOT_FOUND", k:fetch(id, "passwd_" .. nobody))
            assert.are.same({ "it's", "db" }, { cache:password(users.quote) })
            assert.are.same({ "it's", "cache" }, { cache:password(users.quote) })
        end)

        it("authenticates from the database when the cache is down", function()
            local down = require("kvi").new()
            local ok, msg, st = down:add_url("redis:down://127.0.0.1:" .. H.dead_port
                                             .. "/?connect_timeout=200&lazy=yes")
            if st == "KVI_E_MODULE_MISSING" and os.getenv("KVI_REQUIRE_SERVERS") ~= "1" then
                pending("needs the redis engine module to play a cache that is down: " .. msg)
                return
            end
            assert(ok, msg)
            local cache = password_cache.new(down, "redis:down", db, 60)
            assert.are.same({ "pw3", "db" }, { cache:password(users[3]) })
            assert.is_true(cache.cache_errors >= 1)
            down:close()
        end)
    end)

    describe("billing route", function()
        it("accepts an INVITE while credit > 1 and takes the cost at BYE", function()
            local b = billing.new(k, id, 2)
            local user = H.key("alice")
            assert(b:set_credit(user, 100))
            assert.are.same({ 200, "OK" }, { b:invite(user) })
            assert.are.equal("40", H.int_text(b:bye(user, 30)))
            assert.are.same({ 200, "OK" }, { b:invite(user) })
            assert.are.equal("2", H.int_text(b:bye(user, 19)))
            assert.are.same({ 200, "OK" }, { b:invite(user) })
            assert.are.equal("0", H.int_text(b:bye(user, 1)))
            assert.are.same({ 402, "insufficient credit" }, { b:invite(user) })
            assert.are.equal("0", H.int_text(b:credit(user)))
        end)

        it("rejects users without an account and calls on a broken store", function()
            local b = billing.new(k, id, 1)
            assert.are.same({ 403, "no credit account" }, { b:invite(H.key("nobody")) })
            local user = H.key("garbled")
            assert(k:store(id, "credit_" .. user, "lots"))
            local code = b:invite(user)
            assert.are.equal(500, code)
            H.fails("KVI_E_NOT_A_COUNTER", b:bye(user, 10))
        end)

        local function conditional()
            if k:caps(id).conditional then
                return true
            end
            pending(H.engine .. " lacks KVI_CAP_CONDITIONAL: no reservation route")
            return false
        end

        it("reserves at INVITE, extends while the call lasts, settles at BYE", function()
            if not conditional() then return end
            local b = billing.new(k, id, 2)
            local user = H.key("bob")
            assert(b:set_credit(user, 250))
            local call, code = b:invite_reserve(user, 60)
            assert.are.equal(200, code)
            assert.are.equal("130", H.int_text(b:credit(user)))
            assert.is_true(b:extend(call, 60))
            assert.are.equal("10", H.int_text(b:credit(user)))
            assert.are.same({ false, 402 }, { b:extend(call, 60) })
            assert.are.equal("10", H.int_text(b:credit(user)))
            -- 85 s of the 120 reserved at 2 per second: 70 come back.
            assert.are.equal("80", H.int_text(b:settle(call, 85)))
            local second = b:invite_reserve(user, 40)
            assert.is_truthy(second)
            assert.are.same({ nil, 402 }, { b:invite_reserve(user, 1) })
            assert.are.equal("0", H.int_text(b:settle(second, 40)))
            assert.has_error(function() b:settle(second, 1) end)
            assert.are.same({ nil, 402 }, { b:invite_reserve(H.key("nobody"), 1) })
        end)

        it("never overdraws when calls of one user overlap", function()
            if not conditional() then return end
            local b = billing.new(k, id, 1)
            local user = H.key("carol")
            assert(b:set_credit(user, 50))
            local open = {}
            -- Ten overlapping calls: each reserves 10; five fit.
            for _ = 1, 10 do
                local call = b:invite_reserve(user, 10)
                if call then
                    open[#open + 1] = call
                end
                assert.is_true(tonumber(b:credit(user)) >= 0)
            end
            assert.are.equal(5, #open)
            assert.are.equal("0", H.int_text(b:credit(user)))
            for i, call in ipairs(open) do
                b:settle(call, i)
            end
            assert.are.equal(tostring(50 - (1 + 2 + 3 + 4 + 5)), H.int_text(b:credit(user)))
        end)

        it("processes racing for one user's credit never take it below 0", function()
            if not conditional() then return end
            if not k:caps(id).shared then
                pending("the " .. H.engine .. " store is per process; the race runs on redis and memcached")
                return
            end
            local b = billing.new(k, id, 1)
            local user = H.key("dave")
            assert(b:set_credit(user, 300))
            local pids = {}
            for p = 1, 4 do
                local pid = T.fork()
                if pid == 0 then
                    local calls = 0
                    for _ = 1, 20 do
                        local call = b:invite_reserve(user, 5)
                        if call then
                            calls = calls + 1
                            if not b:settle(call, p) then
                                T.exit(255)
                            end
                        end
                    end
                    T.exit(calls)
                end
                pids[p] = pid
            end
            local charged = 0
            for p, pid in ipairs(pids) do
                local calls = assert(T.wait(pid))
                assert.are_not.equal(255, calls)
                charged = charged + calls * p
            end
            local credit = tonumber(b:credit(user))
            assert.is_true(credit >= 0)
            assert.are.equal(300 - charged, credit)
        end)

        it("loses no debit when several processes bill one user at once", function()
            if not k:caps(id).shared then
                pending("the " .. H.engine .. " store is per process; concurrent billing runs "
                        .. "on redis and memcached")
                return
            end
            local user = H.key("shared")
            local b = billing.new(k, id, 1)
            assert(b:set_credit(user, 100000))
            local pids = {}
            for p = 1, 4 do
                local pid = T.fork()
                if pid == 0 then
                    local ok = true
                    for call = 1, 50 do
                        ok = ok and b:invite(user) == 200 and b:bye(user, p) ~= nil
                    end
                    T.exit(ok and 0 or 1)
                end
                pids[#pids + 1] = pid
            end
            for _, pid in ipairs(pids) do
                assert.are.equal(0, T.wait(pid))
            end
            -- 50 calls each of 1, 2, 3 and 4 seconds at 1 unit per second.
            assert.are.equal(tostring(100000 - 50 * (1 + 2 + 3 + 4)), H.int_text(b:credit(user)))
        end)
    end)
end)
