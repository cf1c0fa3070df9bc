-- password_cache.lua -- the tutorial's first use case: password caching
-- for database authentication.  The password of user U is looked up in
-- the cache under "passwd_U"; on a miss it is read from the SQL subscriber
-- table and stored in the cache with a lifetime, so the database sees one
-- query per user and lifetime instead of one per request.
--
--     local kvi = require "kvi"
--     local luasql = require "luasql.sqlite3"
--     local pc = require "password_cache"
--     local k = kvi.new()
--     local db = luasql.sqlite3():connect("/var/lib/kamailio/subscriber.db")
--     local cache = pc.new(k, "local", db, 7200)
--     local password, source = cache:password("alice")  -- "db", then "cache"
local M = {}
M.__index = M

-- cache = pc.new(k, engine_id, luasql_connection, lifetime_s)
function M.new(k, id, db, lifetime_s)
    return setmetatable({ k = k, id = id, db = db, lifetime_s = lifetime_s or 7200,
                          db_queries = 0, cache_errors = 0 }, M)
end

-- Reads the password from the subscriber table: password or nil.
function M:from_db(user)
    self.db_queries = self.db_queries + 1
    local cur = assert(self.db:execute(("SELECT password FROM subscriber WHERE username = '%s'")
        :format(self.db:escape(user))))
    local row = cur:fetch({}, "n")
    cur:close()
    return row and row[1]
end

-- password, source ("cache" or "db") | nil, "unknown user".  A cache that
-- fails (server down) does not stop authentication: the database answers.
function M:password(user)
    local key = "passwd_" .. user
    local pw, err, status = self.k:fetch(self.id, key)
    if pw then
        return pw, "cache"
    end
    if status ~= "KVI_NOT_FOUND" then
        self.cache_errors = self.cache_errors + 1
    end
    pw = self:from_db(user)
    if not pw then
        return nil, "unknown user"
    end
    if not self.k:store(self.id, key, pw, self.lifetime_s) then
        self.cache_errors = self.cache_errors + 1
    end
    return pw, "db"
end

-- Drops a cached password (after the user changed it).
function M:forget(user)
    return self.k:remove(self.id, "passwd_" .. user)
end

return M
