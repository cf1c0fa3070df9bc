-- billing.lua -- the tutorial's second use case: distributed billing.  The
-- credit of each user is a counter shared by every proxy (a Redis Cluster
-- id such as "redis:billing").  A new call (INVITE) is rejected when the
-- credit is <= 1; when the call ends (BYE) its cost, duration * cost per
-- second, is taken off with one atomic sub, so no debit of any proxy is
-- ever lost.
--
-- That check is not a reservation: overlapping calls of one user all pass
-- it and the credit goes negative.  The reservation route closes that:
-- at INVITE a bounded sub takes the cost of the first period only if the
-- credit stays >= 0 (402 otherwise), the call reserves the next period
-- before it runs out (and is ended when it cannot), and BYE gives back
-- what was reserved and not used.  The credit never goes below 0.
--
--     local billing = require "billing"
--     local b = billing.new(k, "redis:billing", 2)     -- 2 units per second
--     local code, reason = b:invite("alice")           -- 200, or 402/500
--     local credit = b:bye("alice", 30)                -- credit after the call
--
--     local call, code = b:invite_reserve("alice", 60)  -- reserve 60 s
--     if call and not b:extend(call, 60) then ... end  -- end the call
--     b:settle(call, 75)                                -- 75 s used
local M = {}
M.__index = M

function M.new(k, id, cost_per_s)
    return setmetatable({ k = k, id = id, cost_per_s = cost_per_s or 1 }, M)
end

local function key(user)
    return "credit_" .. user
end

-- Loads a user's credit (top-up).
function M:set_credit(user, credit)
    return self.k:store(self.id, key(user), tostring(credit))
end

function M:credit(user)
    return self.k:counter_fetch(self.id, key(user))
end

-- The INVITE route: SIP code and reason.  No credit record = 403; a store
-- failure = 500 (never let a call through on an unknown credit).
function M:invite(user)
    local credit, err, status = self.k:counter_fetch(self.id, key(user))
    if not credit then
        if status == "KVI_NOT_FOUND" then
            return 403, "no credit account"
        end
        return 500, "billing unavailable: " .. err
    end
    if tonumber(credit) <= 1 then
        return 402, "insufficient credit"
    end
    return 200, "OK"
end

-- The BYE route: takes the call's cost off atomically; the new credit, or
-- nil, message, status.
function M:bye(user, duration_s)
    return self.k:sub(self.id, key(user), duration_s * self.cost_per_s)
end

-- The reservation route.  INVITE: reserves period_s seconds of credit with
-- a bounded sub (floor 0).  Returns the call object, 200 | nil, 402 (the
-- credit does not cover the period, or no account) | nil, 500 (store
-- failure: never let a call through on an unknown credit).
function M:invite_reserve(user, period_s)
    local call = { user = user, reserved = 0 }
    local ok, code = self:extend(call, period_s)
    if not ok then
        return nil, code
    end
    return call, 200
end

-- Reserves another period_s seconds for a running call: true | false, 402
-- when the credit cannot cover it (the proxy ends the call) | false, 500.
function M:extend(call, period_s)
    local amount = period_s * self.cost_per_s
    local v, _, status = self.k:sub(self.id, key(call.user), amount, nil, { min = 0 })
    if v then
        call.reserved = call.reserved + amount
        return true
    end
    return false, status == "KVI_OUT_OF_BOUNDS" and 402 or 500
end

-- BYE: the call lasted duration_s (never more than it reserved: the proxy
-- ends it before that).  Gives back the unused part; the new credit, or
-- nil, message, status.
function M:settle(call, duration_s)
    local cost = duration_s * self.cost_per_s
    assert(cost <= call.reserved, "a call cannot use more than it reserved")
    local unused = call.reserved - cost
    call.reserved = 0
    if unused == 0 then
        return self.k:counter_fetch(self.id, key(call.user))
    end
    return self.k:add(self.id, key(call.user), unused)
end

return M
