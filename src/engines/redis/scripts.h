/*
 * scripts.h -- every Lua script of the redis engine, in one place: their
 * texts, the SHA1 each got from a server, SCRIPT LOAD on a new connection
 * and the first words of a command that runs one (EVALSHA when the SHA is
 * known, else EVAL of the text).  Sits on conn.h; knows nothing of pools,
 * routing or commands.
 */
#ifndef KVI_REDIS_SCRIPTS_H
#define KVI_REDIS_SCRIPTS_H

#include <stdatomic.h>

#include "conn.h"

/* The scripts (texts and contracts in scripts.c). */
enum kvi_redis_script_id {
    KVI_REDIS_SCRIPT_ADD = 0,         /* KEYS[1] += ARGV[1], expiry ARGV[2] on creation */
    KVI_REDIS_SCRIPT_ADD_BOUNDED = 1, /* the same within [ARGV[3], ARGV[4]] */
    KVI_REDIS_NSCRIPTS = 2
};

/* A script and its SHA1 as a server computed it (valid once sha_state is
 * 2; SCRIPT LOAD fills it, any thread, once). */
struct kvi_redis_script {
    const char *text;
    char sha[41];
    _Atomic int sha_state;
};

/* The scripts of one kvi_conn. */
struct kvi_redis_scripts {
    struct kvi_redis_script script[KVI_REDIS_NSCRIPTS];
};

/* Points every slot of sc at its script's text, no SHA known yet. */
void kvi__redis_scripts_init(struct kvi_redis_scripts *sc);

/*
 * SCRIPT LOAD of every script on conn (ready), in one round trip by
 * deadline (monotonic ms, 0 = none); records the SHAs in sc.  *loaded
 * becomes 1 once all were loaded.  A refusal (ACL) is not fatal (EVAL
 * still works); -LOADING is KVI_E_BACKEND, an auth error KVI_E_AUTH, a
 * connection failure its status (detail message set through c).
 */
kvi_status kvi__redis_scripts_load(kvi_conn *c, struct kvi_redis_scripts *sc,
                                   struct kvi_redis_conn *conn, int64_t deadline, int *loaded);

/*
 * The first two words of a command that runs script id into argv[0..2) and
 * lens[0..2): "EVALSHA sha" when allow_sha and the SHA is known (returns
 * 1), else "EVAL text" (returns 0).  The words stay valid as long as sc.
 */
int kvi__redis_script_words(struct kvi_redis_scripts *sc, int id, int allow_sha, const char **argv,
                            size_t *lens);

#endif /* KVI_REDIS_SCRIPTS_H */
