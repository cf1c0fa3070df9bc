/*
 * scripts.c -- every Lua script of the redis engine and their SHAs (see
 * scripts.h).
 */
#include <string.h>

#include "error.h"
#include "scripts.h"

/* KEYS[1] += ARGV[1]; a key it creates expires after ARGV[2] s (0: never);
 * returns the new value as a string (exact beyond 2^53). */
static const char add_script[] =
    "local created = redis.call('EXISTS', KEYS[1]) == 0\n"
    "redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "if created and ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end\n"
    "return redis.call('GET', KEYS[1])\n";

/*
 * KEYS[1] += ARGV[1] only when the result stays within [ARGV[3], ARGV[4]];
 * a key it creates expires after ARGV[2] s (0: never), an existing key
 * keeps its expiry.  Returns {1, new value} or, refused, {0, current value
 * ("0" when missing)} with nothing changed.  Lua numbers are doubles, so
 * INCRBY does the exact int64 arithmetic (and raises not-an-integer,
 * WRONGTYPE and overflow errors before anything changed); a result out of
 * bounds is put back as it was (byte for byte, KEEPTTL) in the same atomic
 * script.  Bounds are compared as canonical decimal strings.
 */
static const char add_bounded_script[] =
    "local function lt(a, b)\n"
    "  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'\n"
    "  if na ~= nb then return na end\n"
    "  if #a ~= #b then return (#a < #b) ~= na end\n"
    "  if a == b then return false end\n"
    "  return (a < b) ~= na\n"
    "end\n"
    "local old = redis.call('GET', KEYS[1])\n"
    "redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "local new = redis.call('GET', KEYS[1])\n"
    "if lt(new, ARGV[3]) or lt(ARGV[4], new) then\n"
    "  if old then redis.call('SET', KEYS[1], old, 'KEEPTTL')\n"
    "  else redis.call('DEL', KEYS[1]) end\n"
    "  return {0, old or '0'}\n"
    "end\n"
    "if not old and ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end\n"
    "return {1, new}\n";

/* See scripts.h. */
void kvi__redis_scripts_init(struct kvi_redis_scripts *sc)
{
    memset(sc, 0, sizeof *sc);
    sc->script[KVI_REDIS_SCRIPT_ADD].text = add_script;
    sc->script[KVI_REDIS_SCRIPT_ADD_BOUNDED].text = add_bounded_script;
    for (int i = 0; i < KVI_REDIS_NSCRIPTS; i++)
        atomic_init(&sc->script[i].sha_state, 0);
}

/* See scripts.h. */
kvi_status kvi__redis_scripts_load(kvi_conn *c, struct kvi_redis_scripts *sc,
                                   struct kvi_redis_conn *conn, int64_t deadline, int *loaded)
{
    struct kvi_redis_script *script_of[KVI_REDIS_NSCRIPTS];
    int n = 0, nloaded = 0;

    for (int i = 0; i < KVI_REDIS_NSCRIPTS; i++) {
        if (sc->script[i].text == NULL)
            continue;
        const char *argv[3] = {"SCRIPT", "LOAD", sc->script[i].text};
        size_t lens[3] = {6, 4, strlen(sc->script[i].text)};
        if (kvi__redis_conn_append(conn, 3, argv, lens) != 0)
            return kvi_engine_error(c, conn->st, "%s", conn->err);
        script_of[n++] = &sc->script[i];
    }
    kvi_status result = KVI_OK;
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (kvi__redis_conn_reply(conn, deadline, &r) != KVI_OK)
            return kvi_engine_error(c, conn->st, "%s", conn->err);
        if (r->type == REDIS_REPLY_ERROR) {
            if (result == KVI_OK && kvi__redis_starts_with(r->str, r->len, "LOADING"))
                result = kvi_engine_error(c, KVI_E_BACKEND, "%s: %s", conn->cfg.name, r->str);
            else if (result == KVI_OK && kvi__redis_is_auth_error(r))
                result = kvi_engine_error(c, KVI_E_AUTH, "%s: %s", conn->cfg.name, r->str);
        } else if (r->type == REDIS_REPLY_STRING && r->len == 40) {
            struct kvi_redis_script *s = script_of[i];
            int expected = 0;
            if (atomic_compare_exchange_strong(&s->sha_state, &expected, 1)) {
                memcpy(s->sha, r->str, 41);
                atomic_store(&s->sha_state, 2);
            }
            nloaded++;
        }
        freeReplyObject(r);
    }
    if (result == KVI_OK && n > 0 && nloaded == n)
        *loaded = 1;
    return result;
}

/* See scripts.h. */
int kvi__redis_script_words(struct kvi_redis_scripts *sc, int id, int allow_sha, const char **argv,
                            size_t *lens)
{
    struct kvi_redis_script *s = &sc->script[id];
    if (allow_sha && atomic_load(&s->sha_state) == 2) {
        argv[0] = "EVALSHA";
        lens[0] = 7;
        argv[1] = s->sha;
        lens[1] = 40;
        return 1;
    }
    argv[0] = "EVAL";
    lens[0] = 4;
    argv[1] = s->text;
    lens[1] = strlen(s->text);
    return 0;
}
