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

/* Opens a context with url defined (NULL: none, for "local") and the handle
 * of engine id; prints the reason on standard error when it fails.  *k is
 * then still to be freed with kvi_free. */
kvi_status billing_open(const char *url, const char *id, kvi **k, kvi_conn **c);

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

/* ---- the reservation logic with the dialog in the store ------------------- */

/*
 * INVITE with a reservation: takes quota_s seconds of the call's cost from
 * the caller's credit with one bounded sub (floor 0) and records the dialog
 * "user cost_per_s start_ms reserved".  BILLING_NO_CREDIT when the credit
 * cannot cover it (nothing taken), BILLING_OK when the call may start; a kvi
 * error negated (< 0).  *charged is what the store acknowledged taking from
 * the credit (the reservation, or 0; also after an error, when a failed
 * dialog write made it give the reservation back or not).
 */
int billing_invite_reserve(kvi_conn *c, const char *prefix, const char *call_id, const char *user,
                           int64_t cost_per_s, int64_t quota_s, int64_t now_ms, int64_t *charged);

/*
 * BYE of a reserved call: reserves the further quota_s-second pieces the
 * call used after its first one (as its interim timer would have), and when
 * one is refused the call counts as ended there (*cut_off = 1); then gives
 * back what was reserved but not used and removes the dialog.  *net is the
 * change of the credit the store acknowledged for this BYE (further
 * reservations minus the refund), also on error; *user_out names the user.
 * KVI_NOT_FOUND without such a dialog.
 */
kvi_status billing_bye_reserve(kvi_conn *c, const char *prefix, const char *call_id, int64_t now_ms,
                               int64_t quota_s, char *user_out, size_t user_len, int64_t *net,
                               int *cut_off);

/* ---- the two logics, one call at a time (billing --overlap) -------------- */

/*
 * Old logic, check at INVITE (the tutorial's): reads the credit under
 * credit_key into *seen and admits the call (BILLING_OK) when it is > 1,
 * else BILLING_NO_CREDIT (also when there is no credit).  Nothing is
 * reserved, so calls of one user that overlap all pass the check.  A kvi
 * error is returned negated (< 0).
 */
int billing_check_invite(kvi_conn *c, const char *credit_key, int64_t *seen);

/* Old logic, BYE: charges amount with one (unbounded) atomic sub; *value
 * is the credit after it, which may be negative. */
kvi_status billing_check_bye(kvi_conn *c, const char *credit_key, int64_t amount, int64_t *value);

/*
 * New logic, reservation: takes amount from the credit only when at least
 * that much is left (one bounded sub with floor 0).  KVI_OK: reserved,
 * *value = what is left; KVI_OUT_OF_BOUNDS: refused, nothing taken, *value
 * = the credit.  At INVITE a refusal is "403 Not enough credit"; during the
 * call it ends the call.  Errors as kvi_sub_bounded.
 */
kvi_status billing_reserve(kvi_conn *c, const char *credit_key, int64_t amount, int64_t *value);

/* New logic, BYE: gives back the unused part of the reservation (reserved -
 * used, when > 0) with one add; *value is the credit after it.  KVI_OK
 * without a call to the store when nothing is left over. */
kvi_status billing_settle(kvi_conn *c, const char *credit_key, int64_t reserved, int64_t used,
                          int64_t *value);

#endif
