/*
 * shm_table.c -- the shared table's operations: chained hashing over a
 * fixed bucket array per shard, a per-shard arena allocator (size classes
 * of 16-byte granules, exact up to 1 KiB then four per power of two; a
 * bump top; larger free blocks split; an emptied shard starts its arena
 * over), lazy expiry with an incremental sweep, and LRU eviction within a
 * shard.  Every write of shared structure goes through W32/W64/kvi__sh_log
 * before it is made, and each operation commits at its end (see shm.c).
 *
 * Invariants, per shard and under its lock (kvi__sh_check verifies them):
 *  - every entry in a chain is SH_USED, in the shard's carved arena, and
 *    hashes to that shard and bucket;
 *  - entries, bytes, memory and expiring are the sums over the chains;
 *  - every block on free list c is SH_FREE of class c, and the bytes of the
 *    entries plus those of the free blocks equal top - arena_off.
 */
#include "engines/local/shm_internal.h"

#include <stdio.h>
#include <string.h>

/* Lock elision for a batch's fetches (op_fetch_ops): x86-64 with RTM and
 * glibc's mutex layout only. */
#if defined(__x86_64__) && defined(__GLIBC__) && (defined(__GNUC__) || defined(__clang__))
#define SH_ELIDE 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define SH_ELIDE 0
#endif

#define ENT(s, idx) ((struct sh_ent *)((s)->base + (size_t)(idx)*SH_GRAN))
#define IDX(s, e) ((uint32_t)(((const unsigned char *)(e) - (s)->base) / SH_GRAN))
#define SAMPLES 5

static inline void w32(kvi__sh *s, struct sh_shard *sh, uint32_t *p, uint32_t v)
{
    kvi__sh_log(s, sh, p, sizeof(*p));
    *p = v;
}

static inline void w64(kvi__sh *s, struct sh_shard *sh, uint64_t *p, uint64_t v)
{
    kvi__sh_log(s, sh, p, sizeof(*p));
    *p = v;
}

static inline int64_t e_expire(const struct sh_ent *e)
{
    return (int64_t)(e->xl >> 16);
}

static inline int e_dead(const struct sh_ent *e, kvi__lt_op *n)
{
    return kvi__lt_dead(e_expire(e), n);
}

/* The shard's place in the segment as this process computed and checked
 * it at attach (never the offsets stored in the segment). */
static inline const struct sh_geo *geo(const kvi__sh *s, const struct sh_shard *sh)
{
    return &s->geo[sh - s->shards];
}

static inline uint32_t *buckets(kvi__sh *s, struct sh_shard *sh)
{
    return (uint32_t *)(s->base + geo(s, sh)->buckets_off);
}

static inline struct sh_shard *shard_of(kvi__sh *s, uint64_t h)
{
    return &s->shards[(size_t)(h >> 58) & (SH_SHARDS - 1u)];
}

static inline uint32_t hash32(uint64_t h)
{
    return (uint32_t)(h >> 24);
}

/* ---- size classes --------------------------------------------------------- */

/* The smallest class whose blocks hold g granules. */
static uint32_t cls_of(uint64_t g)
{
    if (g <= 64u)
        return (uint32_t)(g ? g - 1u : 0u);
    uint64_t x = g - 1u;
    unsigned b = 63u - (unsigned)__builtin_clzll(x);
    unsigned sub = (unsigned)((x >> (b - 2u)) & 3u);
    return 64u + (b - 6u) * 4u + sub;
}

static uint64_t cls_granules(uint32_t c)
{
    if (c < 64u)
        return c + 1u;
    uint32_t d = c - 64u;
    unsigned b = d / 4u + 6u;
    return (uint64_t)(5u + d % 4u) << (b - 2u);
}

/* The largest class whose blocks are at most g granules (g >= 1). */
static uint32_t cls_floor(uint64_t g)
{
    uint32_t c = cls_of(g);
    return cls_granules(c) == g ? c : c - 1u;
}

uint64_t kvi__sh_max_entry(const kvi__sh *s)
{
    uint64_t g = s->h->arena_bytes / SH_GRAN;
    uint32_t c = cls_floor(g);
    if (c >= SH_NCLASS)
        c = SH_NCLASS - 1u;
    return cls_granules(c) * SH_GRAN;
}

static inline int bit_get(const struct sh_shard *sh, uint32_t c)
{
    return (int)((sh->bits[c / 64u] >> (c % 64u)) & 1u);
}

static void bit_put(kvi__sh *s, struct sh_shard *sh, uint32_t c, int on)
{
    uint64_t w = sh->bits[c / 64u], m = UINT64_C(1) << (c % 64u);
    uint64_t nw = on ? (w | m) : (w & ~m);
    if (nw != w)
        w64(s, sh, &sh->bits[c / 64u], nw);
}

/* First non-empty free list of class >= c, or SH_NCLASS. */
static uint32_t bit_next(const struct sh_shard *sh, uint32_t c)
{
    while (c < SH_NCLASS) {
        uint64_t w = sh->bits[c / 64u] >> (c % 64u);
        if (w)
            return c + (uint32_t)__builtin_ctzll(w);
        c = (c / 64u + 1u) * 64u;
    }
    return SH_NCLASS;
}

/* ---- allocator (shard lock held, inside an operation) ---------------------- */

/* Do len bytes at off lie in the shard's carved arena?  top is read from
 * the segment, so it is checked too. */
static inline int in_arena_g(const struct sh_geo *g, const struct sh_shard *sh, uint64_t off,
                             uint64_t len)
{
    uint64_t top = sh->top;
    return off >= g->arena_off && top <= g->arena_end && off <= top && top - off >= len;
}

static int in_arena(const kvi__sh *s, const struct sh_shard *sh, uint64_t off, uint64_t len)
{
    return in_arena_g(geo(s, sh), sh, off, len);
}

/* The entry a link read from the segment names, or NULL when that is not
 * a whole entry (header, key and value inside its block) in the shard's
 * carved arena; g is the shard's geo(s, sh). */
static inline struct sh_ent *ent_in(const kvi__sh *s, const struct sh_shard *sh,
                                    const struct sh_geo *g, uint32_t idx)
{
    uint64_t off = (uint64_t)idx * SH_GRAN;
    if (!in_arena_g(g, sh, off, sizeof(struct sh_ent)))
        return NULL;
    struct sh_ent *e = ENT(s, idx);
    if (e->state != SH_USED || e->cls >= SH_NCLASS)
        return NULL;
    uint64_t blk = cls_granules(e->cls) * SH_GRAN;
    if (sizeof(*e) + (uint64_t)e->klen + e->vlen > blk || !in_arena_g(g, sh, off, blk))
        return NULL;
    return e;
}

static inline struct sh_ent *ent_at(const kvi__sh *s, const struct sh_shard *sh, uint32_t idx)
{
    return ent_in(s, sh, geo(s, sh), idx);
}

/* Refuses a damaged link: records why, undoes what the operation wrote so
 * far and marks it failed; the walk that met it stops there. */
static void bad_link(kvi__sh *s, struct sh_shard *sh, kvi__lt_op *n, const char *why)
{
    n->bad = 1;
    (void)kvi__sh_fault(s, sh, why);
}

