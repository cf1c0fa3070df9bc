/*
 * error.h -- the one place where server error replies of the redis engine
 * become kvi statuses (with the detail message set; connection failures
 * get theirs in conn.c and net.c).  Lowest layer: calls nothing else of
 * the engine.
 */
#ifndef KVI_REDIS_ERROR_H
#define KVI_REDIS_ERROR_H

#include <hiredis/hiredis.h>

#include "kvi/engine.h"

/*
 * Maps an error reply to a status and sets the detail message: -NOAUTH,
 * -WRONGPASS, -NOPERM and invalid-password errors are KVI_E_AUTH, -OOM is
 * KVI_E_STORE_FULL, everything else KVI_E_BACKEND with the server's text
 * (kvi_engine_error masks any occurrence of the password).
 */
kvi_status kvi__redis_reply_error(kvi_conn *c, const redisReply *r);

/* 1 when the error reply r is about authentication or permissions. */
int kvi__redis_is_auth_error(const redisReply *r);

/* 1 when r is an error reply whose first word is kind ("MOVED", ...). */
int kvi__redis_is_error_kind(const redisReply *r, const char *kind);

/* Frees r and returns the status of an unexpected reply to cmd: the
 * server's error for an error reply, else KVI_E_PROTOCOL. */
kvi_status kvi__redis_unexpected(kvi_conn *c, redisReply *r, const char *cmd);

/* 1 when s[0..len) starts with prefix. */
int kvi__redis_starts_with(const char *s, size_t len, const char *prefix);

#endif /* KVI_REDIS_ERROR_H */
