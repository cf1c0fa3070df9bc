-- billing.lua -- the tutorial's second use case: distributed billing.  The
-- credit of each user is a counter shared by every proxy (a Redis Cluster
-- id such as "redis:billing").  A new call (INVITE) is rejected when the
-- credit is <= 1; when the call ends (BYE) its cost, duration * cost per
-- second, is taken off with one atomic sub, so no debit of any proxy is
-- ever lost.
--
--     local billing = require "billing"
--     local b = billing.new(k, "redis:billing", 2)     -- 2 units per second
--     local code, reason = b:invite("alice")           -- 200, or 402/500
--     local credit = b:bye("alice", 30)                -- credit after the call
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

return M