#define WHY_LINK "a chain link points outside its shard or at no entry"
#define WHY_LOOP "a chain loops"

/* Pushes a block that nothing links to yet (a piece of a split). */
static void push_fresh(kvi__sh *s, struct sh_shard *sh, uint32_t idx, uint32_t c)
{
    struct sh_ent *e = ENT(s, idx);
    e->next = bit_get(sh, c) ? sh->heads[c] : 0u;
    e->cls = (uint8_t)c;
    e->state = SH_FREE;
    w32(s, sh, &sh->heads[c], idx);
    bit_put(s, sh, c, 1);
}

/* Gives a block back: lowers top when it is the last carved one, else
 * pushes it on its list.  The block may still be linked in the undo
 * sense (unlinked earlier in this operation), so its header is logged. */
static void block_free(kvi__sh *s, struct sh_shard *sh, uint32_t idx)
{
    struct sh_ent *e = ENT(s, idx);
    uint64_t off = (uint64_t)idx * SH_GRAN, len = cls_granules(e->cls) * SH_GRAN;
    if (off + len == sh->top) {
        w64(s, sh, &sh->top, off);
        return;
    }
    kvi__sh_log(s, sh, e, SH_FREE_HEADER);
    push_fresh(s, sh, idx, e->cls);
}

static uint32_t pop(kvi__sh *s, struct sh_shard *sh, uint32_t c)
{
    uint32_t idx = sh->heads[c];
    struct sh_ent *e = ENT(s, idx);
    if (!idx || !in_arena(s, sh, (uint64_t)idx * SH_GRAN, cls_granules(c) * SH_GRAN) ||
        e->state != SH_FREE || e->cls != c) {
        /* A damaged list: drop it rather than follow it (check counts it). */
        bit_put(s, sh, c, 0);
        return 0;
    }
    kvi__sh_log(s, sh, e, SH_FREE_HEADER);
    if (e->next)
        w32(s, sh, &sh->heads[c], e->next);
    else
        bit_put(s, sh, c, 0);
    e->state = SH_USED;
    return idx;
}

/* A block of at least need bytes, or 0 when the shard has none. */
static uint32_t block_alloc(kvi__sh *s, struct sh_shard *sh, size_t need)
{
    uint64_t g = (need + SH_GRAN - 1u) / SH_GRAN;
    uint32_t c = cls_of(g);
    if (c >= SH_NCLASS)
        return 0;
    uint64_t G = cls_granules(c);
    uint32_t idx = 0;
    if (bit_get(sh, c))
        idx = pop(s, sh, c);
    uint64_t top = sh->top, end = geo(s, sh)->arena_end;
    if (!idx && top >= geo(s, sh)->arena_off && top <= end && end - top >= G * SH_GRAN) {
        idx = (uint32_t)(top / SH_GRAN);
        w64(s, sh, &sh->top, top + G * SH_GRAN);
    }
    if (!idx) {
        uint32_t c2 = bit_next(sh, c + 1u);
        if (c2 < SH_NCLASS && (idx = pop(s, sh, c2)) != 0) {
            uint64_t rest = cls_granules(c2) - G;
            uint32_t piece = idx + (uint32_t)G;
            while (rest) {
                uint32_t pc = cls_floor(rest);
                push_fresh(s, sh, piece, pc);
                piece += (uint32_t)cls_granules(pc);
                rest -= cls_granules(pc);
            }
        }
    }
    if (idx) {
        struct sh_ent *e = ENT(s, idx);
        e->cls = (uint8_t)c;
        e->state = SH_USED;
    }
    return idx;
}

/* ---- chains (shard lock held) --------------------------------------------- */

/* Inlined where asked: the hot paths' helpers (a call of their own costs a
 * hit some 10-30 instructions). */
#if defined(__GNUC__)
#define SH_INLINE inline __attribute__((always_inline))
#else
#define SH_INLINE inline
#endif

/* The link to key's entry, or NULL (n->bad when a damaged link stopped
 * the walk). */
static SH_INLINE uint32_t *find_g(kvi__sh *s, struct sh_shard *sh, const struct sh_geo *g,
                                  uint64_t h, const void *key, size_t klen, kvi__lt_op *n)
{
    uint32_t *pp = (uint32_t *)(s->base + g->buckets_off) + (h & s->nbmask);
    uint32_t want = hash32(h);
    uint64_t steps = 0;
    while (*pp) {
        struct sh_ent *e = ent_in(s, sh, g, *pp);
        if (!e || ++steps > s->max_steps) {
            bad_link(s, sh, n, e ? WHY_LOOP : WHY_LINK);
            return NULL;
        }
        if (e->hash == want && e->klen == klen && kvi__lt_key_eq(e->data, key, klen))
            return pp;
        pp = &e->next;
    }
    return NULL;
}

static SH_INLINE uint32_t *find(kvi__sh *s, struct sh_shard *sh, uint64_t h, const void *key,
                                size_t klen, kvi__lt_op *n)
{
    return find_g(s, sh, geo(s, sh), h, key, klen, n);
}

static size_t e_block(const struct sh_ent *e)
{
    return (size_t)(cls_granules(e->cls) * SH_GRAN);
}

/* Unlinks the entry *pp points at and frees its block (part of the current
 * operation). */
static void unlink_at(kvi__sh *s, struct sh_shard *sh, uint32_t *pp)
{
    uint32_t idx = *pp;
    struct sh_ent *e = ENT(s, idx);
    w32(s, sh, pp, e->next);
    w64(s, sh, &sh->entries, sh->entries - 1u);
    w64(s, sh, &sh->bytes, sh->bytes - e->klen - e->vlen);
    w64(s, sh, &sh->memory, sh->memory - e_block(e));
    if (e_expire(e))
        w64(s, sh, &sh->expiring, sh->expiring - 1u);
    sh->changes++;
    block_free(s, sh, idx);
}

/* Removes a dead entry as an operation of its own. */
static void drop_dead(kvi__sh *s, struct sh_shard *sh, uint32_t *pp)
{
    unlink_at(s, sh, pp);
    sh->expired++;
    kvi__sh_commit(sh);
}

static SH_INLINE uint32_t *find_live_g(kvi__sh *s, struct sh_shard *sh, const struct sh_geo *g,
                                       uint64_t h, const void *key, size_t klen, kvi__lt_op *n)
{
    uint32_t *pp = find_g(s, sh, g, h, key, klen, n);
    if (pp && e_dead(ENT(s, *pp), n)) {
        drop_dead(s, sh, pp);
        pp = NULL;
    }
    return pp;
}

static SH_INLINE uint32_t *find_live(kvi__sh *s, struct sh_shard *sh, uint64_t h, const void *key,
                                     size_t klen, kvi__lt_op *n)
{
    return find_live_g(s, sh, geo(s, sh), h, key, klen, n);
}

static void touch(kvi__sh *s, struct sh_shard *sh, struct sh_ent *e)
{
    if (s->evict != KVI__LT_EVICT_LRU)
        return;
    uint64_t c = sh->lru_clock++;
    e->xl = (e->xl & ~UINT64_C(0xFFFF)) | ((c >> s->lru_shift) & UINT64_C(0xFFFF));
}

