/* billing_logic.c -- INVITE and BYE decisions (see billing_logic.h). */
#include "billing_logic.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

kvi_status billing_open(const char *url, const char *id, kvi **k, kvi_conn **c)
{
    kvi_status st = kvi_new(k);
    if (st == KVI_OK && url != NULL)
        st = kvi_add_url(*k, url);
    if (st == KVI_OK)
        st = kvi_conn_get(*k, id, c);
    if (st != KVI_OK)
        fprintf(stderr, "billing: %s: %s\n", kvi_strerror(st), *k ? kvi_errmsg(*k) : "");
    return st;
}

kvi_status billing_set_credit(kvi_conn *c, const char *prefix, const char *user, int64_t credit)
{
    char key[256], val[32];
    int klen = snprintf(key, sizeof key, "%scredit_%s", prefix, user);
    int vlen = snprintf(val, sizeof val, "%" PRId64, credit);
    return kvi_conn_store(c, key, (size_t)klen, val, (size_t)vlen, 0);
}

int billing_invite(kvi_conn *c, const char *prefix, const char *call_id, const char *user,
                   int64_t cost_per_s, int64_t now_ms)
{
    char key[256], dlg[128];
    int klen = snprintf(key, sizeof key, "%scredit_%s", prefix, user);
    int64_t credit = 0;
    kvi_status st = kvi_conn_counter_fetch(c, key, (size_t)klen, &credit);
    if (st == KVI_NOT_FOUND)
        return BILLING_NO_CREDIT;
    if (st != KVI_OK)
        return -(int)st;
    if (credit <= 1)
        return BILLING_NO_CREDIT;
    klen = snprintf(key, sizeof key, "%sdlg_%s", prefix, call_id);
    int dlen = snprintf(dlg, sizeof dlg, "%s %" PRId64 " %" PRId64, user, cost_per_s, now_ms);
    st = kvi_conn_store(c, key, (size_t)klen, dlg, (size_t)dlen, 0);
    return st == KVI_OK ? BILLING_OK : -(int)st;
}

/* Reads the dialog of call_id into user (128 bytes), cost, start and the
 * reserved amount (0 for a dialog of the check logic). */
static kvi_status read_dialog(kvi_conn *c, const char *key, size_t klen, char *user, int64_t *cost,
                              int64_t *start, int64_t *reserved)
{
    kvi_value v = KVI_VALUE_INIT;
    kvi_status st = kvi_conn_fetch(c, key, klen, &v);
    if (st != KVI_OK)
        return st;
    *reserved = 0;
    int n = sscanf(v.data, "%127s %" SCNd64 " %" SCNd64 " %" SCNd64, user, cost, start, reserved);
    kvi_value_free(&v);
    return n >= 3 && *cost > 0 ? KVI_OK : KVI_E_CORRUPT;
}

kvi_status billing_bye(kvi_conn *c, const char *prefix, const char *call_id, int64_t now_ms,
                       char *user_out, size_t user_len, int64_t *charged)
{
    char key[256], user[128];
    int klen = snprintf(key, sizeof key, "%sdlg_%s", prefix, call_id);
    int64_t cost = 0, start = 0, reserved = 0;
    kvi_status st = read_dialog(c, key, (size_t)klen, user, &cost, &start, &reserved);
    if (st != KVI_OK)
        return st;
    if (now_ms < start)
        return KVI_E_CORRUPT;
    /* Charge whole seconds, rounded up: a started second is paid. */
    int64_t amount = ((now_ms - start + 999) / 1000) * cost;
    char ckey[256];
    int cklen = snprintf(ckey, sizeof ckey, "%scredit_%s", prefix, user);
    st = kvi_conn_sub(c, ckey, (size_t)cklen, amount, 0, NULL);
    if (st != KVI_OK)
        return st; /* the dialog stays: the charge may be retried by an operator */
    snprintf(user_out, user_len, "%s", user);
    *charged = amount;
    kvi_status rm = kvi_conn_remove(c, key, (size_t)klen);
    (void)rm; /* the charge stands even if the dialog record lingers */
    return KVI_OK;
}

