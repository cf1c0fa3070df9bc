/*
 * mc_batch.c -- the memcached engine's batch slot (engine ABI 3).
 *
 * Every op runs on kvi's own pipelined binary-protocol
 * connections (mc_pipe.c): all servers written before any reply is read,
 * ops on one key in batch order, each op with the semantics of its single
 * call.  This slot drives them with poll() until all ended or the batch's
 * deadline.  No raw query reaches it: memcached has no RAW_QUERY capability
 * and the core ends such ops KVI_E_UNSUPPORTED first (one that came anyway
 * would end so here, never reaching a NULL raw_query slot).
 */
#include "mc_engine.h"

static void end_timeout(kvi_conn *c, kvi_batch_op *op)
{
    kvi_batch_op_done(c, op,
                      kvi_engine_error(c, KVI_E_TIMEOUT,
                                       "the batch's deadline passed before this operation was "
                                       "sent"));
}

/* See mc_engine.h. */
void kvi__mc_batch(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms)
{
    /* Every call below is cut at the batch's deadline (mc_watch.c). */
    int64_t outer = kvi__mc_batch_deadline_ms;
    kvi__mc_batch_deadline_ms = deadline_ms;
    for (size_t i = 0; i < n;) {
        if (deadline_ms != 0 && kvi_monotonic_ms() >= deadline_ms) {
            for (; i < n; i++)
                end_timeout(c, ops[i]);
            break;
        }
        if (ops[i]->kind == KVI_OP_RAW_QUERY) {
            kvi_batch_op_done(c, ops[i++],
                              kvi_engine_error(c, KVI_E_UNSUPPORTED,
                                               "raw_query: memcached has no raw query language"));
            continue;
        }
        size_t j = i;
        while (j < n && ops[j]->kind != KVI_OP_RAW_QUERY)
            j++;
        kvi__mc_pipe_run(c, ops + i, j - i, deadline_ms);
        i = j;
    }
    kvi__mc_batch_deadline_ms = outer;
}
