-- kvi_routing.lua -- Kamailio 5.6 KEMI routing script for the two kvi use
-- cases (see docs/kamailio.md):
--
--   * password caching for digest authentication of REGISTER: fetch
--     passwd_<user> from kvi; on a hit check the credentials against it
--     (pv_auth_check); on a miss check them against the SQLite subscriber
--     table (auth_db) and store the password the check loaded with a
--     lifetime; challenge on every failure;
--   * prepaid billing of INVITE: reserve the credit for the longest call with
--     kvi's bounded sub (never below 0; 403 when refused), let the dialog
--     module track the call and settle on its end: give back what the call
--     did not use.
--
-- Settings (environment of the Kamailio process):
--   KVI_SIP_CACHE       kvi (default) | htable (Kamailio's native cache) | none
--   KVI_SIP_ENGINE      kvi engine id of the password cache (default "local")
--   KVI_SIP_URLS        kvi URLs, separated by spaces, e.g.
--                       "local://?shm=kvi-auth&max_memory=16m redis:billing://..."
--   KVI_SIP_LIFETIME    seconds a cached password lives (default 7200)
--   KVI_SIP_REALM       digest realm (default "kvi.test")
--   KVI_SIP_BILLING     kvi engine id of the credits; unset = INVITEs are not billed
--   KVI_SIP_COST_PER_S  credit units per started call second (default 1)
--   KVI_KAM_MAX_CALL_S  longest call (s): the reservation, and the dialog timeout
-- The kvi Lua module is found on package.cpath (LUA_CPATH).

local MODE = os.getenv("KVI_SIP_CACHE") or "kvi"
local ENGINE = os.getenv("KVI_SIP_ENGINE") or "local"
local URLS = os.getenv("KVI_SIP_URLS") or ""
local LIFETIME = tonumber(os.getenv("KVI_SIP_LIFETIME") or "7200")
local REALM = os.getenv("KVI_SIP_REALM") or "kvi.test"
local BILLING = os.getenv("KVI_SIP_BILLING")
local COST = tonumber(os.getenv("KVI_SIP_COST_PER_S") or "1")
local MAX_CALL_S = tonumber(os.getenv("KVI_KAM_MAX_CALL_S") or "60")

if MODE ~= "kvi" and MODE ~= "htable" and MODE ~= "none" then
    error("KVI_SIP_CACHE must be kvi, htable or none, not " .. MODE)
end

-- The native modes need no kvi; when kvi is used, a missing module stops
-- Kamailio at start-up, not at the first request.
local kvi = (MODE == "kvi" or BILLING ~= nil) and require "kvi" or nil

-- One kvi context per Kamailio process, made on first use: the script is
-- loaded in every process after fork, and a context must not cross a fork.
local ctx
local function kv()
    if ctx == nil then
        local k = kvi.new()
        for url in URLS:gmatch("%S+") do
            local ok, err = k:add_url(url)
            if not ok then
                error("kvi: " .. tostring(err)) -- kvi's messages never hold a password
            end
        end
        ctx = k
    end
    return ctx
end

---------------------------------------------------------------- password cache

local function challenge()
    KSR.auth.auth_challenge(REALM, 1) -- 401 with qop=auth
end

-- Digest check against the subscriber table.  Returns auth_db's code and,
-- on success, the plain password it loaded (load_credentials).  Counts the
-- checks that reached the table in htable dbq, per user: auth_db queries
-- the table once for each of the codes counted here (OK, wrong password,
-- unknown user, To/auth user mismatch); the others stop before the query.
local function db_check(user)
    local rc = KSR.auth_db.auth_check(REALM, "subscriber", 1)
    if rc == 1 or rc == -2 or rc == -3 or rc == -8 then
        KSR.htable.sht_inc("dbq", user)
    end
    if rc == 1 then
        return rc, KSR.pv.get("$avp(kvi_pw)")
    end
    return rc, nil
end

local function cached_password(user)
    if MODE == "kvi" then
        local pw, err, st = kv():fetch(ENGINE, "passwd_" .. user)
        if pw == nil and st ~= "KVI_NOT_FOUND" then
            -- The cache is down: authenticate from the database meanwhile.
            KSR.warn("kvi fetch failed for " .. user .. " (" .. tostring(st) .. "): " .. tostring(err) .. "\n")
        end
        return pw
    elseif MODE == "htable" then
        return KSR.htable.sht_get("auth", user)
    end
    return nil
end

local function cache_password(user, pw)
    if MODE == "kvi" then
        local ok, err, st = kv():store(ENGINE, "passwd_" .. user, pw, LIFETIME)
        if not ok then
            KSR.warn("kvi store failed for " .. user .. " (" .. tostring(st) .. "): " .. tostring(err) .. "\n")
        end
    elseif MODE == "htable" then
        KSR.htable.sht_sets("auth", user, pw) -- lifetime: the table's autoexpire
    end
end

local function register()
    if KSR.auth.has_credentials(REALM) < 0 then
        challenge()
        return
    end
    local user = KSR.pv.get("$au")
    local pw = cached_password(user)
    if pw ~= nil then
        if KSR.auth.pv_auth_check(REALM, pw, 0, 1) ~= 1 then
            challenge()
            return
        end
    else
        local rc
        rc, pw = db_check(user)
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
    -- The bounded sub: applied only if the credit stays >= 0, atomically
    -- (one round trip on redis and Redis Cluster), so concurrent calls of
    -- one user on any proxy never spend more than there is.
    local left, err, st, current = kv():sub(BILLING, credit_key(user), reserve, 0, {min = 0})
    if left == nil then
        if st == "KVI_OUT_OF_BOUNDS" then
            KSR.notice("kvi-bill refused user=" .. user .. " credit=" .. tostring(current) .. "\n")
            KSR.sl.send_reply(403, "Insufficient credit")
        else
            KSR.err("kvi-bill reserve failed (" .. tostring(st) .. "): " .. tostring(err) .. "\n")
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

-- Dialog events (modparam dialog event_callback).  dialog:end comes once
-- per answered call (BYE or timeout), dialog:failed once per call that was
-- never answered; both give back the unused part of the reservation.
function ksr_dialog_event(evname)
    if BILLING == nil or (evname ~= "dialog:end" and evname ~= "dialog:failed") then
        return
    end
    local user = KSR.pv.get("$dlg_var(kvi_user)")
    local reserve = tonumber(KSR.pv.get("$dlg_var(kvi_rsv)") or "")
    if user == nil or reserve == nil then
        return
    end
    local secs, charge = 0, 0
    if evname == "dialog:end" then
        local start = tonumber(KSR.pv.get("$dlg(start_ts)") or "") or os.time()
        secs = math.max(0, os.time() - start)
        charge = math.min(reserve, secs * COST)
    end
    local refund = reserve - charge
    if refund > 0 then
        local v, err, st = kv():add(BILLING, credit_key(user), refund)
        if v == nil then
            KSR.err("kvi-bill refund failed (" .. tostring(st) .. "): " .. tostring(err) ..
                    " user=" .. user .. " refund=" .. refund .. "\n")
        end
    end
    KSR.notice(string.format("kvi-cdr user=%s callid=%s event=%s secs=%d charge=%d refund=%d\n",
                             user, tostring(KSR.pv.get("$dlg(callid)")), evname, secs, charge, refund))
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
    if method == "REGISTER" or method == "INVITE" then
        -- A transaction first: a retransmission (sipp resends after 500 ms
        -- without an answer) is absorbed here, or answered again by tm,
        -- instead of asking the database or reserving credit a second time.
        -- Replies below go out through it (send_reply, auth_challenge and
        -- save reply statefully when a transaction exists).
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
