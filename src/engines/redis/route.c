/*
 * route.c -- cluster key slots, command key positions and glob patterns for
 * the redis engine (pure functions, see route.h).
 */
#include <string.h>
#include <strings.h>

#include "route.h"

static const uint16_t crc16_table[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7, 0x8108, 0x9129, 0xa14a, 0xb16b,
    0xc18c, 0xd1ad, 0xe1ce, 0xf1ef, 0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
    0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de, 0x2462, 0x3443, 0x0420, 0x1401,
    0x64e6, 0x74c7, 0x44a4, 0x5485, 0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
    0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4, 0xb75b, 0xa77a, 0x9719, 0x8738,
    0xf7df, 0xe7fe, 0xd79d, 0xc7bc, 0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
    0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b, 0x5af5, 0x4ad4, 0x7ab7, 0x6a96,
    0x1a71, 0x0a50, 0x3a33, 0x2a12, 0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
    0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41, 0xedae, 0xfd8f, 0xcdec, 0xddcd,
    0xad2a, 0xbd0b, 0x8d68, 0x9d49, 0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
    0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78, 0x9188, 0x81a9, 0xb1ca, 0xa1eb,
    0xd10c, 0xc12d, 0xf14e, 0xe16f, 0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
    0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e, 0x02b1, 0x1290, 0x22f3, 0x32d2,
    0x4235, 0x5214, 0x6277, 0x7256, 0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
    0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405, 0xa7db, 0xb7fa, 0x8799, 0x97b8,
    0xe75f, 0xf77e, 0xc71d, 0xd73c, 0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
    0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab, 0x5844, 0x4865, 0x7806, 0x6827,
    0x18c0, 0x08e1, 0x3882, 0x28a3, 0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
    0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92, 0xfd2e, 0xed0f, 0xdd6c, 0xcd4d,
    0xbdaa, 0xad8b, 0x9de8, 0x8dc9, 0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
    0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8, 0x6e17, 0x7e36, 0x4e55, 0x5e74,
    0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
};

/* See route.h. */
uint16_t kvi__redis_crc16(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint16_t crc = 0;

    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)((crc << 8) ^ crc16_table[((crc >> 8) ^ p[i]) & 0xffu]);
    return crc;
}

/* See route.h. */
unsigned kvi__redis_key_slot(const void *key, size_t len)
{
    const char *k = key;
    const char *open = len > 0 ? memchr(k, '{', len) : NULL;

    if (open != NULL) {
        size_t start = (size_t)(open - k) + 1;
        const char *close = memchr(k + start, '}', len - start);
        if (close != NULL && close > k + start)
            return kvi__redis_crc16(k + start, (size_t)(close - (k + start))) &
                   (KVI_REDIS_SLOTS - 1);
    }
    return kvi__redis_crc16(k, len) & (KVI_REDIS_SLOTS - 1);
}

/* Special positions in the command table. */
enum {
    POS_NUMKEYS1 = -10, /* CMD numkeys key...            (ZUNION, LMPOP) */
    POS_NUMKEYS2 = -11, /* CMD x numkeys key...          (EVAL, BLMPOP) */
    POS_STREAMS = -12,  /* key after the STREAMS word    (XREAD) */
};

struct cmd_key {
    const char *name;
    int pos;
};

/* Commands whose first key is not word 1 or that take no key at all, then
 * the common commands with the key at word 1.  Anything else is asked to
 * the server (COMMAND GETKEYS), so a missing entry costs a round trip, not
 * correctness. */
