/*
 * rel_util.h -- what the reliability tests share (prefix rel_): time,
 * resident memory, skipping, and the billing workload driver that runs
 * examples/billing/billing_logic.c's INVITE/BYE decisions from several
 * threads while a test breaks the store underneath.
 */
#ifndef KVI_REL_UTIL_H
#define KVI_REL_UTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "kvi/kvi.h"
#include "testclock.h" /* kvi_test_mono_ms, kvi_test_sleep_ms */

/* Exit status CTest reads as "skipped" (SKIP_RETURN_CODE). */
#define REL_SKIP 77

/* Resident set size of this process in KiB (/proc/self/statm), 0 when it
 * cannot be read. */
uint64_t rel_rss_kib(void);

/* 1 when built with AddressSanitizer (memory figures mean little there). */
int rel_asan(void);

/* Prints "SKIP: why" and exits with REL_SKIP. */
void rel_skip(const char *why) __attribute__((noreturn));

/* Prints "FAIL: ..." and exits 1. */
void rel_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Parses a positive integer environment variable, def when unset/bad. */
long rel_env_long(const char *name, long def);

/* ---- billing workload ---------------------------------------------------- */

/* Per user outcome of a billing run. */
typedef struct rel_user {
    int64_t acked;               /* sum of charges whose BYE returned KVI_OK */
    int64_t unknown;             /* sum of charges whose BYE failed: may or may not be applied */
    uint64_t acked_calls;        /* number of acknowledged charges */
    uint64_t unknown_calls;      /* number of charges of unknown outcome */
    int64_t first_ok_after_mark; /* mono ms of the first OK op after rel_billing.mark_ms, 0 */
} rel_user;

/*
 * A billing run: `threads` workers share one kvi_conn and loop until
 * run_ms has passed: pick a user, INVITE (billing_invite), BYE
 * (billing_bye) 1..60 s of simulated time later at cost 1..9 per second.
 * A call id is never reused, so a BYE is never repeated: a failed BYE's
 * charge is booked as unknown.
 */
typedef struct rel_billing {
    /* set by the caller */
    kvi_conn *conn;
    const char *prefix;
    int nusers;
    int threads;
    int64_t credit;
    int64_t run_ms;
    /* set by the caller while the run goes on (mono ms; 0 = none) */
    _Atomic int64_t mark_ms;
    /* results */
    rel_user *users;
    pthread_mutex_t mu;
    _Atomic uint64_t ops_ok;     /* INVITE/BYE that ended without a kvi error */
    _Atomic uint64_t ops_failed; /* INVITE/BYE that ended with a kvi error */
    _Atomic uint64_t ok_after_mark;
    _Atomic uint64_t dialogs_lost; /* BYE found no dialog although INVITE was acked */
    _Atomic int64_t max_fail_ms;   /* longest INVITE/BYE that failed */
    _Atomic int64_t max_ok_ms;     /* longest INVITE/BYE that succeeded */
    _Atomic uint64_t status_count[KVI_STATUS_COUNT];
    int64_t started_ms, finished_ms;
    pthread_t *tids;
} rel_billing;

/* Sets every user's credit (retrying for up to 10 s while the store is not
 * ready); allocates results.  Returns KVI_OK or the last error. */
kvi_status rel_billing_init(rel_billing *b);

/* Starts the worker threads. */
void rel_billing_start(rel_billing *b);

/* Waits for the workers; returns 0 when they all ended by themselves
 * within run_ms + grace_ms, -1 otherwise (they are then abandoned). */
int rel_billing_join(rel_billing *b, int64_t grace_ms);

/* Final credit of user u into *credit (retrying up to 15 s while the
 * store does not answer).  KVI_OK, KVI_NOT_FOUND or the last error. */
kvi_status rel_billing_credit(rel_billing *b, int u, int64_t *credit);

/* Key of user u's credit into buf. */
void rel_billing_user(int u, char *buf, size_t len);

/* Prints the status counters. */
void rel_billing_print(const rel_billing *b, const char *label);

void rel_billing_free(rel_billing *b);

#endif
