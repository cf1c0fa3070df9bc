/* billing_logic.c -- INVITE and BYE decisions (see billing_logic.h). */
#include "billing_logic.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

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

kvi_status billing_bye(kvi_conn *c, const char *prefix, const char *call_id, int64_t now_ms,
                       char *user_out, size_t user_len, int64_t *charged)
{
    char key[256], user[128];
    int klen = snprintf(key, sizeof key, "%sdlg_%s", prefix, call_id);
    kvi_value v = KVI_VALUE_INIT;
    kvi_status st = kvi_conn_fetch(c, key, (size_t)klen, &v);
    if (st != KVI_OK)
        return st;
    int64_t cost = 0, start = 0;
    int ok = sscanf(v.data, "%127s %" SCNd64 " %" SCNd64, user, &cost, &start) == 3;
    kvi_value_free(&v);
    if (!ok || now_ms < start)
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