/* Looks at the next few buckets for dead entries. */
static void sweep_step(kvi__sh *s, struct sh_shard *sh, kvi__lt_op *n, size_t nbuckets)
{
    if (!sh->expiring)
        return;
    uint32_t *b = buckets(s, sh);
    for (size_t i = 0; i < nbuckets; i++) {
        uint32_t *pp = &b[sh->sweep_idx++ & s->nbmask];
        uint64_t steps = 0;
        while (*pp) {
            struct sh_ent *e = ent_at(s, sh, *pp);
            if (!e || ++steps > s->max_steps) {
                bad_link(s, sh, n, e ? WHY_LOOP : WHY_LINK);
                return;
            }
            if (e_dead(e, n))
                drop_dead(s, sh, pp);
            else
                pp = &e->next;
        }
    }
}

/* Evicts the least recently used of a few sampled entries (a dead one
 * first), as an operation of its own; 0 when the shard is empty. */
static int evict_one(kvi__sh *s, struct sh_shard *sh, kvi__lt_op *n)
{
    if (!sh->entries)
        return 0;
    uint32_t *b = buckets(s, sh);
    uint64_t clock = (sh->lru_clock >> s->lru_shift) & UINT64_C(0xFFFF);
    uint32_t *best = NULL;
    uint64_t best_age = 0;
    int found = 0;
    sh->rng ^= sh->rng << 13;
    sh->rng ^= sh->rng >> 7;
    sh->rng ^= sh->rng << 17;
    size_t start = (size_t)sh->rng;
    size_t window = 64u;
    for (size_t scanned = 0; scanned <= s->nbmask && found < SAMPLES; scanned++) {
        if (scanned >= window && best)
            break;
        for (uint32_t *pp = &b[(start + scanned) & s->nbmask]; *pp; pp = &ENT(s, *pp)->next) {
            const struct sh_ent *e = ent_at(s, sh, *pp);
            if (!e) {
                bad_link(s, sh, n, WHY_LINK);
                return 0;
            }
            uint64_t age = kvi__lt_lru_age(e_dead(e, n), clock, e->xl);
            if (!best || age > best_age) {
                best = pp;
                best_age = age;
            }
            if (++found >= SAMPLES)
                break;
        }
    }
    if (!best)
        return 0;
    if (best_age == UINT64_MAX)
        sh->expired++;
    else
        sh->evicted++;
    unlink_at(s, sh, best);
    kvi__sh_commit(sh);
    return 1;
}

/* Drops every dead entry of the shard (each its own operation). */
static void sweep_all(kvi__sh *s, struct sh_shard *sh, kvi__lt_op *n)
{
    sweep_step(s, sh, n, (size_t)s->nbmask + 1u);
}

/* Finds a block for an entry of need bytes, making room as the shard's
 * policy allows: dead entries first, then (evict=lru) LRU victims, and an
 * emptied shard starts its arena over, so that any entry up to
 * kvi__sh_max_entry fits once enough is evicted.  Evictions commit on
 * their own, so *pp (the entry being replaced, may be NULL) is looked up
 * again after them. */
static uint32_t make_room(kvi__sh *s, struct sh_shard *sh, size_t need, kvi__lt_op *n, uint64_t h,
                          const void *key, size_t klen, uint32_t **pp)
{
    int swept = 0, reset = 0;
    for (;;) {
        uint32_t idx = block_alloc(s, sh, need);
        if (idx)
            return idx;
        if (!sh->entries && !reset) {
            /* Nothing lives here: every carved byte is free, but maybe in
             * pieces too small.  Start the arena over. */
            for (uint32_t w = 0; w < (SH_NCLASS + 63u) / 64u; w++)
                if (sh->bits[w])
                    w64(s, sh, &sh->bits[w], 0);
            w64(s, sh, &sh->top, geo(s, sh)->arena_off);
            kvi__sh_commit(sh);
            reset = 1;
            continue;
        }
        if (!swept && sh->expiring) {
            sweep_all(s, sh, n);
            swept = 1;
        } else if (s->evict != KVI__LT_EVICT_LRU || !evict_one(s, sh, n)) {
            return 0;
        }
        if (n->bad)
            return 0;
        if (pp)
            *pp = find(s, sh, h, key, klen, n);
        if (n->bad)
            return 0;
    }
}

static void fill(struct sh_ent *e, uint64_t h, const void *key, size_t klen, const void *val,
                 size_t vlen, int64_t expire_ms)
{
    e->hash = hash32(h);
    e->xl = (uint64_t)expire_ms << 16;
    e->vlen = (uint32_t)vlen;
    e->klen = (uint16_t)klen;
    memcpy(e->data, key, klen);
    if (vlen)
        memcpy(e->data + klen, val, vlen);
}

/* Links the filled entry idx in place of *old (replace) or at the head of
 * its bucket, and books it. */
static void place(kvi__sh *s, struct sh_shard *sh, uint64_t h, uint32_t idx, uint32_t *old)
{
    struct sh_ent *e = ENT(s, idx);
    uint32_t *pp = old ? old : &buckets(s, sh)[h & s->nbmask];
    e->next = old ? ENT(s, *old)->next : *pp;
    if (old) {
        /* Take the old one out of the sums, then free it. */
        uint32_t oidx = *old;
        struct sh_ent *o = ENT(s, oidx);
        w32(s, sh, pp, idx);
        w64(s, sh, &sh->bytes, sh->bytes - o->klen - o->vlen);
        w64(s, sh, &sh->memory, sh->memory - e_block(o));
        if (e_expire(o))
            w64(s, sh, &sh->expiring, sh->expiring - 1u);
        block_free(s, sh, oidx);
    } else {
        w32(s, sh, pp, idx);
        w64(s, sh, &sh->entries, sh->entries + 1u);
    }
    w64(s, sh, &sh->bytes, sh->bytes + e->klen + e->vlen);
    w64(s, sh, &sh->memory, sh->memory + e_block(e));
    if (e_expire(e))
        w64(s, sh, &sh->expiring, sh->expiring + 1u);
    sh->changes++;
}

/* ---- operations ------------------------------------------------------------- */

/* ---- operation counts ---------------------------------------------------- */

/* Every operation a process's engine makes on the shared table (not the
 * snapshot's loads and saves) is counted once in the segment, so that any
 * process reads every process's figures: a key operation in its shard's
 * ops under the lock it holds (with a fetch's hit or any NOT_FOUND's miss),
 * everything else in the header's ops_other; errors of any kind in the
 * header (local.c counts them where the status is final). */

void kvi__sh_count_other(kvi__sh *s, int error)
{
    atomic_fetch_add_explicit(&s->h->ops_other, 1, memory_order_relaxed);
    if (error)
        kvi__sh_count_error(s);
}

void kvi__sh_count_error(kvi__sh *s)
{
    atomic_fetch_add_explicit(&s->h->errors, 1, memory_order_relaxed);
}

/* Counts one key operation that ended with st in its locked shard. */
static inline void sh_count(struct sh_shard *sh, kvi_status st)
{
    sh->ops++;
    if (st == KVI_NOT_FOUND)
        sh->misses++;
}