static const struct cmd_key cmd_keys[] = {
    {"EVAL", POS_NUMKEYS2},
    {"EVALSHA", POS_NUMKEYS2},
    {"EVAL_RO", POS_NUMKEYS2},
    {"EVALSHA_RO", POS_NUMKEYS2},
    {"FCALL", POS_NUMKEYS2},
    {"FCALL_RO", POS_NUMKEYS2},
    {"BLMPOP", POS_NUMKEYS2},
    {"BZMPOP", POS_NUMKEYS2},
    {"ZUNION", POS_NUMKEYS1},
    {"ZINTER", POS_NUMKEYS1},
    {"ZDIFF", POS_NUMKEYS1},
    {"ZINTERCARD", POS_NUMKEYS1},
    {"SINTERCARD", POS_NUMKEYS1},
    {"LMPOP", POS_NUMKEYS1},
    {"ZMPOP", POS_NUMKEYS1},
    {"XREAD", POS_STREAMS},
    {"XREADGROUP", POS_STREAMS},
    {"BITOP", 2},
    {"OBJECT", 2},
    {"XINFO", 2},
    {"XGROUP", 2},
    {"PING", 0},
    {"ECHO", 0},
    {"INFO", 0},
    {"DBSIZE", 0},
    {"TIME", 0},
    {"KEYS", 0},
    {"SCAN", 0},
    {"RANDOMKEY", 0},
    {"FLUSHDB", 0},
    {"FLUSHALL", 0},
    {"CLUSTER", 0},
    {"CONFIG", 0},
    {"CLIENT", 0},
    {"COMMAND", 0},
    {"SCRIPT", 0},
    {"FUNCTION", 0},
    {"LASTSAVE", 0},
    {"SAVE", 0},
    {"BGSAVE", 0},
    {"BGREWRITEAOF", 0},
    {"ACL", 0},
    {"SLOWLOG", 0},
    {"LATENCY", 0},
    {"PUBLISH", 0},
    {"SPUBLISH", 1},
    {"PUBSUB", 0},
    {"WAIT", 0},
    {"LOLWUT", 0},
    {"ROLE", 0},
    {"DEBUG", 0},
    {"SWAPDB", 0},
    {"MODULE", 0},
    {"SHUTDOWN", 0},
    {"REPLICAOF", 0},
    {"SLAVEOF", 0},
    {"APPEND", 1},
    {"BITCOUNT", 1},
    {"BITFIELD", 1},
    {"BITFIELD_RO", 1},
    {"BITPOS", 1},
    {"BLMOVE", 1},
    {"BLPOP", 1},
    {"BRPOP", 1},
    {"BRPOPLPUSH", 1},
    {"BZPOPMAX", 1},
    {"BZPOPMIN", 1},
    {"COPY", 1},
    {"DECR", 1},
    {"DECRBY", 1},
    {"DEL", 1},
    {"DUMP", 1},
    {"EXISTS", 1},
    {"EXPIRE", 1},
    {"EXPIREAT", 1},
    {"EXPIRETIME", 1},
    {"GEOADD", 1},
    {"GEODIST", 1},
    {"GEOHASH", 1},
    {"GEOPOS", 1},
    {"GEORADIUS", 1},
    {"GEORADIUSBYMEMBER", 1},
    {"GEOSEARCH", 1},
    {"GEOSEARCHSTORE", 1},
    {"GET", 1},
    {"GETBIT", 1},
    {"GETDEL", 1},
    {"GETEX", 1},
    {"GETRANGE", 1},
    {"GETSET", 1},
    {"HDEL", 1},
    {"HEXISTS", 1},
    {"HGET", 1},
    {"HGETALL", 1},
    {"HINCRBY", 1},
    {"HINCRBYFLOAT", 1},
    {"HKEYS", 1},
    {"HLEN", 1},
    {"HMGET", 1},
    {"HMSET", 1},
    {"HRANDFIELD", 1},
    {"HSCAN", 1},
    {"HSET", 1},
    {"HSETNX", 1},
    {"HSTRLEN", 1},
    {"HVALS", 1},
    {"INCR", 1},
    {"INCRBY", 1},
    {"INCRBYFLOAT", 1},
    {"LCS", 1},
    {"LINDEX", 1},
    {"LINSERT", 1},
    {"LLEN", 1},
    {"LMOVE", 1},
    {"LPOP", 1},
    {"LPOS", 1},
    {"LPUSH", 1},
    {"LPUSHX", 1},
    {"LRANGE", 1},
    {"LREM", 1},
    {"LSET", 1},
    {"LTRIM", 1},
    {"MGET", 1},
    {"MSET", 1},
    {"MSETNX", 1},
    {"PERSIST", 1},
    {"PEXPIRE", 1},
    {"PEXPIREAT", 1},
    {"PEXPIRETIME", 1},
    {"PFADD", 1},
    {"PFCOUNT", 1},
    {"PFMERGE", 1},
    {"PSETEX", 1},
    {"PTTL", 1},
    {"RENAME", 1},
    {"RENAMENX", 1},
    {"RESTORE", 1},
    {"RPOP", 1},
    {"RPOPLPUSH", 1},
    {"RPUSH", 1},
    {"RPUSHX", 1},
    {"SADD", 1},
    {"SCARD", 1},
    {"SDIFF", 1},
    {"SDIFFSTORE", 1},
    {"SET", 1},
    {"SETBIT", 1},
    {"SETEX", 1},
    {"SETNX", 1},
    {"SETRANGE", 1},
    {"SINTER", 1},
    {"SINTERSTORE", 1},
    {"SISMEMBER", 1},
    {"SMEMBERS", 1},
    {"SMISMEMBER", 1},
    {"SMOVE", 1},
    {"SORT", 1},
    {"SORT_RO", 1},
    {"SPOP", 1},
    {"SRANDMEMBER", 1},
    {"SREM", 1},
    {"SSCAN", 1},
    {"STRLEN", 1},
    {"SUBSTR", 1},
    {"SUNION", 1},
    {"SUNIONSTORE", 1},
    {"TOUCH", 1},
    {"TTL", 1},
    {"TYPE", 1},
    {"UNLINK", 1},
    {"XACK", 1},
    {"XADD", 1},
    {"XAUTOCLAIM", 1},
    {"XCLAIM", 1},
    {"XDEL", 1},
    {"XLEN", 1},
    {"XPENDING", 1},
    {"XRANGE", 1},
    {"XREVRANGE", 1},
    {"XSETID", 1},
    {"XTRIM", 1},
    {"ZADD", 1},
    {"ZCARD", 1},
    {"ZCOUNT", 1},
    {"ZDIFFSTORE", 1},
    {"ZINCRBY", 1},
    {"ZINTERSTORE", 1},
    {"ZLEXCOUNT", 1},
    {"ZMSCORE", 1},
    {"ZPOPMAX", 1},
    {"ZPOPMIN", 1},
    {"ZRANDMEMBER", 1},
    {"ZRANGE", 1},
    {"ZRANGEBYLEX", 1},
    {"ZRANGEBYSCORE", 1},
    {"ZRANGESTORE", 1},
    {"ZRANK", 1},
    {"ZREM", 1},
    {"ZREMRANGEBYLEX", 1},
    {"ZREMRANGEBYRANK", 1},
    {"ZREMRANGEBYSCORE", 1},
    {"ZREVRANGE", 1},
    {"ZREVRANGEBYLEX", 1},
    {"ZREVRANGEBYSCORE", 1},
    {"ZREVRANK", 1},
    {"ZSCAN", 1},
    {"ZSCORE", 1},
    {"ZUNIONSTORE", 1},
};

