/*
 * billing_logic.h -- distributed prepaid billing on a shared kvi engine id:
 * the decisions a SIP proxy takes on INVITE and BYE, apart from any traffic.
 *
 * Keys (all under a caller-chosen prefix):  credit_<user> is the user's
 * credit, an int64 counter;  dlg_<call-id> is an admitted call's dialog,
 * "user cost_per_s start_ms".
 */
#ifndef KVI_EXAMPLE_BILLING_LOGIC_H
#define KVI_EXAMPLE_BILLING_LOGIC_H

#include <stdint.h>

#include <kvi/kvi.h>

#define BILLING_OK 200
#define BILLING_NO_CREDIT 403 /* "403 Not enough credit" */

/* Sets a user's credit (before traffic). */
kvi_status billing_set_credit(kvi_conn *c, const char *prefix, const char *user,
                              int64_t credit);

/*
 * INVITE: reads the caller's credit; BILLING_NO_CREDIT when it is <= 1 (or the
 * user has none); otherwise records the dialog under call_id and returns
 * BILLING_OK.  A kvi error is returned as its negated status (< 0).
 */
int billing_invite(kvi_conn *c, const char *prefix, const char *call_id, const char *user,
                   int64_t cost_per_s, int64_t now_ms);

/*
 * BYE: reads the dialog of call_id, subtracts duration x cost from the
 * user's credit with one atomic sub, removes the dialog.  On KVI_OK the
 * charge is acknowledged: *user_out (size user_len) and *charged say whom
 * and how much.  KVI_NOT_FOUND when no such dialog exists.
 */
kvi_status billing_bye(kvi_conn *c, const char *prefix, const char *call_id, int64_t now_ms,
                       char *user_out, size_t user_len, int64_t *charged);

#endif