/* Hashes key and locks its shard (repairing it after a dead owner); NULL
 * with *st set when the lock cannot be recovered (the caller counts that
 * operation with kvi__sh_count_other: no shard's count holds it). */
static struct sh_shard *lock_key(kvi__sh *s, const void *key, size_t klen, uint64_t *h,
                                 kvi_status *st)
{
    *h = kvi__lt_hash(s->seed, key, klen);
    struct sh_shard *sh = shard_of(s, *h);
    __builtin_prefetch(&buckets(s, sh)[*h & s->nbmask]);
    *st = kvi__sh_lock(s, sh);
    return *st == KVI_OK ? sh : NULL;
}

/* A key's place: its shard (locked by lock_find) and the link of its live
 * entry (NULL when absent). */
struct sh_at {
    kvi__lt_op n;
    uint64_t h;
    struct sh_shard *sh;
    uint32_t *pp;
};

/* lock_key, then the key's live entry: KVI_OK with at->sh locked, or the
 * lock's error with nothing locked. */
/* (Inlined: its callers are the hot paths, and a call of its own costs a
 * hit ~30 instructions.) */
static SH_INLINE kvi_status lock_find(kvi__sh *s, const void *key, size_t klen, struct sh_at *at)
{
    kvi_status st;
    at->sh = lock_key(s, key, klen, &at->h, &st);
    if (!at->sh) {
        kvi__sh_count_other(s, 0);
        return st;
    }
    at->pp = find_live(s, at->sh, at->h, key, klen, &at->n);
    return KVI_OK;
}

/* Stores (nx: only when absent; *exists then says it was there); count:
 * an operation of the process, not a snapshot's load. */