static int word_is(const char *word, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(word, name, len) == 0;
}

/* Parses a small non-negative decimal (numkeys); -1 when it is not one. */
static long small_number(const char *word, size_t len)
{
    long v = 0;

    if (len == 0 || len > 9)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (word[i] < '0' || word[i] > '9')
            return -1;
        v = v * 10 + (word[i] - '0');
    }
    return v;
}

/* See route.h. */
int kvi__redis_first_key(size_t count, char *const *words, const size_t *lens)
{
    if (count == 0)
        return KVI_REDIS_NO_KEY;
    for (size_t i = 0; i < sizeof cmd_keys / sizeof cmd_keys[0]; i++) {
        if (!word_is(words[0], lens[0], cmd_keys[i].name))
            continue;
        long pos = cmd_keys[i].pos;
        if (pos == POS_NUMKEYS1 || pos == POS_NUMKEYS2) {
            size_t at = pos == POS_NUMKEYS1 ? 1 : 2;
            if (count <= at || small_number(words[at], lens[at]) <= 0)
                return KVI_REDIS_NO_KEY;
            pos = (long)at + 1;
        } else if (pos == POS_STREAMS) {
            pos = KVI_REDIS_NO_KEY;
            for (size_t j = 1; j + 1 < count; j++) {
                if (word_is(words[j], lens[j], "STREAMS")) {
                    pos = (long)j + 1;
                    break;
                }
            }
        }
        if (pos < 0 || (size_t)pos >= count)
            return KVI_REDIS_NO_KEY;
        return (int)pos;
    }
    return KVI_REDIS_KEY_UNKNOWN;
}

/* See route.h. */
int kvi__redis_stateful_command(size_t count, char *const *words, const size_t *lens)
{
    static const char *const stateful[] = {
        "MULTI",     "EXEC",       "DISCARD",    "WATCH",       "UNWATCH",      "SELECT",
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
        "MONITOR",   "SYNC",       "PSYNC",      "RESET",       "QUIT",         "HELLO",
        "AUTH",      "READONLY",   "READWRITE",  "ASKING",
    };

    if (count == 0)
        return 0;
    for (size_t i = 0; i < sizeof stateful / sizeof stateful[0]; i++)
        if (word_is(words[0], lens[0], stateful[i]))
            return 1;
    if (count >= 2 && word_is(words[0], lens[0], "CLIENT"))
        return word_is(words[1], lens[1], "REPLY") || word_is(words[1], lens[1], "TRACKING") ||
               word_is(words[1], lens[1], "CACHING");
    return 0;
}

/* Index just past the ']' that closes the class opening at g[i] == '[',
 * with the rules of kvi_glob_match, or 0 when it is not closed. */
static size_t class_end(const char *g, size_t len, size_t i)
{
    size_t j = i + 1;

    if (j < len && (g[j] == '^' || g[j] == '!'))
        j++;
    size_t first = j;
    for (; j < len; j++) {
        if (g[j] == '\\' && j + 1 < len)
            j++;
        else if (g[j] == ']' && j > first)
            return j + 1;
    }
    return 0;
}

/* See route.h. */
size_t kvi__redis_glob_pattern(const char *glob, size_t glob_len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < glob_len;) {
        char ch = glob[i];
        if (ch == '*' || ch == '?') {
            out[o++] = ch;
            i++;
        } else if (ch == '[') {
            size_t end = class_end(glob, glob_len, i);
            if (end != 0) {
                /* Redis classes differ in details ([!a], a leading ']');
                 * any one byte is a safe superset, refined by the caller. */
                out[o++] = '?';
                i = end;
            } else {
                out[o++] = '\\';
                out[o++] = '[';
                i++;
            }
        } else if (ch == '\\') {
            out[o++] = '\\';
            out[o++] = i + 1 < glob_len ? glob[i + 1] : '\\';
            i += 2;
        } else {
            out[o++] = ch;
            i++;
        }
    }
    out[o] = '\0';
    return o;
}
