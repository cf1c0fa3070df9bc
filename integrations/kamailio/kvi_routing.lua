-- kvi_routing.lua -- Kamailio 5.6 KEMI routing script for the two kvi use
-- cases (see docs/kamailio.md):
--
--   * password caching for digest authentication of REGISTER: fetch
--     passwd_<user> from kvi; on a hit check the credentials against it
--     (pv_auth_check); on a miss check them against the subscriber table
--     (auth_db) and store the password the check loaded with a lifetime;
--     challenge on every failure;
--   * prepaid billing of INVITE: reserve the credit for the longest call with
--     kvi's bounded sub (never below 0; 403 when refused), let the dialog
--     module track the call and settle on its end: charge every started
--     second of the answered call, give back the rest of the reservation.
--
-- Fails open: a cache that cannot be defined (redis down at start with a
-- non-lazy URL, a shared segment that does not match the URL or belongs to
-- another user), used or reached is logged -- once per KVI_SIP_RETRY_S
-- seconds per process and kind of failure, with the number of repeats --
-- and the database answers meanwhile; a definition that failed is tried
-- again every KVI_SIP_RETRY_S seconds.  Billing never gives a free call:
-- no credit store = 503.  A settlement (refund) the credit store could not
-- take is kept in the journal (KVI_SIP_JOURNAL, a shared local collection)
-- and replayed by the rtimer process every KVI_SIP_RETRY_S seconds.
--
-- Settings (environment of the Kamailio process):
--   KVI_SIP_CACHE       kvi (default) | htable (Kamailio's native cache) | none
--   KVI_SIP_ENGINE      kvi engine id of the password cache (default "local")
--   KVI_SIP_URLS        kvi URLs, separated by spaces, e.g.
--                       "local://?shm=kvi-auth&max_memory=16m redis:billing://..."
--   KVI_SIP_LIFETIME    seconds a cached password lives (default 7200)
--   KVI_SIP_REALM       digest realm (default "kvi.test")
--   KVI_SIP_DB_TABLE    the subscriber table (default "subscriber")
--   KVI_SIP_BILLING     kvi engine id of the credits; unset = INVITEs are not billed
--   KVI_SIP_JOURNAL     kvi engine id of the settlement journal (e.g.
--                       "local:journal", defined in KVI_SIP_URLS); unset =
--                       a refund that fails is only logged (kvi-bill-lost)
--   KVI_SIP_COST_PER_S  credit units per started call second (default 1)
--   KVI_SIP_RETRY_S     seconds between retries and between two log lines of
--                       one kind of cache failure, per process (default 10)
--   KVI_KAM_MAX_CALL_S  longest call (s): the reservation, and the dialog timeout
-- The kvi Lua module is found on package.cpath (LUA_CPATH).

local MODE = os.getenv("KVI_SIP_CACHE") or "kvi"
local ENGINE = os.getenv("KVI_SIP_ENGINE") or "local"
local URLS = os.getenv("KVI_SIP_URLS") or ""
local LIFETIME = tonumber(os.getenv("KVI_SIP_LIFETIME") or "7200")
local REALM = os.getenv("KVI_SIP_REALM") or "kvi.test"
local DB_TABLE = os.getenv("KVI_SIP_DB_TABLE") or "subscriber"
local BILLING = os.getenv("KVI_SIP_BILLING")
local JOURNAL = os.getenv("KVI_SIP_JOURNAL")
local COST = tonumber(os.getenv("KVI_SIP_COST_PER_S") or "1")
local RETRY_S = tonumber(os.getenv("KVI_SIP_RETRY_S") or "10")
local MAX_CALL_S = tonumber(os.getenv("KVI_KAM_MAX_CALL_S") or "60")

if MODE ~= "kvi" and MODE ~= "htable" and MODE ~= "none" then
    error("KVI_SIP_CACHE must be kvi, htable or none, not " .. MODE)
end
if LIFETIME == nil or COST == nil or RETRY_S == nil or RETRY_S < 1 or MAX_CALL_S == nil then
    error("KVI_SIP_LIFETIME, KVI_SIP_COST_PER_S, KVI_SIP_RETRY_S (>= 1) and KVI_KAM_MAX_CALL_S must be numbers")
end

-- The native modes need no kvi; when kvi is used, a missing module stops
-- Kamailio at start-up, not at the first request.
local kvi = (MODE == "kvi" or BILLING ~= nil) and require "kvi" or nil

-- The engine id each URL defines ("scheme" or "scheme:group"); a URL that
-- is not one is a configuration error, found at start-up.  (The message
-- names the position only: a URL may hold a password.)
local URL_LIST = {}
do
    local i = 0
    for url in URLS:gmatch("%S+") do
        i = i + 1
        local scheme, group = url:match("^([^:/?]+):?([^:/?]*)://")
        if scheme == nil then
            error("KVI_SIP_URLS: word " .. i .. " is not a kvi URL (scheme[:group]://...)")
        end
        URL_LIST[#URL_LIST + 1] = {id = group ~= "" and scheme .. ":" .. group or scheme, url = url}
    end
end

---------------------------------------------------------------- failures, logged once per interval

-- One line per kind of failure (WHAT) and process every RETRY_S seconds at
-- most; the repeats in between are counted and told with the next line.
local last_log = {}
local function log_limited(what, msg)
    local now = os.time()
    local e = last_log[what]
    if e == nil or now - e.t >= RETRY_S then
        local more = ""
        if e ~= nil and e.n > 0 then
            more = string.format(" (and %d more like it in %d s)", e.n, now - e.t)
        end
        KSR.err("kvi: " .. msg .. more .. "\n")
        last_log[what] = {t = now, n = 0}
    else
        e.n = e.n + 1
    end
end

---------------------------------------------------------------- the kvi context

-- One kvi context per Kamailio process, made on first use in that process.
-- app_lua loads this script in the main process at start-up and again in
-- every child after the fork, each in its own Lua state, so no context
-- crosses a fork here (docs/lua.md); made on first use, none is opened in
-- the main process, which handles no requests.  An engine id is
-- usable once its URL was added; ids that no URL names ("local") are kvi's
-- own.  A URL that could not be added stays pending and is tried again
-- every RETRY_S seconds; meanwhile ctx_for() returns nil: the caller falls
-- back (database) or refuses (503).  "local" is never used in place of a
-- shared collection that failed (kvi would define it per process).
local ctx
local usable = {}     -- engine id -> true once usable in this process
local pending = nil   -- URLs not added yet (nil = none tried yet)
local next_try = 0

local function define()
    local now = os.time()
    if now < next_try then
        return
    end
    next_try = now + RETRY_S
    if ctx == nil then
        local k, err, st = kvi.new()
        if k == nil then
            log_limited("new", "cannot make a context (" .. tostring(st) .. "): " .. tostring(err))
            return
        end
        ctx = k
        pending = URL_LIST
    end
    local left = {}
    for _, u in ipairs(pending) do
        local ok, err, st = ctx:add_url(u.url)
        if ok or st == "KVI_E_EXISTS" then
            usable[u.id] = true
            if last_log["define " .. u.id] ~= nil then
                KSR.notice("kvi: " .. u.id .. " defined now\n")
                last_log["define " .. u.id] = nil
            end
        else
            left[#left + 1] = u
            log_limited("define " .. u.id, "cannot define " .. u.id .. " (" .. tostring(st) .. "): " ..
                        tostring(err) .. "; retried every " .. RETRY_S .. " s, the database answers meanwhile")
        end
    end
    pending = left
end

local named = {}
for _, u in ipairs(URL_LIST) do
    named[u.id] = true
end

-- The context if engine id ID can be used now, else nil (failure logged).
local function ctx_for(id)
    if usable[id] then
        return ctx
    end
    define()
    if ctx ~= nil and not named[id] then
        usable[id] = true
    end
    if usable[id] then
        return ctx
    end
    return nil
end

---------------------------------------------------------------- password cache

local function challenge()
    KSR.auth.auth_challenge(REALM, 1) -- 401 with qop=auth
end

-- Digest check against the subscriber table.  Returns auth_db's code and,
-- on success, the plain password it loaded (load_credentials).
local function db_check()
    local rc = KSR.auth_db.auth_check(REALM, DB_TABLE, 1)
    if rc == 1 then
        return rc, KSR.pv.get("$avp(kvi_pw)")
    end
    return rc, nil
end

local function cached_password(user)
    if MODE == "kvi" then
        local k = ctx_for(ENGINE)
        if k == nil then
            return nil -- not defined (logged): the database answers
        end
        local pw, err, st = k:fetch(ENGINE, "passwd_" .. user)
        if pw == nil and st ~= "KVI_NOT_FOUND" then
            log_limited("fetch " .. ENGINE, "fetch from " .. ENGINE .. " failed (" .. tostring(st) .. "): " ..
                        tostring(err) .. "; the database answers meanwhile")
        end
        return pw
    elseif MODE == "htable" then
        return KSR.htable.sht_get("auth", user)
    end
    return nil
end

local function cache_password(user, pw)
    if MODE == "kvi" then
        local k = ctx_for(ENGINE)
        if k == nil then
            return
        end
        local ok, err, st = k:store(ENGINE, "passwd_" .. user, pw, LIFETIME)
        if not ok then
            log_limited("store " .. ENGINE, "store to " .. ENGINE .. " failed (" .. tostring(st) .. "): " .. tostring(err))
        end
    elseif MODE == "htable" then
        KSR.htable.sht_sets("auth", user, pw) -- lifetime: the table's autoexpire
    end
end

-- A REGISTER with credentials, in its transaction (the challenge before it
-- was sent statelessly by ksr_request_route).
local function register()
    local user = KSR.pv.get("$au")
    local pw = cached_password(user)
    if pw ~= nil then
        if KSR.auth.pv_auth_check(REALM, pw, 0, 1) ~= 1 then
            challenge()
            return
        end
    else
        local rc
        rc, pw = db_check()
        if rc ~= 1 then
            challenge()
            return
        end
        cache_password(user, pw)
    end
    KSR.auth.consume_credentials()
    if KSR.registrar.save("location", 0) < 0 then
        KSR.sl.send_reply(500, "Server Error")
    end
end

---------------------------------------------------------------- prepaid billing

local function credit_key(user)
    return "credit_" .. user
end

-- Puts a settlement the credit store did not take into the journal
-- (refund_<call-id> = "<user> <amount>"); a journal that cannot take it
-- either is logged as lost, with what an operator needs to settle by hand.
local function journal_refund(user, callid, amount)
    local j = JOURNAL and ctx_for(JOURNAL)
    if j ~= nil then
        local ok, err, st = j:store(JOURNAL, "refund_" .. callid, user .. " " .. amount)
        if ok then
            KSR.notice("kvi-bill journaled user=" .. user .. " callid=" .. callid .. " refund=" .. amount .. "\n")
            return
        end
        KSR.crit("kvi-bill journal " .. JOURNAL .. " failed (" .. tostring(st) .. "): " .. tostring(err) .. "\n")
    end
    KSR.crit("kvi-bill-lost user=" .. user .. " callid=" .. callid .. " refund=" .. amount ..
             " (not applied, not journaled: give it back by hand)\n")
end

-- Replays the journal (rtimer, every second; does the work every RETRY_S
-- seconds).  Each entry is claimed by removing it, so that of several
-- processes exactly one applies it; one the credit store refuses again is
-- put back.  An add that timed out may have been applied: it is put back
-- and logged (a refund given twice rather than lost).
local next_replay = 0
local function replay_journal()
    local now = os.time()
    if now < next_replay then
        return
    end
    next_replay = now + RETRY_S
    local j = ctx_for(JOURNAL)
    local b = ctx_for(BILLING)
    if j == nil or b == nil then
        return
    end
    local keys, err, st = j:keys(JOURNAL, "refund_*")
    if keys == nil then
        log_limited("journal", "cannot list the journal " .. JOURNAL .. " (" .. tostring(st) .. "): " .. tostring(err))
        return
    end
    for _, key in ipairs(keys) do
        local v = j:fetch(JOURNAL, key)
        local user, amount = (v or ""):match("^(%S+) (%d+)$")
        if user ~= nil and j:remove(JOURNAL, key) then
            local left, aerr, ast = b:add(BILLING, credit_key(user), tonumber(amount))
            if left == nil then
                j:store(JOURNAL, key, v)
                log_limited("billing", "replay of " .. key .. " failed (" .. tostring(ast) .. "): " ..
                            tostring(aerr) .. "; kept in the journal")
                if ast == "KVI_E_TIMEOUT" then
                    KSR.crit("kvi-bill replay timed out, may have been applied: " .. key .. "\n")
                end
                return
            end
            KSR.notice("kvi-bill replayed user=" .. user .. " callid=" .. key:sub(8) .. " refund=" .. amount ..
                       " left=" .. tostring(left) .. "\n")
        elseif user == nil and v ~= nil then
            log_limited("journal-bad", "journal entry " .. key .. " is not '<user> <amount>': left alone")
        end
    end
end

-- rtimer (kamailio.cfg): the journal replay.
function ksr_kvi_timer()
    if BILLING ~= nil and JOURNAL ~= nil then
        replay_journal()
    end
end

local function invite()
    if BILLING == nil then
        KSR.rr.record_route()
        if KSR.tm.t_relay() < 0 then
            KSR.sl.send_reply(500, "Relay failed")
        end
        return
    end
    local user = KSR.pv.get("$fU")
    local reserve = MAX_CALL_S * COST
    local b = ctx_for(BILLING)
    if b == nil then
        KSR.sl.send_reply(503, "Billing unavailable") -- never a free call
        return
    end
    -- The bounded sub: applied only if the credit stays >= 0, atomically
    -- (one round trip on redis and Redis Cluster), so concurrent calls of
    -- one user on any proxy never spend more than there is.
    local left, err, st, current = b:sub(BILLING, credit_key(user), reserve, 0, {min = 0})
    if left == nil then
        if st == "KVI_OUT_OF_BOUNDS" then
            KSR.notice("kvi-bill refused user=" .. user .. " credit=" .. tostring(current) .. "\n")
            KSR.sl.send_reply(403, "Insufficient credit")
        else
            log_limited("billing", "reserve on " .. BILLING .. " failed (" .. tostring(st) .. "): " .. tostring(err) ..
                        "; INVITEs get 503 meanwhile")
            if st == "KVI_E_TIMEOUT" then
                -- The sub may have been applied: say so, for reconciliation.
                KSR.crit("kvi-bill reserve timed out, may have been applied: user=" .. user .. " amount=" ..
                         reserve .. " callid=" .. tostring(KSR.pv.get("$ci")) .. "\n")
            end
            KSR.sl.send_reply(503, "Billing unavailable")
        end
        return
    end
    KSR.notice("kvi-bill reserved user=" .. user .. " amount=" .. reserve .. " left=" .. tostring(left) .. "\n")
    KSR.dialog.dlg_manage()
    KSR.pv.sets("$dlg_var(kvi_user)", user)
    KSR.pv.sets("$dlg_var(kvi_rsv)", tostring(reserve))
    KSR.dialog.dlg_set_timeout(MAX_CALL_S)
    KSR.rr.record_route()
    if KSR.tm.t_relay() < 0 then
        -- The transaction ends with this 500: dialog:failed gives the
        -- reservation back.
        KSR.sl.send_reply(500, "Relay failed")
    end
end

-- Seconds since the epoch with microseconds ($TV(Sn) = "sec.usec").
local function now_s()
    return tonumber(KSR.pv.get("$TV(Sn)")) or os.time()
end

-- Dialog events (modparam dialog event_callback).  dialog:start (the call
-- is answered) notes the answer time to the microsecond; dialog:end comes
-- once per answered call (BYE or timeout), dialog:failed once per call that
-- was never answered.  The rounding rule: every STARTED second of an
-- answered call is charged (2.1 s = 3 s), at most the reservation; the rest
-- of the reservation is given back.
function ksr_dialog_event(evname)
    if BILLING == nil then
        return
    end
    if evname == "dialog:start" then
        KSR.pv.sets("$dlg_var(kvi_t0)", string.format("%.6f", now_s()))
        return
    end
    if evname ~= "dialog:end" and evname ~= "dialog:failed" then
        return
    end
    local user = KSR.pv.get("$dlg_var(kvi_user)")
    local reserve = tonumber(KSR.pv.get("$dlg_var(kvi_rsv)") or "")
    if user == nil or reserve == nil then
        return
    end
    local callid = tostring(KSR.pv.get("$dlg(callid)"))
    local secs, charge, dur = 0, 0, 0
    if evname == "dialog:end" then
        local t0 = tonumber(KSR.pv.get("$dlg_var(kvi_t0)") or "") or
                   tonumber(KSR.pv.get("$dlg(start_ts)") or "") or now_s()
        dur = math.max(0, now_s() - t0)
        secs = math.ceil(dur)
        charge = math.min(reserve, secs * COST)
    end
    local refund = reserve - charge
    local how = "applied"
    if refund > 0 then
        local b = ctx_for(BILLING)
        local v, err, st
        if b ~= nil then
            v, err, st = b:add(BILLING, credit_key(user), refund)
        end
        if v == nil then
            log_limited("billing", "refund on " .. BILLING .. " failed (" .. tostring(st) .. "): " .. tostring(err))
            how = "journaled"
            journal_refund(user, callid, refund)
        end
    end
    KSR.notice(string.format("kvi-cdr user=%s callid=%s event=%s duration=%.3f secs=%d charge=%d refund=%d settled=%s\n",
                             user, callid, evname, dur, secs, charge, refund, how))
end

---------------------------------------------------------------- routing

function ksr_request_route()
    if KSR.maxfwd.process_maxfwd(10) < 0 then
        KSR.sl.sl_send_reply(483, "Too Many Hops")
        return
    end
    local method = KSR.pv.get("$rm")
    if KSR.siputils.has_totag() > 0 then
        if KSR.rr.loose_route() > 0 then
            if KSR.tm.t_relay() < 0 then
                KSR.sl.sl_reply_error()
            end
        elseif method == "ACK" then
            if KSR.tm.t_check_trans() > 0 then
                KSR.tm.t_relay()
            end
        else
            KSR.sl.sl_send_reply(404, "Not here")
        end
        return
    end
    if method == "CANCEL" or method == "ACK" then
        if KSR.tm.t_check_trans() > 0 then
            KSR.tm.t_relay()
        end
        return
    end
    if method == "REGISTER" and KSR.auth.has_credentials(REALM) < 0 then
        -- The challenge is stateless: no transaction (kept ~5 s, ~10 KB of
        -- shared memory each) for a reply that costs nothing to send again.
        challenge()
        return
    end
    if method == "REGISTER" or method == "INVITE" then
        -- A transaction where work is done once: a retransmission (sipp
        -- resends after 500 ms without an answer) is absorbed here, or
        -- answered again by tm, instead of asking the database or reserving
        -- credit a second time.  Replies below go out through it
        -- (send_reply, auth_challenge and save reply statefully when a
        -- transaction exists).
        local rc = KSR.tm.t_newtran()
        if rc == 0 then
            return
        elseif rc < 0 then
            KSR.sl.sl_reply_error()
            return
        end
        if method == "REGISTER" then
            register()
        else
            invite()
        end
    else
        KSR.sl.sl_send_reply(405, "Method Not Allowed")
    end
end