static kvi_status sh_put(kvi__sh *s, const void *key, size_t klen, const void *val, size_t vlen,
                         int64_t expire_ms, int nx, int *exists, kvi__lt_op *n, int count)
{
    size_t need = sizeof(struct sh_ent) + klen + vlen;
    if (need > kvi__sh_max_entry(s)) {
        if (count)
            kvi__sh_count_other(s, 0);
        return KVI_E_STORE_FULL;
    }
    uint64_t h;
    kvi_status st;
    struct sh_shard *sh = lock_key(s, key, klen, &h, &st);
    if (!sh) {
        if (count)
            kvi__sh_count_other(s, 0);
        return st;
    }
    if (count)
        sh->ops++;
    uint32_t *old = find_live(s, sh, h, key, klen, n);
    if (n->bad) {
        st = KVI_E_CORRUPT;
    } else if (nx && old) {
        *exists = 1;
    } else {
        uint32_t idx = make_room(s, sh, need, n, h, key, klen, &old);
        if (!idx) {
            st = n->bad ? KVI_E_CORRUPT : KVI_E_STORE_FULL;
        } else {
            struct sh_ent *e = ENT(s, idx);
            fill(e, h, key, klen, val, vlen, expire_ms);
            touch(s, sh, e);
            place(s, sh, h, idx, old);
            kvi__sh_commit(sh);
            sweep_step(s, sh, n, 4);
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return n->bad ? KVI_E_CORRUPT : st;
}

kvi_status kvi__sh_store(kvi__sh *s, const void *key, size_t key_len, const void *val,
                         size_t val_len, int64_t expire_s)
{
    kvi__lt_op n = {.k = s->k};
    int exists = 0;
    return sh_put(s, key, key_len, val, val_len, kvi__lt_expire_at(&n, expire_s), 0, &exists, &n,
                  1);
}

kvi_status kvi__sh_store_nx(kvi__sh *s, const void *key, size_t key_len, const void *val,
                            size_t val_len, int64_t expire_s)
{
    kvi__lt_op n = {.k = s->k};
    int exists = 0;
    kvi_status st =
        sh_put(s, key, key_len, val, val_len, kvi__lt_expire_at(&n, expire_s), 1, &exists, &n, 1);
    return st == KVI_OK && exists ? KVI_KEY_EXISTS : st;
}

kvi_status kvi__sh_put_abs(kvi__sh *s, const void *key, size_t key_len, const void *val,
                           size_t val_len, int64_t expire_ms)
{
    kvi__lt_op n = {.k = s->k};
    int exists = 0;
    expire_ms = kvi__lt_clamp_abs(expire_ms);
    if (kvi__lt_dead(expire_ms, &n))
        return KVI_OK;
    return sh_put(s, key, key_len, val, val_len, expire_ms, 0, &exists, &n, 0);
}

kvi_status kvi__sh_fetch(kvi__sh *s, const void *key, size_t key_len,
                         kvi_status (*fn)(void *ud, const void *data, size_t len), void *ud)
{
    struct sh_at at = {.n = {.k = s->k}};
    kvi_status st = lock_find(s, key, key_len, &at);
    if (st != KVI_OK)
        return st;
    /* Counted per branch (as sh_count would): the hit path adds twice. */
    at.sh->ops++;
    if (at.pp) {
        struct sh_ent *e = ENT(s, *at.pp);
        touch(s, at.sh, e);
        st = fn(ud, e->data + key_len, e->vlen);
        if (st == KVI_OK)
            at.sh->hits++; /* else the value was not handed over: an error */
    } else if (at.n.bad) {
        st = KVI_E_CORRUPT;
    } else {
        st = KVI_NOT_FOUND;
        at.sh->misses++;
    }
    pthread_mutex_unlock(&at.sh->lock);
    return st;
}

kvi_status kvi__sh_remove(kvi__sh *s, const void *key, size_t key_len)
{
    struct sh_at at = {.n = {.k = s->k}};
    kvi_status st = lock_find(s, key, key_len, &at);
    if (st != KVI_OK)
        return st;
    if (at.pp) {
        unlink_at(s, at.sh, at.pp);
        kvi__sh_commit(at.sh);
        st = KVI_OK;
    } else {
        st = KVI_NOT_FOUND;
    }
    if (!at.n.bad)
        sweep_step(s, at.sh, &at.n, 4);
    if (at.n.bad)
        st = KVI_E_CORRUPT;
    sh_count(at.sh, st);
    pthread_mutex_unlock(&at.sh->lock);
    return st;
}

/* The counter update behind add and bounded add: bounded says whether
 * [min, max] applies; *refused then says it did not. */
static kvi_status sh_add(kvi__sh *s, const void *key, size_t klen, int64_t delta, int64_t expire_s,
                         int64_t min, int64_t max, int64_t *value)
{
    struct sh_at at = {.n = {.k = s->k}};
    kvi_status st = lock_find(s, key, klen, &at);
    if (st != KVI_OK)
        return st;
    int64_t result = 0;
    struct sh_ent *e = at.pp ? ENT(s, *at.pp) : NULL;
    if (at.n.bad)
        st = KVI_E_CORRUPT;
    else
        st = kvi__lt_counter_step(e != NULL, e ? e->data + klen : NULL, e ? e->vlen : 0, delta, min,
                                  max, &result);
    if (st == KVI_OK) {
        char text[24];
        size_t len = kvi_format_int64(result, text);
        if (e && len == e->vlen) {
            kvi__sh_log(s, at.sh, e->data + klen, len);
            memcpy(e->data + klen, text, len);
            at.sh->changes++;
            touch(s, at.sh, e);
        } else {
            int64_t expire_ms = e ? e_expire(e) : kvi__lt_expire_at(&at.n, expire_s);
            uint32_t idx = make_room(s, at.sh, sizeof(struct sh_ent) + klen + len, &at.n, at.h, key,
                                     klen, &at.pp);
            if (!idx) {
                st = at.n.bad ? KVI_E_CORRUPT : KVI_E_STORE_FULL;
            } else {
                /* An eviction may have taken the old counter: then it is
                 * gone and the add starts from 0 like on a missing key. */
                if (e && !at.pp) {
                    result = delta;
                    len = kvi_format_int64(result, text);
                    expire_ms = kvi__lt_expire_at(&at.n, expire_s);
                }
                struct sh_ent *ne = ENT(s, idx);
                fill(ne, at.h, key, klen, text, len, expire_ms);
                touch(s, at.sh, ne);
                place(s, at.sh, at.h, idx, at.pp);
            }
        }
        if (st == KVI_OK) {
            kvi__sh_commit(at.sh);
            sweep_step(s, at.sh, &at.n, 4);
        }
    }
    if (st == KVI_OK && at.n.bad)
        st = KVI_E_CORRUPT;
    sh_count(at.sh, st);
    pthread_mutex_unlock(&at.sh->lock);
    if ((st == KVI_OK || st == KVI_OUT_OF_BOUNDS) && value)
        *value = result;
    return st;
}

kvi_status kvi__sh_add(kvi__sh *s, const void *key, size_t key_len, int64_t delta, int64_t expire_s,
                       int64_t *new_value)
{
    return sh_add(s, key, key_len, delta, expire_s, INT64_MIN, INT64_MAX, new_value);
}

kvi_status kvi__sh_add_bounded(kvi__sh *s, const void *key, size_t key_len, int64_t delta,
                               int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    return sh_add(s, key, key_len, delta, expire_s, min, max, value);
}

kvi_status kvi__sh_counter(kvi__sh *s, const void *key, size_t key_len, int64_t *out)
{
    return kvi__sh_fetch(s, key, key_len, kvi__lt_read_counter, out);
}

kvi_status kvi__sh_ttl(kvi__sh *s, const void *key, size_t key_len, int64_t *ttl_s)
{
    struct sh_at at = {.n = {.k = s->k}};
    kvi_status st = lock_find(s, key, key_len, &at);
    if (st != KVI_OK)
        return st;
    int64_t v = -1;
    if (at.pp) {
        v = kvi__lt_ttl_s(e_expire(ENT(s, *at.pp)), &at.n);
    } else {
        st = at.n.bad ? KVI_E_CORRUPT : KVI_NOT_FOUND;
    }
    sh_count(at.sh, st);
    pthread_mutex_unlock(&at.sh->lock);
    if (st == KVI_OK)
        *ttl_s = v;
    return st;
}

/* Walks one shard: drops dead entries; for each live one matching glob
 * calls fn (when set) or, with remove, removes it. */
static kvi_status walk_shard(kvi__sh *s, struct sh_shard *sh, kvi__lt_walk *w, uint64_t *removed)
{
    kvi__lt_op *n = w->op;
    uint32_t *b = buckets(s, sh);
    for (uint64_t i = 0; i <= s->nbmask; i++) {
        uint32_t *pp = &b[i];
        uint64_t steps = 0;
        while (*pp) {
            struct sh_ent *e = ent_at(s, sh, *pp);
            if (!e || ++steps > s->max_steps) {
                bad_link(s, sh, n, e ? WHY_LOOP : WHY_LINK);
                return KVI_E_CORRUPT;
            }
            switch (
                kvi__lt_walk_step(w, e->data, e->klen, e->data + e->klen, e->vlen, e_expire(e))) {
            case KVI__LT_DROP:
                drop_dead(s, sh, pp);
                break;
            case KVI__LT_TAKE:
                unlink_at(s, sh, pp);
                kvi__sh_commit(sh);
                (*removed)++;
                break;
            case KVI__LT_STOP:
                return w->st;
            case KVI__LT_NEXT:
                pp = &e->next;
                break;
            }
        }
    }
    return KVI_OK;
}

/* Walks every shard (see walk_shard). A shard whose lock cannot be
 * recovered ends a foreach (its error returned) and is skipped by a
 * remove (keep_going). */
static kvi_status walk_all(kvi__sh *s, const char *glob, size_t glob_len,
                           kvi_status (*fn)(void *, const void *, size_t, const void *, size_t,
                                            int64_t),
                           void *ud, uint64_t *removed, int keep_going)
{
    kvi__lt_op n = {.k = s->k};
    kvi__lt_walk w = {glob, glob_len, fn, ud, &n, KVI_OK};
    kvi_status st = KVI_OK;
    for (uint32_t i = 0; i < SH_SHARDS && st == KVI_OK; i++) {
        struct sh_shard *sh = &s->shards[i];
        st = kvi__sh_lock(s, sh);
        if (st != KVI_OK) {
            if (keep_going)
                st = KVI_OK;
            continue;
        }
        if (sh->entries)
            st = walk_shard(s, sh, &w, removed);
        pthread_mutex_unlock(&sh->lock);
        if (st == KVI_E_CORRUPT && keep_going)
            st = KVI_OK; /* the damaged shard is skipped, the fault recorded */
    }
    return st;
}

kvi_status kvi__sh_foreach(kvi__sh *s, const char *glob, size_t glob_len,
                           kvi_status (*fn)(void *ud, const void *key, size_t key_len,
                                            const void *val, size_t val_len, int64_t expire_ms),
                           void *ud)
{
    return walk_all(s, glob, glob_len, fn, ud, NULL, 0);
}

void kvi__sh_remove_chunk(kvi__sh *s, const char *glob, size_t glob_len, uint64_t *removed)
{
    uint64_t count = 0;
    (void)walk_all(s, glob, glob_len, NULL, NULL, &count, 1);
    *removed = count;
}

static inline uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static inline uint64_t at_most(uint64_t v, uint64_t max)
{
    return v < max ? v : max;
}

/* Sums every shard's figures.  The counts are read without the locks, from
 * a segment other processes write (and a damaged one may hold anything), so
 * each shard's are clamped to what can be true (hits + misses <= ops) and
 * the sums saturate: the totals stay consistent (hits + misses + errors <=
 * ops) whatever the segment holds, and the hit ratio within 0..1. */
void kvi__sh_stats_get(kvi__sh *s, kvi__lt_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->shared = 1;
    for (uint32_t i = 0; i < SH_SHARDS; i++) {
        const struct sh_shard *sh = &s->shards[i];
        out->entries = sat_add(out->entries, __atomic_load_n(&sh->entries, __ATOMIC_RELAXED));
        out->bytes = sat_add(out->bytes, __atomic_load_n(&sh->bytes, __ATOMIC_RELAXED));
        out->memory = sat_add(out->memory, __atomic_load_n(&sh->memory, __ATOMIC_RELAXED));
        out->expired = sat_add(out->expired, __atomic_load_n(&sh->expired, __ATOMIC_RELAXED));
        out->evicted = sat_add(out->evicted, __atomic_load_n(&sh->evicted, __ATOMIC_RELAXED));
        uint64_t ops = __atomic_load_n(&sh->ops, __ATOMIC_RELAXED);
        uint64_t hits = at_most(__atomic_load_n(&sh->hits, __ATOMIC_RELAXED), ops);
        uint64_t misses = at_most(__atomic_load_n(&sh->misses, __ATOMIC_RELAXED), ops - hits);
        out->ops = sat_add(out->ops, ops);
        out->hits = sat_add(out->hits, hits);
        out->misses = sat_add(out->misses, misses);
    }
    out->ops = sat_add(out->ops, atomic_load_explicit(&s->h->ops_other, memory_order_relaxed));
    /* Saturated sums may break hits + misses <= ops: clamp once more. */
    out->hits = at_most(out->hits, out->ops);
    out->misses = at_most(out->misses, out->ops - out->hits);
    out->errors = at_most(atomic_load_explicit(&s->h->errors, memory_order_relaxed),
                          out->ops - out->hits - out->misses);
}

uint64_t kvi__sh_changes(kvi__sh *s)
{
    uint64_t c = 0;
    for (uint32_t i = 0; i < SH_SHARDS; i++)
        c += __atomic_load_n(&s->shards[i].changes, __ATOMIC_RELAXED);
    return c;
}

/* ---- structure check -------------------------------------------------------- */

static kvi_status bad(char *err, size_t err_len, uint32_t shard, const char *what,
                      unsigned long long a)
{
    snprintf(err, err_len, "shard %u: %s (%llu)", shard, what, a);
    return KVI_E_CORRUPT;
}

static kvi_status check_shard(kvi__sh *s, struct sh_shard *sh, uint32_t si, char *err,
                              size_t err_len)
{
    if (sh->log_n != 0)
        return bad(err, err_len, si, "undo log not empty under the lock", sh->log_n);
    uint64_t limit = (geo(s, sh)->arena_end - geo(s, sh)->arena_off) / SH_GRAN + 1u;
    uint64_t entries = 0, bytes = 0, memory = 0, expiring = 0, steps = 0, free_bytes = 0;
    uint32_t *b = buckets(s, sh);
    for (uint64_t i = 0; i <= s->nbmask; i++) {
        for (uint32_t idx = b[i]; idx; idx = ENT(s, idx)->next) {
            const struct sh_ent *e = ENT(s, idx);
            if (++steps > limit)
                return bad(err, err_len, si, "chain loops, bucket", i);
            if (!in_arena(s, sh, (uint64_t)idx * SH_GRAN, sizeof(*e)) || e->state != SH_USED ||
                e->cls >= SH_NCLASS)
                return bad(err, err_len, si, "chain points at a block that is not an entry", idx);
            if (e->klen == 0 || e->klen > KVI_MAX_KEY_LEN ||
                sizeof(*e) + e->klen + e->vlen > e_block(e) ||
                !in_arena(s, sh, (uint64_t)idx * SH_GRAN, e_block(e)))
                return bad(err, err_len, si, "entry lengths do not fit its block", idx);
            uint64_t h = kvi__lt_hash(s->seed, e->data, e->klen);
            if (shard_of(s, h) != sh || (h & s->nbmask) != i || hash32(h) != e->hash)
                return bad(err, err_len, si, "entry in the wrong chain", idx);
            entries++;
            bytes += e->klen + e->vlen;
            memory += e_block(e);
            if (e_expire(e))
                expiring++;
        }
    }
    if (entries != sh->entries || bytes != sh->bytes || memory != sh->memory ||
        expiring != sh->expiring)
        return bad(err, err_len, si, "sums differ from the chains; entries counted", entries);
    steps = 0;
    for (uint32_t c = 0; c < SH_NCLASS; c++) {
        if (!bit_get(sh, c))
            continue;
        for (uint32_t idx = sh->heads[c]; idx; idx = ENT(s, idx)->next) {
            const struct sh_ent *e = ENT(s, idx);
            if (++steps > limit)
                return bad(err, err_len, si, "free list loops, class", c);
            if (!in_arena(s, sh, (uint64_t)idx * SH_GRAN, cls_granules(c) * SH_GRAN) ||
                e->state != SH_FREE || e->cls != c)
                return bad(err, err_len, si, "free list holds a bad block", idx);
            free_bytes += cls_granules(c) * SH_GRAN;
        }
    }
    if (memory + free_bytes != sh->top - geo(s, sh)->arena_off)
        return bad(err, err_len, si, "used + free bytes differ from the carved bytes (a leak)",
                   sh->top - geo(s, sh)->arena_off - memory - free_bytes);
    return KVI_OK;
}

kvi_status kvi__sh_check(kvi__sh *s, char *err, size_t err_len)
{
    for (uint32_t i = 0; i < SH_SHARDS; i++) {
        struct sh_shard *sh = &s->shards[i];
        kvi_status st = kvi__sh_lock(s, sh);
        if (st != KVI_OK) {
            snprintf(err, err_len, "shard %u: lock cannot be recovered", i);
            return st;
        }
        st = check_shard(s, sh, i, err, err_len);
        pthread_mutex_unlock(&sh->lock);
        if (st != KVI_OK)
            return st;
    }
    return KVI_OK;
}

void kvi__sh_info_get(kvi__sh *s, kvi__sh_info *out)
{
    memset(out, 0, sizeof(*out));
    out->size = s->size;
    out->arena = s->h->arena_bytes * SH_SHARDS;
    for (uint32_t i = 0; i < SH_SHARDS; i++) {
        const struct sh_shard *sh = &s->shards[i];
        uint64_t top = __atomic_load_n(&sh->top, __ATOMIC_RELAXED);
        if (top > s->geo[i].arena_off)
            out->carved += top - s->geo[i].arena_off;
    }
    out->repairs = atomic_load_explicit(&s->h->repairs, memory_order_relaxed);
    out->max_entry = kvi__sh_max_entry(s);
    out->attached = kvi__sh_attached(s);
}

/* ---- the table interface (local.h): the shared instance ------------------ */
static kvi_status op_store(void *self, const void *key, size_t key_len, const void *val,
                           size_t val_len, int64_t expire_s)
{
    return kvi__sh_store(self, key, key_len, val, val_len, expire_s);
}

static kvi_status op_store_nx(void *self, const void *key, size_t key_len, const void *val,
                              size_t val_len, int64_t expire_s)
{
    return kvi__sh_store_nx(self, key, key_len, val, val_len, expire_s);
}

static kvi_status op_put_abs(void *self, const void *key, size_t key_len, const void *val,
                             size_t val_len, int64_t expire_ms)
{
    return kvi__sh_put_abs(self, key, key_len, val, val_len, expire_ms);
}

static kvi_status op_fetch(void *self, const void *key, size_t key_len, kvi__lt_value_fn fn,
                           void *ud)
{
    return kvi__sh_fetch(self, key, key_len, fn, ud);
}

/* A batch's cache warming, a few shards ahead of the one it works on
 * (measured: ~5% of a batch's time at 1000 keys): the buckets of the keys
 * of shard x, two shards ahead ... */
static inline void prefetch_buckets(const kvi__sh *s, size_t x, const int16_t *head,
                                    const int16_t *next, const uint64_t *h)
{
    const uint32_t *bk = (const uint32_t *)(s->base + s->geo[x].buckets_off);
    for (int16_t j = head[x]; j >= 0; j = next[j])
        __builtin_prefetch(&bk[h[j] & s->nbmask]);
}

/* ... then, one shard ahead, the shard's lock line (to be written) and the
 * first entry of each key's chain.  The bucket words are read without the
 * lock, so a racing writer may change them: they are only prefetched,
 * never followed (the walk under the lock checks every link); the range
 * test keeps the prefetched address inside the shard's arena. */
static inline void prefetch_shard(const kvi__sh *s, size_t x, const int16_t *head,
                                  const int16_t *next, const uint64_t *h)
{
    const struct sh_geo *g = &s->geo[x];
    const uint32_t *bk = (const uint32_t *)(s->base + g->buckets_off);
    __builtin_prefetch(&s->shards[x].lock, 1);
    for (int16_t j = head[x]; j >= 0; j = next[j]) {
        uint64_t off = (uint64_t)__atomic_load_n(&bk[h[j] & s->nbmask], __ATOMIC_RELAXED) * SH_GRAN;
        if (off >= g->arena_off && off + 64u <= g->arena_end) {
            __builtin_prefetch(s->base + off);
            __builtin_prefetch(s->base + off + 40u); /* a 16-byte key's end */
        }
    }
}

/* Both, for the shards after met[k]. */
static inline void prefetch_ahead(const kvi__sh *s, const uint8_t *met, size_t nmet, size_t k,
                                  const int16_t *head, const int16_t *next, const uint64_t *h)
{
    if (k + 2 < nmet)
        prefetch_buckets(s, met[k + 2], head, next, h);
    if (k + 1 < nmet)
        prefetch_shard(s, met[k + 1], head, next, h);
}

/* Adds a batch's keys of one shard to its counts (under its lock or in a
 * transaction), as kvi__sh_fetch counts each; returns misses. */
static inline uint64_t count_keys(struct sh_shard *sh, uint64_t ops, uint64_t hits,
                                  uint64_t misses)
{
    sh->ops += ops;
    sh->hits += hits;
    sh->misses += misses;
    return misses;
}

/* Shards per transaction: ~2 keys each at 100 keys per batch. */
#define SH_ELIDE_SHARDS 16u

/* ---- lock elision for a batch's fetches ------------------------------------ */

/* 1: try transactions, 0: never, -1: not decided yet (the CPU is asked
 * once).  kvi__sh_elide can turn it off (tests, a suspected CPU bug). */
static _Atomic int elide_mode = -1;
static _Atomic uint64_t elided; /* transactions committed (process-wide) */

void kvi__sh_elide(int on)
{
    atomic_store_explicit(&elide_mode, on ? -1 : 0, memory_order_relaxed);
}

uint64_t kvi__sh_elided(void)
{
    return atomic_load_explicit(&elided, memory_order_relaxed);
}

#if SH_ELIDE
static int elide_ok(void)
{
    int m = atomic_load_explicit(&elide_mode, memory_order_relaxed);
    if (m < 0) {
        unsigned a = 0, b = 0, c = 0, d = 0;
        /* RTM, and not RTM_ALWAYS_ABORT (microcode that makes every
         * transaction abort while still reporting RTM). */
        m = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 11)) != 0 &&
            (d & (1u << 11)) == 0;
        atomic_store_explicit(&elide_mode, m, memory_order_relaxed);
    }
    return m;
}
#else
static int elide_ok(void)
{
    return 0;
}
#endif