int billing_check_invite(kvi_conn *c, const char *credit_key, int64_t *seen)
{
    *seen = 0;
    kvi_status st = kvi_conn_counter_fetch(c, credit_key, strlen(credit_key), seen);
    if (st == KVI_NOT_FOUND)
        return BILLING_NO_CREDIT;
    if (st != KVI_OK)
        return -(int)st;
    return *seen <= 1 ? BILLING_NO_CREDIT : BILLING_OK;
}

kvi_status billing_check_bye(kvi_conn *c, const char *credit_key, int64_t amount, int64_t *value)
{
    return kvi_conn_sub(c, credit_key, strlen(credit_key), amount, 0, value);
}

kvi_status billing_reserve(kvi_conn *c, const char *credit_key, int64_t amount, int64_t *value)
{
    return kvi_conn_sub_bounded(c, credit_key, strlen(credit_key), amount, 0, 0, INT64_MAX, value);
}

kvi_status billing_settle(kvi_conn *c, const char *credit_key, int64_t reserved, int64_t used,
                          int64_t *value)
{
    if (reserved <= used)
        return KVI_OK;
    return kvi_conn_add(c, credit_key, strlen(credit_key), reserved - used, 0, value);
}

int billing_invite_reserve(kvi_conn *c, const char *prefix, const char *call_id, const char *user,
                           int64_t cost_per_s, int64_t quota_s, int64_t now_ms, int64_t *charged)
{
    char key[256], dlg[160];
    *charged = 0;
    snprintf(key, sizeof key, "%scredit_%s", prefix, user);
    int64_t amount = cost_per_s * quota_s, left = 0;
    kvi_status st = billing_reserve(c, key, amount, &left);
    if (st == KVI_OUT_OF_BOUNDS)
        return BILLING_NO_CREDIT;
    if (st != KVI_OK)
        return -(int)st;
    *charged = amount;
    int klen = snprintf(key, sizeof key, "%sdlg_%s", prefix, call_id);
    int dlen = snprintf(dlg, sizeof dlg, "%s %" PRId64 " %" PRId64 " %" PRId64, user, cost_per_s,
                        now_ms, amount);
    st = kvi_conn_store(c, key, (size_t)klen, dlg, (size_t)dlen, 0);
    if (st == KVI_OK)
        return BILLING_OK;
    /* No dialog, no call: give the reservation back. */
    snprintf(key, sizeof key, "%scredit_%s", prefix, user);
    if (billing_settle(c, key, amount, 0, &left) == KVI_OK)
        *charged = 0;
    return -(int)st;
}

kvi_status billing_bye_reserve(kvi_conn *c, const char *prefix, const char *call_id, int64_t now_ms,
                               int64_t quota_s, char *user_out, size_t user_len, int64_t *net,
                               int *cut_off)
{
    char key[256], ckey[256], user[128];
    *net = 0;
    *cut_off = 0;
    int klen = snprintf(key, sizeof key, "%sdlg_%s", prefix, call_id);
    int64_t cost = 0, start = 0, reserved = 0, v = 0;
    kvi_status st = read_dialog(c, key, (size_t)klen, user, &cost, &start, &reserved);
    if (st != KVI_OK)
        return st;
    if (now_ms < start || reserved <= 0)
        return KVI_E_CORRUPT;
    snprintf(user_out, user_len, "%s", user);
    snprintf(ckey, sizeof ckey, "%scredit_%s", prefix, user);
    /* A started second is paid. */
    int64_t seconds = (now_ms - start + 999) / 1000;
    int64_t covered = reserved / cost;
    while (covered < seconds) {
        st = billing_reserve(c, ckey, cost * quota_s, &v);
        if (st == KVI_OUT_OF_BOUNDS) {
            *cut_off = 1; /* the proxy ended the call when its credit ran out */
            seconds = covered;
            break;
        }
        if (st != KVI_OK)
            return st; /* the dialog stays for an operator */
        *net += cost * quota_s;
        reserved += cost * quota_s;
        covered += quota_s;
    }
    st = billing_settle(c, ckey, reserved, cost * seconds, &v);
    if (st != KVI_OK)
        return st;
    *net -= reserved - cost * seconds;
    kvi_status rm = kvi_conn_remove(c, key, (size_t)klen);
    (void)rm; /* the charge stands even if the dialog record lingers */
    return KVI_OK;
}
