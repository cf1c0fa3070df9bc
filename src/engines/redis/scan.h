/*
 * scan.h -- the redis engine's operations on every master (each cluster
 * master, or the working standalone host): the keys and remove_chunk slots
 * (SCAN MATCH with kvi's glob checked again on each key) and ping.
 */
#ifndef KVI_REDIS_SCAN_H
#define KVI_REDIS_SCAN_H

#include "kvi/engine.h"

/* The keys slot: every key matching glob, each once. */
kvi_status kvi__redis_keys(kvi_conn *c, const char *glob, size_t glob_len, kvi_reply **out);

/* The remove_chunk slot: removes every key matching glob; *removed counts
 * them, also those removed before a failure. */
kvi_status kvi__redis_remove_chunk(kvi_conn *c, const char *glob, size_t glob_len,
                                   uint64_t *removed);

/* The ping slot: every master must answer PING. */
kvi_status kvi__redis_ping(kvi_conn *c);

#endif /* KVI_REDIS_SCAN_H */