int kvi__sh_can_elide(void)
{
    return elide_ok();
}

#if SH_ELIDE

/* Ends the keys of the shards met[k0..k1) in one hardware transaction
 * instead of taking their locks.  Each shard's lock word is read, so a
 * process that takes the lock meanwhile aborts the transaction, and must
 * be free, with no owner either (glibc writes the owner after the lock
 * word; a lock that cannot be recovered keeps one).  A log left under a
 * lock released normally holds no pending write (kvi__sh_lock only clears
 * it), so readers may ignore it.  The keys are looked up with every check
 * of the locked path; anything but a plain found or missing key (a damaged
 * link, an expiry before the clock was read or a dead entry, a value the
 * batch's memory has no room left for: no allocation in a transaction)
 * aborts.  1: committed, all those keys ended and counted as under the
 * locks; 0: aborted, nothing written, the caller takes the locks (and
 * repairs a dead owner's); 2: aborted for want of room in the CPU's
 * transaction buffers (long values): the caller tries fewer shards.  A process that dies inside a transaction
 * leaves nothing to repair: its writes never happened. */
__attribute__((target("rtm"), noinline)) static int
visit_elided(kvi__sh *s, const uint8_t *met, size_t nmet, size_t k0, size_t k1, const int16_t *head,
             const int16_t *next, const uint64_t *h, kvi_batch_op *const *cops,
             kvi__batch_sink *out, const kvi__lt_op *now, size_t *nmiss)
{
    /* Copies the transaction works on (in registers or its own frame):
     * written back only once it commits. */
    kvi__batch_sink o = *out;
    kvi__lt_op n = *now;
    uint64_t missed = 0;
    unsigned st = _xbegin();
    if (st != _XBEGIN_STARTED)
        return (st & _XABORT_CAPACITY) ? 2 : 0;
    for (size_t k = k0; k < k1; k++) {
        size_t x = met[k];
        /* Read ahead only within the span: prefetch_shard loads bucket
         * words, which would put a shard outside it in the read set (a
         * writer there would abort this transaction). */
        if (k + 2 < nmet)
            prefetch_buckets(s, met[k + 2], head, next, h);
        if (k + 1 < k1)
            prefetch_shard(s, met[k + 1], head, next, h);
        struct sh_shard *sh = &s->shards[x];
        if (sh->lock.__data.__lock != 0 || sh->lock.__data.__owner != 0)
            _xabort(1);
        const struct sh_geo *g = &s->geo[x];
        uint64_t nops = 0, nhits = 0, nmisses = 0;
        for (int16_t j = head[x]; j >= 0; j = next[j]) {
            kvi_batch_op *op = cops[j];
            size_t klen = op->key_len;
            n.bad = 0;
            uint32_t *pp = find_g(s, sh, g, h[j], op->key, klen, &n);
            if (n.bad)
                _xabort(2);
            nops++;
            if (pp) {
                struct sh_ent *e = ENT(s, *pp);
                int64_t exp = e_expire(e);
                if (exp != 0 && (!n.have || n.ms >= exp))
                    _xabort(3);
                if ((size_t)(o.end - o.p) <= e->vlen)
                    _xabort(4);
                touch(s, sh, e);
                char *v = kvi__batch_sink_put(&o, e->data + klen, e->vlen);
                nhits++;
                kvi__batch_op_found(op, v, e->vlen);
            } else {
                nmisses++;
                kvi__batch_op_missing(op);
            }
        }
        missed += count_keys(sh, nops, nhits, nmisses);
    }
    _xend();
    *out = o;
    *nmiss += missed;
    return 1;
}
#endif

