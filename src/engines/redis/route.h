/*
 * route.h -- pure helpers of the redis engine: cluster key slots, the key
 * position of a command line, the kvi-glob to redis-glob translation.  No
 * hiredis and no kvi core here, so tests compile route.c directly.
 */
#ifndef KVI_REDIS_ROUTE_H
#define KVI_REDIS_ROUTE_H

#include <stddef.h>
#include <stdint.h>

/* Number of hash slots of a Redis Cluster. */
#define KVI_REDIS_SLOTS 16384

/* CRC16-XMODEM (poly 0x1021, init 0, no reflection) of len bytes. */
uint16_t kvi__redis_crc16(const void *data, size_t len);

/*
 * Cluster hash slot of a key: CRC16 mod 16384 of the key, or of the bytes
 * between the first '{' and the first '}' after it when there is at least
 * one byte between them ("{user}.name" hashes "user", "{}bar" the whole
 * key).  Example: "foo" -> 12182.
 */
unsigned kvi__redis_key_slot(const void *key, size_t len);

/* Result of kvi__redis_first_key() besides a word index >= 1. */
#define KVI_REDIS_NO_KEY 0       /* the command takes no key */
#define KVI_REDIS_KEY_UNKNOWN -1 /* not in the table: ask the server */

/*
 * Index in words[0..count) of the first key of a Redis command line, e.g.
 * 1 for "GET k", 3 for "EVAL script 1 k", the word after STREAMS for
 * XREAD; KVI_REDIS_NO_KEY for commands without keys (also EVAL with
 * numkeys 0, or an index past the end); KVI_REDIS_KEY_UNKNOWN for commands
 * the table does not know.  Command names are matched case-insensitively.
 */
int kvi__redis_first_key(size_t count, char *const *words, const size_t *lens);

/*
 * 1 when a command changes the state of the connection it runs on
 * (MULTI, SELECT, SUBSCRIBE, AUTH, CLIENT REPLY, ...), which a pooled
 * connection must not carry into the next call; else 0.
 */
int kvi__redis_stateful_command(size_t count, char *const *words, const size_t *lens);

/*
 * Writes into out (room for 2 * glob_len + 1 bytes) a redis MATCH pattern
 * that matches every key the kvi glob matches (and possibly more: a
 * bracket class becomes '?', whose exact test the caller repeats with
 * kvi_glob_match).  Returns the pattern's length; out is NUL-terminated.
 */
size_t kvi__redis_glob_pattern(const char *glob, size_t glob_len, char *out);

#endif /* KVI_REDIS_ROUTE_H */
