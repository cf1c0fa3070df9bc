/* ops.h -- what ops.c (the one wrapper per operation) gives batch.c: the
 * argument checks of one operation and the stats of a batch. */
#ifndef KVI_CORE_OPS_H
#define KVI_CORE_OPS_H

#include "core/types.h"

/* Checks op's arguments as the single call of kind does (kind is the
 * caller's: KVI_OP_SUB and KVI_OP_SUB_BOUNDED included, op->delta not yet
 * negated); KVI_OK or the rejection, counted and with the detail message
 * set. */
kvi_status kvi__op_check(kvi_conn *c, kvi_op_kind kind, const kvi_batch_op *op);

/* Timing of one batch on c: begin returns its start (0: timing off), end
 * counts the n ended ops (of them misses and errors) and the time. */
uint64_t kvi__op_batch_begin(kvi_conn *c, int *coarse);
void kvi__op_batch_end(kvi_conn *c, uint64_t t0, int coarse, size_t n, size_t misses,
                       size_t errors);

#endif /* KVI_CORE_OPS_H */