/* A batch's run of fetches (kvi__lt_fetch_ops's contract, local.h): in
 * chunks of 256, the keys are hashed and listed per shard, then each shard
 * met is locked once for all its keys (the next shards' lines prefetched
 * meanwhile).  Each key
 * ends as kvi__sh_fetch would end it (counted, touched, KVI_E_CORRUPT on a
 * damaged link), and a shard whose lock cannot be recovered fails its keys
 * with that lock's status.  The clock is read once per call. */
static size_t op_fetch_ops(void *self, kvi_batch_op *const *ops, size_t n, kvi__batch_sink *sink,
                           size_t *misses)
{
    size_t open = 0, nmiss = 0, commits = 0;
    kvi__sh *s = self;
    enum { CHUNK = 256 };
    uint64_t h[CHUNK];
    int16_t next[CHUNK], head[SH_SHARDS];
    kvi__lt_op now = {.k = s->k};
#if SH_ELIDE
    /* A transaction cannot read the clock: read it first, or every key
     * with an expiry would abort its span to the locks. */
    if (elide_ok())
        (void)kvi__lt_now(&now);
#endif
    kvi__batch_sink out = *sink; /* in registers: the ops' stores cannot alias it */
    for (size_t base = 0; base < n; base += CHUNK) {
        size_t m = n - base < CHUNK ? n - base : CHUNK;
        kvi_batch_op *const *cops = ops + base;
        for (size_t i = 0; i < SH_SHARDS; i++)
            head[i] = -1;
        for (size_t i = m; i-- > 0;) {
            h[i] = kvi__lt_hash(s->seed, cops[i]->key, cops[i]->key_len);
            size_t x = (size_t)(h[i] >> 58) & (SH_SHARDS - 1u);
            next[i] = head[x];
            head[x] = (int16_t)i;
        }
        uint8_t met[SH_SHARDS];
        size_t nmet = 0;
        for (size_t x = 0; x < SH_SHARDS; x++)
            if (head[x] >= 0)
                met[nmet++] = (uint8_t)x;
        for (size_t k = 0; k < 2 && k < nmet; k++)
            prefetch_buckets(s, met[k], head, next, h);
        if (nmet)
            prefetch_shard(s, met[0], head, next, h);
#if SH_ELIDE
        size_t locked_until = 0; /* met[k] for k below it: by the locks */
        size_t span = SH_ELIDE_SHARDS; /* shards per transaction (halved on capacity aborts) */
#endif
        for (size_t k = 0; k < nmet; k++) {
#if SH_ELIDE
            while (k >= locked_until && elide_ok()) {
                size_t k1 = k + span < nmet ? k + span : nmet;
                int r = visit_elided(s, met, nmet, k, k1, head, next, h, cops, &out, &now, &nmiss);
                if (r == 1) {
                    commits++;
                    k = k1;
                    if (k >= nmet)
                        break;
                } else if (r == 2 && span > 1) {
                    span /= 2; /* the same shards again, fewer at a time */
                } else {
                    locked_until = k1;
                }
            }
            if (k >= nmet)
                break;
#endif
            size_t x = met[k];
            prefetch_ahead(s, met, nmet, k, head, next, h);
            struct sh_shard *sh = &s->shards[x];
            kvi_status lst = kvi__sh_lock(s, sh);
            if (lst != KVI_OK) {
                for (int16_t j = head[x]; j >= 0; j = next[j]) {
                    kvi__sh_count_other(s, 0);
                    cops[j]->status = lst; /* left open */
                    open++;
                }
                continue;
            }
            const struct sh_geo *g = &s->geo[x];
            /* Each key counted as kvi__sh_fetch counts it, the shard's
             * counters written once (still under its lock). */
            uint64_t nops = 0, nhits = 0, nmisses = 0;
            for (int16_t j = head[x]; j >= 0; j = next[j]) {
                kvi_batch_op *op = cops[j];
                size_t klen = op->key_len;
                now.bad = 0;
                uint32_t *pp = find_live_g(s, sh, g, h[j], op->key, klen, &now);
                nops++;
                if (pp) {
                    struct sh_ent *e = ENT(s, *pp);
                    touch(s, sh, e);
                    char *v = kvi__batch_sink_put(&out, e->data + klen, e->vlen);
                    if (v == NULL) {
                        op->status = KVI_E_NOMEM; /* left open */
                        open++;
                    } else {
                        nhits++;
                        kvi__batch_op_found(op, v, e->vlen);
                    }
                } else if (now.bad) {
                    op->status = KVI_E_CORRUPT; /* left open */
                    open++;
                } else {
                    nmisses++;
                    kvi__batch_op_missing(op);
                }
            }
            nmiss += count_keys(sh, nops, nhits, nmisses);
            pthread_mutex_unlock(&sh->lock);
        }
    }
    if (commits != 0)
        atomic_fetch_add_explicit(&elided, commits, memory_order_relaxed);
    *sink = out;
    *misses += nmiss;
    return open;
}

