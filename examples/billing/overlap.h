/*
 * overlap.h -- billing --overlap: many concurrent calls per user on several
 * proxies, run with the old check-at-INVITE logic and with the reservation
 * logic on the same traffic, side by side (billing_logic.h).
 */
#ifndef KVI_EXAMPLE_BILLING_OVERLAP_H
#define KVI_EXAMPLE_BILLING_OVERLAP_H

#include <stdint.h>

#define OVERLAP_LOGIC_CHECK 1u   /* check at INVITE, charge at BYE */
#define OVERLAP_LOGIC_RESERVE 2u /* bounded reservations, settle at BYE */

typedef struct overlap_opts {
    const char *url;    /* NULL: the embedded local engine */
    const char *id;     /* engine id */
    const char *prefix; /* of every key of this run */
    int workers;        /* proxies: processes when the engine is shared, else threads */
    int users;
    int calls;    /* per logic */
    int inflight; /* calls in flight per proxy */
    int64_t credit;
    uint64_t seed;
    unsigned logics; /* OVERLAP_LOGIC_* */
} overlap_opts;

/*
 * Runs the calls with each logic of o->logics in turn and prints one result
 * line per logic: accepted, rejected, cut off, the lowest credit any user
 * ever had, unknown outcomes, and whether every credit equals its start
 * minus the charges the store acknowledged.  Returns 0 when the reservation
 * logic (if run) never went below 0 and every check held, 77 when the engine
 * has no KVI_CAP_CONDITIONAL for the reservation logic, 1 otherwise.
 */
int overlap_run(const overlap_opts *o);

#endif
