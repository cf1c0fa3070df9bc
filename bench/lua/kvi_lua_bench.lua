-- kvi_lua_bench.lua -- what a kvi call costs a Lua script, against the
-- baselines a script writer would compare it with, measured in one run:
--   table     a plain Lua table (t[k] = v; v = t[k]): the floor
--   method call  k:is_closed(), a method of the module that does nothing:
--             the cost of calling into C at all
--   kvi       k:store / k:fetch / k:add / k:counter_fetch on the embedded
--             local engine through the module (id "local")
--   kvi-shm   the same on a shared-memory local collection (pre-fork
--             servers), when the engine has it
-- Each figure is the median of ROUNDS interleaved rounds of OPS calls over
-- KEYS keys, in process CPU time (os.clock), so other load on the machine
-- moves it less than wall time would.  Prints ns/op and the ratio to the
-- table baseline.
--
--   LUA_CPATH='build/bindings/lua/5.4/?.so' lua5.4 bench/lua/kvi_lua_bench.lua [--quick]
local kvi = require "kvi"

local quick = arg and arg[1] == "--quick"
local KEYS = quick and 1000 or 10000
local OPS = quick and 20000 or 200000
local ROUNDS = quick and 1 or 7

local keys, vals, ckeys = {}, {}, {}
for i = 1, KEYS do
    keys[i] = "passwd_user" .. i
    ckeys[i] = "credit_user" .. i
    vals[i] = ("%032x"):format(i * 2654435761 % 4294967296)
end

local function median(t)
    table.sort(t)
    return t[math.floor((#t + 1) / 2)]
end

-- Every case: name, set-up function, run function (does OPS calls).
local cases = {}
local function case(name, setup, run)
    cases[#cases + 1] = { name = name, setup = setup, run = run, times = {} }
end

local t = {}
case("table set", function() end, function()
    for i = 1, OPS do
        local j = i % KEYS + 1
        t[keys[j]] = vals[j]
    end
end)
case("table get", function() end, function()
    local n = 0
    for i = 1, OPS do
        if t[keys[i % KEYS + 1]] then n = n + 1 end
    end
    assert(n == OPS)
end)

local function kvi_cases(label, k, id)
    case(label .. " method call", function() end, function()
        for _ = 1, OPS do
            if k:is_closed() then error("closed") end
        end
    end)
    case(label .. " store", function() end, function()
        for i = 1, OPS do
            local j = i % KEYS + 1
            if not k:store(id, keys[j], vals[j]) then error("store failed") end
        end
    end)
    case(label .. " fetch", function() end, function()
        for i = 1, OPS do
            if not k:fetch(id, keys[i % KEYS + 1]) then error("fetch failed") end
        end
    end)
    case(label .. " add", function() end, function()
        for i = 1, OPS do
            if not k:add(id, ckeys[i % KEYS + 1], 1) then error("add failed") end
        end
    end)
    case(label .. " fetch miss", function() end, function()
        for i = 1, OPS do
            if k:fetch(id, "missing") then error("hit") end
        end
    end)
end

local k = assert(kvi.new())
kvi_cases("kvi", k, "local")
local shm_name = ("kvi-lua-bench-%d"):format(os.time() % 100000)
local ks = assert(kvi.new())
local shm_ok, shm_err = ks:add_url("local:shm://?shm=" .. shm_name .. "&shm_unlink=yes&max_memory=64m")
if shm_ok then
    kvi_cases("kvi-shm", ks, "local:shm")
else
    print("kvi-shm left out: " .. tostring(shm_err))
end

-- Warm-up (fills the stores, so fetches hit), then interleaved rounds.
for _, c in ipairs(cases) do
    c.run()
end
for _ = 1, ROUNDS do
    for _, c in ipairs(cases) do
        local t0 = os.clock()
        c.run()
        c.times[#c.times + 1] = (os.clock() - t0) / OPS * 1e9
    end
end

print(("%s, kvi %s, %d keys, %d ops x %d rounds (median ns/op, CPU time)")
    :format(_VERSION, kvi.version, KEYS, OPS, ROUNDS))
local base = { set = median(cases[1].times), get = median(cases[2].times) }
print(("%-20s %10s %10s"):format("case", "ns/op", "x table"))
for _, c in ipairs(cases) do
    local ns = median(c.times)
    local ref = c.name:match("store$") and base.set or c.name:match("set$") and base.set or base.get
    print(("%-20s %10.1f %10.1f"):format(c.name, ns, ns / ref))
end
ks:close()
k:close()
