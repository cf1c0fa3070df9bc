/*
 * slotmap.h -- the Redis Cluster slot map of a state: read from CLUSTER
 * SHARDS (Redis >= 7) or CLUSTER SLOTS, installed into st->slots, refreshed
 * when the cluster says it changed, and looked up per command.
 */
#ifndef KVI_REDIS_SLOTMAP_H
#define KVI_REDIS_SLOTMAP_H

#include "state.h"

/* A slot range of a cluster map being read. */
struct kvi_redis_range {
    unsigned start, end;
    char host[256];
    uint16_t port;
};

/* Reads the slot map from node n into *ranges (free with kvi_engine_free)
 * and *count.  KVI_E_UNSUPPORTED (no message) when n is not a cluster
 * node. */
kvi_status kvi__redis_fetch_map(kvi_conn *c, struct kvi_redis_node *n,
                                struct kvi_redis_range **ranges, size_t *count);

/* The slot ranges of r, node n's reply to CLUSTER SHARDS (shards 1) or
 * CLUSTER SLOTS, in *ranges (free with kvi_engine_free) and *count; an
 * error reply is its status (detail set). */
kvi_status kvi__redis_map_from_reply(kvi_conn *c, const struct kvi_redis_node *n,
                                     const redisReply *r, int shards,
                                     struct kvi_redis_range **ranges, size_t *count);
/* Replaces the slot table of st with ranges[0..count). */
void kvi__redis_install_map(kvi_conn *c, struct kvi_redis_state *st,
                            const struct kvi_redis_range *ranges, size_t count);

/* Re-reads the slot map from the first node that answers.  Unless forced,
 * at most once per 100 ms (then KVI_OK without doing anything). */
kvi_status kvi__redis_refresh_map(kvi_conn *c, struct kvi_redis_state *st, int force);

/* The master of slot, or for slot -1 one master in turn; NULL when the map
 * has none. */
struct kvi_redis_node *kvi__redis_slot_node(struct kvi_redis_state *st, int slot);

/* The master of the slot of key (key_len bytes); NULL when the map has
 * none. */
struct kvi_redis_node *kvi__redis_key_node(struct kvi_redis_state *st, const void *key,
                                           size_t key_len);

/* Records that slot moved to node n (a MOVED redirection). */
void kvi__redis_slot_moved(struct kvi_redis_state *st, int slot, struct kvi_redis_node *n);

/* Every master of the map, each once, in *nodes (free with
 * kvi_engine_free) and *count; reads the map first when there is none. */
kvi_status kvi__redis_map_masters(kvi_conn *c, struct kvi_redis_state *st,
                                  struct kvi_redis_node ***nodes, size_t *count);

#endif /* KVI_REDIS_SLOTMAP_H */
