/*
 * batch.h -- the redis engine's batch slot (engine ABI 3): the ops of a
 * batch pipelined per server (batch.c).  Under redis.c, over the
 * commands: it calls counter, the near cache, dispatch, the slot map and
 * the pool.
 */
#ifndef KVI_REDIS_BATCH_H
#define KVI_REDIS_BATCH_H

#include "kvi/engine.h"

/* The batch slot: see struct kvi_engine.batch and batch.c. */
void kvi__redis_batch(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms);

/* Non-blocking batches: standalone, Sentinel's master, Cluster (engine ABI 3;
 * docs/async.md). */
extern const struct kvi_engine_async kvi__redis_async;

#endif /* KVI_REDIS_BATCH_H */