static kvi_status op_remove(void *self, const void *key, size_t key_len)
{
    return kvi__sh_remove(self, key, key_len);
}

static kvi_status op_add(void *self, const void *key, size_t key_len, int64_t delta,
                         int64_t expire_s, int64_t *new_value)
{
    return kvi__sh_add(self, key, key_len, delta, expire_s, new_value);
}

static kvi_status op_add_bounded(void *self, const void *key, size_t key_len, int64_t delta,
                                 int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    return kvi__sh_add_bounded(self, key, key_len, delta, expire_s, min, max, value);
}

static kvi_status op_counter(void *self, const void *key, size_t key_len, int64_t *out)
{
    return kvi__sh_counter(self, key, key_len, out);
}

static kvi_status op_ttl(void *self, const void *key, size_t key_len, int64_t *ttl_s)
{
    return kvi__sh_ttl(self, key, key_len, ttl_s);
}

static kvi_status op_foreach(void *self, const char *glob, size_t glob_len, kvi__lt_entry_fn fn,
                             void *ud)
{
    return kvi__sh_foreach(self, glob, glob_len, fn, ud);
}

static void op_remove_chunk(void *self, const char *glob, size_t glob_len, uint64_t *removed)
{
    kvi__sh_remove_chunk(self, glob, glob_len, removed);
}

static void op_stats_get(void *self, kvi__lt_stats *out)
{
    kvi__sh_stats_get(self, out);
}

static uint64_t op_changes(void *self)
{
    return kvi__sh_changes(self);
}

const kvi__tab_ops kvi__sh_ops = {
    .name = "shm",
    .store = op_store,
    .store_nx = op_store_nx,
    .put_abs = op_put_abs,
    .fetch = op_fetch,
    .fetch_ops = op_fetch_ops,
    .remove = op_remove,
    .add = op_add,
    .add_bounded = op_add_bounded,
    .counter = op_counter,
    .ttl = op_ttl,
    .foreach = op_foreach,
    .remove_chunk = op_remove_chunk,
    .stats_get = op_stats_get,
    .changes = op_changes,
};
