/*
 * table.c -- the sharded, incrementally rehashed hash table behind the
 * local engine (see local.h for the picture).
 *
 * Invariants, per shard and under its mutex:
 *  - ht[1].b != NULL exactly while a rehash runs; then every bucket of
 *    ht[0] below rehash_idx is empty and new entries go to ht[1].
 *  - bytes, memory and expiring are the sums over the entries linked in
 *    ht[0] and ht[1] (memory also counts the bucket arrays).
 *  - An entry whose expiry is <= now is dead: no operation returns it, and
 *    whoever meets it under the lock unlinks it.
 */
#include "engines/local/local.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* A link to an entry (bucket heads and `next` fields): the entry's address;
 * where user addresses leave the top 16 bits zero (64-bit x86 and ARM),
 * the entry's 16-bit hash tag in those bits, so that a lookup rejects most
 * non-matching entries without loading them; and in bit 0 the flag "the
 * entry may have a successor", so that a miss on the last entry of a chain
 * does not load it either.  The flag is exact when the link is made and can
 * only go stale towards 1 (an entry never gets a successor after it is
 * linked: inserts go to the chain head), which merely costs a load. */
typedef uintptr_t lt_ref;

/* One allocation per entry: header, key bytes, value bytes. */
struct lt_entry {
    lt_ref next;
    uint64_t w0; /* expire_ms (48 bits, 0 = none) << 16 | key_len (11 bits) << 5 */
    uint64_t w1; /* val_len << 32 | tag (16 bits) << 16 | lru (16 bits) */
    unsigned char data[];
};

struct lt_ht {
    lt_ref *b;   /* NULL: no buckets yet */
    size_t mask; /* buckets - 1 */
    size_t used; /* entries linked here */
};

struct lt_shard {
    _Alignas(64) pthread_mutex_t lock;
    struct lt_ht ht[2];
    size_t rehash_idx; /* next bucket of ht[0] to move */
    size_t sweep_idx;  /* next bucket of ht[0] the sweep looks at */
    uint64_t expiring; /* entries with an expiry */
    uint64_t bytes;
    uint64_t memory;
    uint64_t hits;
    uint64_t expired;
    uint64_t evicted;
    uint64_t changes;
    uint64_t rng;
};

struct kvi__lt {
    kvi *k;
    kvi__lt_config cfg;
    uint64_t seed;
    unsigned lru_shift;
    _Atomic uint64_t used; /* memory, maintained only with max_memory */
    _Atomic uint64_t lru_clock;
    _Atomic uint64_t evict_cursor;
    void *raw; /* allocation holding this struct and the shards */
    struct lt_shard *shards;
};

/* Where an entry is linked: the pointer that points at it and its table. */
struct lt_loc {
    lt_ref *pp;
    int which;
};

#define LT_HEADER ((size_t)sizeof(struct lt_entry))
#define LT_MALLOC_WORD 8u
#define LT_INITIAL_BUCKETS 16u
#define LT_SAMPLES 5
#define LT_TAG(h) (((h) >> 32) & UINT64_C(0xFFFF))
#define LT_SHARD_OF(h) ((size_t)((h) >> 58) & (KVI__LT_SHARDS - 1u))

#if (defined(__x86_64__) || defined(__aarch64__)) && UINTPTR_MAX == UINT64_MAX &&                  \
    !defined(__SANITIZE_HWADDRESS__) && !defined(__ARM_FEATURE_MEMORY_TAGGING)
#define LT_REF_TAG_SHIFT 48u
#define LT_REF_TAG_MASK (~(uintptr_t)0 << LT_REF_TAG_SHIFT)
#define LT_REF_TAG_OF(tag) ((uintptr_t)(tag) << LT_REF_TAG_SHIFT)
#else
/* Elsewhere links carry no tag and lookups compare the entry's copy. */
#define LT_REF_TAG_MASK ((uintptr_t)0)
#define LT_REF_TAG_OF(tag) ((uintptr_t)0 & (uintptr_t)(tag))
#endif
#define LT_REF_MORE ((uintptr_t)1)
#define LT_REF_ADDR_MASK (~(LT_REF_TAG_MASK | LT_REF_MORE))

_Static_assert(sizeof(struct lt_entry) == 24, "entry header must stay 24 bytes");
_Static_assert(KVI__LT_SHARDS == 64u, "LT_SHARD_OF takes the top 6 bits");

/* ---------------------------------------------------------------------- */
/* Small helpers                                                            */

static inline int64_t e_expire(const struct lt_entry *e)
{
    return (int64_t)(e->w0 >> 16);
}

static inline size_t e_klen(const struct lt_entry *e)
{
    return (size_t)((e->w0 >> 5) & 0x7FFu);
}

static inline size_t e_vlen(const struct lt_entry *e)
{
    return (size_t)(e->w1 >> 32);
}

static inline uint64_t e_tag(const struct lt_entry *e)
{
    return (e->w1 >> 16) & UINT64_C(0xFFFF);
}

static inline struct lt_entry *r_entry(lt_ref r)
{
    return (struct lt_entry *)(r & LT_REF_ADDR_MASK);
}

/* The link to e as it is about to be stored (e->next already set). */
static inline lt_ref r_make(struct lt_entry *e)
{
    return (uintptr_t)e | LT_REF_TAG_OF(e_tag(e)) | (e->next ? LT_REF_MORE : 0);
}

/* Can this allocation be linked (no bits where links keep the tag and the
 * flag)?  Always true of malloc on the platforms that tag; checked anyway
 * because the context's allocator is the caller's. */
static inline int r_fits(const void *p)
{
    return ((uintptr_t)p & ~LT_REF_ADDR_MASK) == 0;
}

static inline size_t e_cost(const struct lt_entry *e)
{
    return kvi__lt_entry_cost(e_klen(e), e_vlen(e));
}

static inline int e_dead(const struct lt_entry *e, kvi__lt_op *n)
{
    return kvi__lt_dead(e_expire(e), n);
}

static inline uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

size_t kvi__lt_entry_cost(size_t key_len, size_t val_len)
{
    return LT_HEADER + key_len + val_len + LT_MALLOC_WORD;
}

static void lt_charge(kvi__lt *t, struct lt_shard *sh, size_t add, size_t sub)
{
    sh->memory += add;
    sh->memory -= sub;
    if (t->cfg.max_memory) {
        if (add > sub)
            atomic_fetch_add_explicit(&t->used, add - sub, memory_order_relaxed);
        else if (sub > add)
            atomic_fetch_sub_explicit(&t->used, sub - add, memory_order_relaxed);
    }
}

/* Would charging `add - sub` more bytes pass max_memory? */
static int lt_over(kvi__lt *t, size_t add, size_t sub)
{
    if (!t->cfg.max_memory || add <= sub)
        return 0;
    uint64_t used = atomic_load_explicit(&t->used, memory_order_relaxed);
    return used + (add - sub) > t->cfg.max_memory;
}

static void lt_touch(kvi__lt *t, struct lt_entry *e)
{
    if (t->cfg.evict != KVI__LT_EVICT_LRU)
        return;
    uint64_t c = atomic_fetch_add_explicit(&t->lru_clock, 1, memory_order_relaxed);
    e->w1 = (e->w1 & ~UINT64_C(0xFFFF)) | ((c >> t->lru_shift) & UINT64_C(0xFFFF));
}

static struct lt_entry *lt_entry_new(kvi__lt *t, const void *key, size_t klen, const void *val,
                                     size_t vlen, int64_t expire_ms, uint64_t h)
{
    struct lt_entry *e = kvi__malloc(t->k, LT_HEADER + klen + vlen);
    if (!e)
        return NULL;
    if (!r_fits(e)) {
        /* The caller's allocator gave a block no link can hold: to the
         * table that is memory it cannot use. */
        kvi__free(t->k, e);
        return NULL;
    }
    e->next = 0;
    e->w0 = ((uint64_t)expire_ms << 16) | ((uint64_t)klen << 5);
    e->w1 = ((uint64_t)vlen << 32) | (LT_TAG(h) << 16);
    memcpy(e->data, key, klen);
    if (vlen)
        memcpy(e->data + klen, val, vlen);
    return e;
}

/* Frees a chain of entries: a bucket's or a list of dead ones (whose links
 * are plain addresses). */
static void lt_free_list(kvi__lt *t, lt_ref r)
{
    while (r) {
        struct lt_entry *e = r_entry(r);
        r = e->next;
        kvi__free(t->k, e);
    }
}

/* Puts an unlinked entry on a list of dead ones to free after unlocking. */
static inline void lt_bury(lt_ref *dead, struct lt_entry *e)
{
    e->next = *dead;
    *dead = (uintptr_t)e;
}

/* ---------------------------------------------------------------------- */
/* Shard internals (shard lock held)                                        */

/* The link to key's entry in the chain of bucket idx of ht, or NULL. */
static inline __attribute__((always_inline)) lt_ref *
lt_find_in(struct lt_ht *ht, size_t idx, uint64_t h, const void *key, size_t klen)
{
    uint64_t tag = LT_TAG(h);
    lt_ref want = LT_REF_TAG_OF(tag);
    lt_ref *pp = &ht->b[idx];
    for (lt_ref r = *pp; r; r = *pp) {
        const struct lt_entry *e = r_entry(r);
        if ((r & LT_REF_TAG_MASK) == want && e_tag(e) == tag && e_klen(e) == klen &&
            kvi__lt_key_eq(e->data, key, klen))
            return pp;
        if (!(r & LT_REF_MORE))
            break;
        pp = &r_entry(r)->next;
    }
    return NULL;
}

static inline __attribute__((always_inline)) struct lt_loc lt_find(struct lt_shard *sh, uint64_t h,
                                                                   const void *key, size_t klen)
{
    struct lt_loc loc = {NULL, 0};
    for (int i = 0; i < 2; i++) {
        struct lt_ht *ht = &sh->ht[i];
        if (!ht->b)
            break;
        size_t idx = (size_t)h & ht->mask;
        if (i == 0 && sh->ht[1].b && idx < sh->rehash_idx)
            continue; /* that bucket already moved to ht[1] */
        lt_ref *pp = lt_find_in(ht, idx, h, key, klen);
        if (pp) {
            loc.pp = pp;
            loc.which = i;
            return loc;
        }
    }
    return loc;
}

/* Unlinks the entry at loc and takes it out of the shard's sums; the caller
 * frees it (after unlocking). */
static struct lt_entry *lt_unlink(kvi__lt *t, struct lt_shard *sh, struct lt_loc loc)
{
    struct lt_entry *e = r_entry(*loc.pp);
    *loc.pp = e->next;
    e->next = 0;
    sh->ht[loc.which].used--;
    sh->changes++;
    sh->bytes -= e_klen(e) + e_vlen(e);
    if (e_expire(e))
        sh->expiring--;
    lt_charge(t, sh, 0, e_cost(e));
    return e;
}

/* Puts entry e in place of the one at loc (same key); returns the old one. */
static struct lt_entry *lt_replace(kvi__lt *t, struct lt_shard *sh, struct lt_loc loc,
                                   struct lt_entry *e)
{
    struct lt_entry *old = r_entry(*loc.pp);
    e->next = old->next;
    *loc.pp = r_make(e);
    old->next = 0;
    sh->changes++;
    sh->bytes += e_klen(e) + e_vlen(e);
    sh->bytes -= e_klen(old) + e_vlen(old);
    if (e_expire(e))
        sh->expiring++;
    if (e_expire(old))
        sh->expiring--;
    lt_charge(t, sh, e_cost(e), e_cost(old));
    return old;
}

/* Sets the bucket array of ht[0].  Its address and mask are stored
 * atomically because lt_prefetch reads them without the lock. */
static void lt_set_main(struct lt_shard *sh, lt_ref *b, size_t mask)
{
    __atomic_store_n(&sh->ht[0].b, b, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->ht[0].mask, mask, __ATOMIC_RELAXED);
}

/* Starts loading the ht[0] bucket of hash h into the cache, without the
 * shard lock (so that the two misses overlap): the address and mask read
 * may be stale or mismatched, which at worst prefetches a useless line. */
static inline void lt_prefetch(struct lt_shard *sh, uint64_t h)
{
    lt_ref *b = __atomic_load_n(&sh->ht[0].b, __ATOMIC_RELAXED);
    size_t mask = __atomic_load_n(&sh->ht[0].mask, __ATOMIC_RELAXED);
    if (b)
        __builtin_prefetch(b + ((size_t)h & mask));
}

/* Hashes key into *h and returns its shard, its bucket being prefetched. */
static struct lt_shard *lt_shard_for(kvi__lt *t, const void *key, size_t klen, uint64_t *h)
{
    *h = kvi__lt_hash(t->seed, key, klen);
    struct lt_shard *sh = &t->shards[LT_SHARD_OF(*h)];
    lt_prefetch(sh, *h);
    return sh;
}

static kvi_status lt_ensure_buckets(kvi__lt *t, struct lt_shard *sh)
{
    if (sh->ht[0].b)
        return KVI_OK;
    lt_ref *b = kvi__calloc(t->k, LT_INITIAL_BUCKETS, sizeof(lt_ref));
    if (!b)
        return KVI_E_NOMEM;
    lt_set_main(sh, b, LT_INITIAL_BUCKETS - 1u);
    sh->ht[0].used = 0;
    lt_charge(t, sh, LT_INITIAL_BUCKETS * sizeof(lt_ref), 0);
    return KVI_OK;
}

static void lt_link(kvi__lt *t, struct lt_shard *sh, struct lt_entry *e, uint64_t h)
{
    struct lt_ht *ht = sh->ht[1].b ? &sh->ht[1] : &sh->ht[0];
    size_t idx = (size_t)h & ht->mask;
    e->next = ht->b[idx];
    ht->b[idx] = r_make(e);
    ht->used++;
    sh->changes++;
    sh->bytes += e_klen(e) + e_vlen(e);
    if (e_expire(e))
        sh->expiring++;
    lt_charge(t, sh, e_cost(e), 0);
    if (!sh->ht[1].b && sh->ht[0].used * 4u > (sh->ht[0].mask + 1u) * 3u) {
        /* Load factor passed 3/4 (a hit then follows 1.2-1.4 links on
         * average): start moving to a table twice the size.  Without
         * memory we just keep the longer chains. */
        size_t n = (sh->ht[0].mask + 1u) * 2u;
        lt_ref *b = kvi__calloc(t->k, n, sizeof(*b));
        if (b) {
            sh->ht[1].b = b;
            sh->ht[1].mask = n - 1u;
            sh->ht[1].used = 0;
            sh->rehash_idx = 0;
            lt_charge(t, sh, n * sizeof(*b), 0);
        }
    }
}

/* Moves up to n non-empty buckets of ht[0] into ht[1] (and looks at no more
 * than 10 n empty ones), finishing the rehash when ht[0] is drained. */
static void lt_rehash_run(kvi__lt *t, struct lt_shard *sh, size_t n)
{
    struct lt_ht *from = &sh->ht[0], *to = &sh->ht[1];
    size_t empty_budget = n * 10u;
    while (n && sh->rehash_idx <= from->mask) {
        lt_ref r = from->b[sh->rehash_idx];
        if (!r) {
            sh->rehash_idx++;
            if (--empty_budget == 0)
                break;
            continue;
        }
        while (r) {
            struct lt_entry *e = r_entry(r);
            r = e->next;
            uint64_t h = kvi__lt_hash(t->seed, e->data, e_klen(e));
            size_t idx = (size_t)h & to->mask;
            e->next = to->b[idx];
            to->b[idx] = r_make(e);
            from->used--;
            to->used++;
        }
        from->b[sh->rehash_idx++] = 0;
        n--;
    }
    if (sh->rehash_idx > from->mask) {
        lt_charge(t, sh, 0, (from->mask + 1u) * sizeof(lt_ref));
        kvi__free(t->k, from->b);
        lt_set_main(sh, to->b, to->mask);
        from->used = to->used;
        to->b = NULL;
        to->mask = 0;
        to->used = 0;
        sh->rehash_idx = 0;
        sh->sweep_idx = 0;
    }
}

/* The check stays inline: a rehash runs rarely and every lookup asks. */
static inline void lt_rehash_step(kvi__lt *t, struct lt_shard *sh, size_t n)
{
    if (sh->ht[1].b)
        lt_rehash_run(t, sh, n);
}

/* Looks at a few buckets for expired entries; they go on *dead. */
static void lt_sweep_step(kvi__lt *t, struct lt_shard *sh, kvi__lt_op *n, lt_ref *dead)
{
    if (!sh->expiring || sh->ht[1].b || !sh->ht[0].b)
        return;
    for (int i = 0; i < 4; i++) {
        size_t idx = sh->sweep_idx++ & sh->ht[0].mask;
        struct lt_loc loc = {&sh->ht[0].b[idx], 0};
        while (*loc.pp) {
            if (e_dead(r_entry(*loc.pp), n)) {
                struct lt_entry *e = lt_unlink(t, sh, loc);
                sh->expired++;
                lt_bury(dead, e);
            } else {
                loc.pp = &r_entry(*loc.pp)->next;
            }
        }
    }
}

/* Finds key and drops it when expired; loc.pp is NULL when there is no
 * live entry. */
static inline __attribute__((always_inline)) struct lt_loc
lt_find_live(kvi__lt *t, struct lt_shard *sh, uint64_t h, const void *key, size_t klen,
             kvi__lt_op *n, lt_ref *dead)
{
    struct lt_loc loc = lt_find(sh, h, key, klen);
    if (loc.pp && e_dead(r_entry(*loc.pp), n)) {
        struct lt_entry *e = lt_unlink(t, sh, loc);
        sh->expired++;
        lt_bury(dead, e);
        loc.pp = NULL;
    }
    return loc;
}

/* Samples a few entries of the shard and returns the location of the least
 * recently used one (an expired one first); loc.pp NULL when empty. */
static struct lt_loc lt_sample(kvi__lt *t, struct lt_shard *sh, kvi__lt_op *n, size_t window,
                               uint64_t *age_out)
{
    struct lt_loc best = {NULL, 0};
    uint64_t best_age = 0;
    uint64_t clock = (atomic_load_explicit(&t->lru_clock, memory_order_relaxed) >> t->lru_shift) &
                     UINT64_C(0xFFFF);
    int found = 0;
    for (int i = 0; i < 2 && found < LT_SAMPLES; i++) {
        struct lt_ht *ht = &sh->ht[i];
        if (!ht->b || !ht->used)
            continue;
        size_t idx = (size_t)xorshift(&sh->rng);
        for (size_t scanned = 0; scanned <= ht->mask && scanned < window && found < LT_SAMPLES;
             scanned++, idx++) {
            for (lt_ref *pp = &ht->b[idx & ht->mask]; *pp; pp = &r_entry(*pp)->next) {
                const struct lt_entry *e = r_entry(*pp);
                uint64_t age = kvi__lt_lru_age(e_dead(e, n), clock, e->w1);
                if (!best.pp || age > best_age) {
                    best.pp = pp;
                    best.which = i;
                    best_age = age;
                }
                if (++found >= LT_SAMPLES)
                    break;
            }
        }
    }
    *age_out = best_age;
    return best;
}

/* Evicts one entry, the older of the samples of two shards; 0 when the
 * table looks empty.  Called with no shard lock held. */
static int lt_evict_one(kvi__lt *t)
{
    kvi__lt_op n = {.k = t->k};
    for (int attempt = 0; attempt < 8; attempt++) {
        uint64_t r = kvi__lt_mix64(
            atomic_fetch_add_explicit(&t->evict_cursor, 1, memory_order_relaxed) ^ t->seed);
        size_t a = (size_t)r & (KVI__LT_SHARDS - 1u);
        size_t b = (size_t)(r >> 8) & (KVI__LT_SHARDS - 1u);
        if (a == b)
            b = (a + 1u) & (KVI__LT_SHARDS - 1u);
        if (a > b) {
            size_t x = a;
            a = b;
            b = x;
        }
        struct lt_shard *sa = &t->shards[a], *sb = &t->shards[b];
        pthread_mutex_lock(&sa->lock);
        pthread_mutex_lock(&sb->lock);
        uint64_t age_a = 0, age_b = 0;
        struct lt_loc la = lt_sample(t, sa, &n, 64u, &age_a);
        struct lt_loc lb = lt_sample(t, sb, &n, 64u, &age_b);
        struct lt_entry *victim = NULL;
        if (la.pp && (!lb.pp || age_a >= age_b)) {
            victim = lt_unlink(t, sa, la);
            sa->evicted++;
        } else if (lb.pp) {
            victim = lt_unlink(t, sb, lb);
            sb->evicted++;
        }
        pthread_mutex_unlock(&sb->lock);
        pthread_mutex_unlock(&sa->lock);
        if (victim) {
            kvi__free(t->k, victim);
            return 1;
        }
    }
    /* Random picks missed a sparse table: walk the shards in order, each
     * one whole (rare: only a table emptied after it grew gets here). */
    for (size_t i = 0; i < KVI__LT_SHARDS; i++) {
        struct lt_shard *sh = &t->shards[i];
        uint64_t age = 0;
        pthread_mutex_lock(&sh->lock);
        struct lt_loc loc = lt_sample(t, sh, &n, SIZE_MAX, &age);
        struct lt_entry *victim = NULL;
        if (loc.pp) {
            victim = lt_unlink(t, sh, loc);
            sh->evicted++;
        }
        pthread_mutex_unlock(&sh->lock);
        if (victim) {
            kvi__free(t->k, victim);
            return 1;
        }
    }
    return 0;
}

/* With evict=lru, evicts until `cost` more bytes fit (best effort; the
 * exact check is made under the shard lock). */
/* Frees the bucket arrays of shards that hold no entry (they come back at
 * the next insert), so that buckets grown for entries since evicted or
 * removed do not keep a capped table full while it is empty.  Called with
 * no shard lock held, only when a write does not fit. */
static void lt_release_empty(kvi__lt *t)
{
    for (size_t i = 0; i < KVI__LT_SHARDS; i++) {
        struct lt_shard *sh = &t->shards[i];
        lt_ref *free0 = NULL, *free1 = NULL;
        pthread_mutex_lock(&sh->lock);
        if (sh->ht[0].b && sh->ht[0].used + sh->ht[1].used == 0) {
            free0 = sh->ht[0].b;
            free1 = sh->ht[1].b;
            size_t bytes = (sh->ht[0].mask + 1u) * sizeof(lt_ref);
            if (free1)
                bytes += (sh->ht[1].mask + 1u) * sizeof(lt_ref);
            /* lt_prefetch may still read the old address: a prefetch of
             * freed memory is harmless. */
            lt_set_main(sh, NULL, 0);
            sh->ht[1].b = NULL;
            sh->ht[1].mask = 0;
            sh->rehash_idx = 0;
            sh->sweep_idx = 0;
            lt_charge(t, sh, 0, bytes);
        }
        pthread_mutex_unlock(&sh->lock);
        kvi__free(t->k, free0);
        kvi__free(t->k, free1);
    }
}

/* Makes room for `cost` more bytes (best effort; the exact check is made
 * under the shard lock): with evict=lru evicts until they fit, and when
 * the table holds too little to evict, gives back empty shards' buckets
 * (with either policy), so a write that fits max_memory at all always
 * fits once enough is evicted or removed. */
static kvi_status lt_make_room(kvi__lt *t, size_t cost)
{
    if (!t->cfg.max_memory)
        return KVI_OK;
    if (cost > t->cfg.max_memory)
        return KVI_E_STORE_FULL;
    int released = 0;
    while (lt_over(t, cost, 0)) {
        if (t->cfg.evict == KVI__LT_EVICT_LRU && lt_evict_one(t))
            continue;
        if (released)
            break;
        lt_release_empty(t);
        released = 1;
    }
    return KVI_OK;
}

/* ---------------------------------------------------------------------- */
/* Public (internal) operations                                            */

kvi_status kvi__lt_new(kvi *k, const kvi__lt_config *cfg, kvi__lt **out)
{
    size_t size = sizeof(kvi__lt) + 64u + KVI__LT_SHARDS * sizeof(struct lt_shard);
    void *raw = kvi__calloc(k, 1, size);
    if (!raw)
        return KVI_E_NOMEM;
    kvi__lt *t = raw;
    t->raw = raw;
    t->k = k;
    t->cfg = *cfg;
    uintptr_t p = (uintptr_t)((char *)raw + sizeof(kvi__lt));
    p = (p + 63u) & ~(uintptr_t)63u;
    t->shards = (struct lt_shard *)p;

    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = kvi__lt_mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)p);
    }
    t->seed = seed;
    atomic_init(&t->used, 0);
    atomic_init(&t->lru_clock, 0);
    atomic_init(&t->evict_cursor, 0);
    /* The 16-bit LRU stamp counts accesses >> lru_shift; pick the shift so
     * that its window spans a few times the entries max_memory can hold. */
    t->lru_shift = 0;
    if (cfg->max_memory) {
        uint64_t est = cfg->max_memory / 64u;
        while (t->lru_shift < 40 && (UINT64_C(1) << (14u + t->lru_shift)) < est)
            t->lru_shift++;
    }
    for (size_t i = 0; i < KVI__LT_SHARDS; i++) {
        struct lt_shard *sh = &t->shards[i];
        pthread_mutex_init(&sh->lock, NULL);
        sh->rng = kvi__lt_mix64(seed + i + 1u) | 1u;
    }
    *out = t;
    return KVI_OK;
}

void kvi__lt_free(kvi__lt *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < KVI__LT_SHARDS; i++) {
        struct lt_shard *sh = &t->shards[i];
        for (int j = 0; j < 2; j++) {
            struct lt_ht *ht = &sh->ht[j];
            if (!ht->b)
                continue;
            for (size_t b = 0; b <= ht->mask; b++)
                lt_free_list(t, ht->b[b]);
            kvi__free(t->k, ht->b);
        }
        pthread_mutex_destroy(&sh->lock);
    }
    kvi__free(t->k, t->raw);
}

/* Inserts or replaces key; with nx set a live entry is left alone and the
 * answer is KVI_KEY_EXISTS (an expired one is dropped and replaced). */
static kvi_status lt_put(kvi__lt *t, const void *key, size_t klen, const void *val, size_t vlen,
                         int64_t expire_ms, kvi__lt_op *n, int nx)
{
    uint64_t h = kvi__lt_hash(t->seed, key, klen);
    size_t cost = kvi__lt_entry_cost(klen, vlen);
    kvi_status st = lt_make_room(t, cost);
    if (st != KVI_OK)
        return st;
    struct lt_shard *sh = &t->shards[LT_SHARD_OF(h)];
    lt_prefetch(sh, h);
    struct lt_entry *e = lt_entry_new(t, key, klen, val, vlen, expire_ms, h);
    if (!e)
        return KVI_E_NOMEM;
    lt_touch(t, e);

    lt_ref dead = 0;
    pthread_mutex_lock(&sh->lock);
    lt_rehash_step(t, sh, 8);
    struct lt_loc loc =
        nx ? lt_find_live(t, sh, h, key, klen, n, &dead) : lt_find(sh, h, key, klen);
    if (loc.pp && nx) {
        st = KVI_KEY_EXISTS;
    } else if (loc.pp) {
        if (lt_over(t, cost, e_cost(r_entry(*loc.pp)))) {
            st = KVI_E_STORE_FULL;
        } else {
            lt_bury(&dead, lt_replace(t, sh, loc, e));
        }
    } else if (lt_over(t, cost, 0)) {
        st = KVI_E_STORE_FULL;
    } else if ((st = lt_ensure_buckets(t, sh)) == KVI_OK) {
        lt_link(t, sh, e, h);
    }
    if (st == KVI_OK)
        lt_sweep_step(t, sh, n, &dead);
    pthread_mutex_unlock(&sh->lock);
    if (st != KVI_OK)
        kvi__free(t->k, e);
    lt_free_list(t, dead);
    return st;
}

kvi_status kvi__lt_store(kvi__lt *t, const void *key, size_t key_len, const void *val,
                         size_t val_len, int64_t expire_s)
{
    kvi__lt_op n = {.k = t->k};
    return lt_put(t, key, key_len, val, val_len, kvi__lt_expire_at(&n, expire_s), &n, 0);
}

kvi_status kvi__lt_store_nx(kvi__lt *t, const void *key, size_t key_len, const void *val,
                            size_t val_len, int64_t expire_s)
{
    kvi__lt_op n = {.k = t->k};
    return lt_put(t, key, key_len, val, val_len, kvi__lt_expire_at(&n, expire_s), &n, 1);
}

kvi_status kvi__lt_put_abs(kvi__lt *t, const void *key, size_t key_len, const void *val,
                           size_t val_len, int64_t expire_ms)
{
    kvi__lt_op n = {.k = t->k};
    expire_ms = kvi__lt_clamp_abs(expire_ms);
    if (kvi__lt_dead(expire_ms, &n))
        return KVI_OK;
    return lt_put(t, key, key_len, val, val_len, expire_ms, &n, 0);
}

kvi_status kvi__lt_fetch(kvi__lt *t, const void *key, size_t key_len, kvi__lt_value_fn fn, void *ud)
{
    kvi__lt_op n = {.k = t->k};
    uint64_t h;
    struct lt_shard *sh = lt_shard_for(t, key, key_len, &h);
    lt_ref dead = 0;
    kvi_status st;
    pthread_mutex_lock(&sh->lock);
    lt_rehash_step(t, sh, 1);
    struct lt_loc loc = lt_find_live(t, sh, h, key, key_len, &n, &dead);
    if (loc.pp) {
        struct lt_entry *e = r_entry(*loc.pp);
        sh->hits++;
        lt_touch(t, e);
        st = fn(ud, e->data + key_len, e_vlen(e));
    } else {
        st = KVI_NOT_FOUND;
    }
    pthread_mutex_unlock(&sh->lock);
    lt_free_list(t, dead);
    return st;
}

/* Buckets per shard from which kvi__lt_fetch_ops takes a table for one
 * beyond the caches (64 shards x 16384 buckets: ~1M entries). */
#define LT_BIG_MASK (16384u - 1u)
/* ... and from which it prefetches entries under the lock (64 shards x
 * 1024 buckets: ~50K entries, beyond a core's own caches). */
#define LT_MID_MASK (1024u - 1u)

/* Starts loading the first entry of each listed key's ht[0] bucket (sh
 * locked). */
static void lt_prefetch_entries(struct lt_shard *sh, int16_t first, const int16_t *next,
                                const uint64_t *h)
{
    if (sh->ht[0].b == NULL)
        return;
    for (int16_t j = first; j >= 0; j = next[j]) {
        lt_ref r = sh->ht[0].b[(size_t)h[j] & sh->ht[0].mask];
        if (r)
            __builtin_prefetch(r_entry(r));
    }
}

/* See local.h.  Ops are taken in chunks: their keys hashed and their
 * buckets prefetched first, then the chunk's keys are listed per shard and
 * each shard met is locked once for all of them.  The clock is read at
 * most once per call (only when an entry with an expiry is met): every
 * expiry of the call is judged at that one instant. */
size_t kvi__lt_fetch_ops(kvi__lt *t, kvi_batch_op *const *ops, size_t n, kvi__batch_sink *sink,
                         size_t *misses)
{
    size_t missing = 0;
    size_t open = 0;
    enum { CHUNK = 256 };
    uint64_t h[CHUNK];
    int16_t next[CHUNK], head[KVI__LT_SHARDS];
    uint64_t met[KVI__LT_SHARDS / 64u];
    kvi__lt_op now = {.k = t->k};
    int lru = t->cfg.evict == KVI__LT_EVICT_LRU;
    for (size_t base = 0; base < n; base += CHUNK) {
        size_t m = n - base < CHUNK ? n - base : CHUNK;
        kvi_batch_op *const *cops = ops + base;
        memset(met, 0, sizeof met);
        /* The hashes first, in a loop of their own: one key's hash is a
         * chain of dependent multiplies, and a short loop body lets the CPU
         * overlap many keys' chains. */
        for (size_t i = 0; i < m; i++)
            h[i] = kvi__lt_hash(t->seed, cops[i]->key, cops[i]->key_len);
        for (size_t i = m; i-- > 0;) {
            size_t s = LT_SHARD_OF(h[i]);
            lt_prefetch(&t->shards[s], h[i]);
            uint64_t bit = UINT64_C(1) << (s & 63u);
            next[i] = (met[s >> 6] & bit) ? head[s] : -1;
            met[s >> 6] |= bit;
            head[s] = (int16_t)i;
        }
        /* The buckets were prefetched when hashed.  Each key's first entry
         * can only be found under its shard's lock: in a table too big for
         * the caches, a first pass over the shards (lock, start loading the
         * entries, unlock) lets all those misses overlap before the
         * lookups; in a middle-sized one the entries are prefetched just
         * before their lookups, under the one lock; in one that fits a
         * core's caches, not at all (the loads would hit anyway). */
        size_t mask0 = __atomic_load_n(&t->shards[0].ht[0].mask, __ATOMIC_RELAXED);
        int big = mask0 >= LT_BIG_MASK, mid = !big && mask0 >= LT_MID_MASK;
        for (size_t w = 0; big && w < KVI__LT_SHARDS / 64u; w++) {
            for (uint64_t bits = met[w]; bits != 0; bits &= bits - 1u) {
                struct lt_shard *sh = &t->shards[w * 64u + (size_t)__builtin_ctzll(bits)];
                pthread_mutex_lock(&sh->lock);
                lt_prefetch_entries(sh, head[sh - t->shards], next, h);
                pthread_mutex_unlock(&sh->lock);
            }
        }
        for (size_t w = 0; w < KVI__LT_SHARDS / 64u; w++) {
            for (uint64_t bits = met[w]; bits != 0; bits &= bits - 1u) {
                size_t s = w * 64u + (size_t)__builtin_ctzll(bits);
                struct lt_shard *sh = &t->shards[s];
                lt_ref dead = 0;
                pthread_mutex_lock(&sh->lock);
                lt_rehash_step(t, sh, 1);
                if (mid)
                    lt_prefetch_entries(sh, head[s], next, h);
                uint64_t hits = 0;
                int one = sh->ht[1].b == NULL && sh->ht[0].b != NULL;
                for (int16_t j = head[s]; j >= 0; j = next[j]) {
                    kvi_batch_op *op = cops[j];
                    size_t klen = op->key_len;
                    struct lt_loc loc;
                    if (one) {
                        /* No rehash running: ht[0] only (lt_find_live's steps). */
                        loc.pp = lt_find_in(&sh->ht[0], (size_t)h[j] & sh->ht[0].mask, h[j],
                                            op->key, klen);
                        loc.which = 0;
                        if (loc.pp && e_dead(r_entry(*loc.pp), &now)) {
                            lt_bury(&dead, lt_unlink(t, sh, loc));
                            sh->expired++;
                            loc.pp = NULL;
                        }
                    } else {
                        loc = lt_find_live(t, sh, h[j], op->key, klen, &now, &dead);
                    }
                    if (loc.pp == NULL) {
                        kvi__batch_op_missing(op);
                        missing++;
                        continue;
                    }
                    struct lt_entry *e = r_entry(*loc.pp);
                    size_t vlen = e_vlen(e);
                    char *v = kvi__batch_sink_put(sink, e->data + klen, vlen);
                    if (v == NULL) {
                        op->status = KVI_E_NOMEM; /* left open: see local.h */
                        open++;
                        continue;
                    }
                    hits++;
                    if (lru)
                        lt_touch(t, e);
                    kvi__batch_op_found(op, v, vlen);
                }
                sh->hits += hits;
                pthread_mutex_unlock(&sh->lock);
                lt_free_list(t, dead);
            }
        }
    }
    *misses += missing;
    return open;
}

kvi_status kvi__lt_remove(kvi__lt *t, const void *key, size_t key_len)
{
    kvi__lt_op n = {.k = t->k};
    uint64_t h;
    struct lt_shard *sh = lt_shard_for(t, key, key_len, &h);
    lt_ref dead = 0;
    kvi_status st = KVI_NOT_FOUND;
    pthread_mutex_lock(&sh->lock);
    lt_rehash_step(t, sh, 8);
    struct lt_loc loc = lt_find_live(t, sh, h, key, key_len, &n, &dead);
    if (loc.pp) {
        lt_bury(&dead, lt_unlink(t, sh, loc));
        st = KVI_OK;
    }
    lt_sweep_step(t, sh, &n, &dead);
    pthread_mutex_unlock(&sh->lock);
    lt_free_list(t, dead);
    return st;
}

kvi_status kvi__lt_add(kvi__lt *t, const void *key, size_t key_len, int64_t delta, int64_t expire_s,
                       int64_t *new_value)
{
    return kvi__lt_add_bounded(t, key, key_len, delta, expire_s, INT64_MIN, INT64_MAX, new_value);
}

kvi_status kvi__lt_add_bounded(kvi__lt *t, const void *key, size_t key_len, int64_t delta,
                               int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    kvi__lt_op n = {.k = t->k};
    uint64_t h;
    struct lt_shard *sh = lt_shard_for(t, key, key_len, &h);
    lt_ref dead = 0;
    char text[24];
    kvi_status st = lt_make_room(t, kvi__lt_entry_cost(key_len, 20));
    if (st != KVI_OK)
        return st;

    pthread_mutex_lock(&sh->lock);
    lt_rehash_step(t, sh, 8);
    struct lt_loc loc = lt_find_live(t, sh, h, key, key_len, &n, &dead);
    struct lt_entry *old = loc.pp ? r_entry(*loc.pp) : NULL;
    int64_t result = 0;
    st = kvi__lt_counter_step(old != NULL, old ? old->data + key_len : NULL, old ? e_vlen(old) : 0,
                              delta, min, max, &result);
    if (st != KVI_OK) {
        /* refused, not a counter or overflow: nothing changes */
    } else if (!old) {
        size_t len = kvi_format_int64(result, text);
        struct lt_entry *e = NULL;
        if (lt_over(t, kvi__lt_entry_cost(key_len, len), 0))
            st = KVI_E_STORE_FULL;
        else if ((st = lt_ensure_buckets(t, sh)) == KVI_OK &&
                 !(e = lt_entry_new(t, key, key_len, text, len, kvi__lt_expire_at(&n, expire_s),
                                    h)))
            st = KVI_E_NOMEM;
        if (st == KVI_OK) {
            lt_touch(t, e);
            lt_link(t, sh, e, h);
        }
    } else {
        struct lt_entry *e = old;
        size_t len = kvi_format_int64(result, text);
        if (len == e_vlen(e)) {
            memcpy(e->data + key_len, text, len);
            sh->changes++;
            lt_touch(t, e);
        } else if (lt_over(t, kvi__lt_entry_cost(key_len, len), e_cost(e))) {
            st = KVI_E_STORE_FULL;
        } else {
            struct lt_entry *ne = lt_entry_new(t, key, key_len, text, len, e_expire(e), h);
            if (!ne) {
                st = KVI_E_NOMEM;
            } else {
                lt_touch(t, ne);
                lt_bury(&dead, lt_replace(t, sh, loc, ne));
            }
        }
    }
    if (st == KVI_OK)
        lt_sweep_step(t, sh, &n, &dead);
    pthread_mutex_unlock(&sh->lock);
    lt_free_list(t, dead);
    if ((st == KVI_OK || st == KVI_OUT_OF_BOUNDS) && value)
        *value = result;
    return st;
}

kvi_status kvi__lt_counter(kvi__lt *t, const void *key, size_t key_len, int64_t *out)
{
    return kvi__lt_fetch(t, key, key_len, kvi__lt_read_counter, out);
}

kvi_status kvi__lt_ttl(kvi__lt *t, const void *key, size_t key_len, int64_t *ttl_s)
{
    kvi__lt_op n = {.k = t->k};
    uint64_t h;
    struct lt_shard *sh = lt_shard_for(t, key, key_len, &h);
    lt_ref dead = 0;
    kvi_status st = KVI_NOT_FOUND;
    int64_t v = -1;
    pthread_mutex_lock(&sh->lock);
    struct lt_loc loc = lt_find_live(t, sh, h, key, key_len, &n, &dead);
    if (loc.pp) {
        v = kvi__lt_ttl_s(e_expire(r_entry(*loc.pp)), &n);
        st = KVI_OK;
    }
    pthread_mutex_unlock(&sh->lock);
    lt_free_list(t, dead);
    if (st == KVI_OK)
        *ttl_s = v;
    return st;
}

/* Walks every entry of one shard: drops the expired ones; for each live
 * one matching glob calls fn (when set) or, with remove, unlinks it. */
static kvi_status lt_walk_shard(kvi__lt *t, struct lt_shard *sh, kvi__lt_walk *w, uint64_t *removed,
                                lt_ref *dead)
{
    for (int i = 0; i < 2; i++) {
        struct lt_ht *ht = &sh->ht[i];
        if (!ht->b)
            continue;
        for (size_t b = 0; b <= ht->mask; b++) {
            struct lt_loc loc = {&ht->b[b], i};
            while (*loc.pp) {
                struct lt_entry *e = r_entry(*loc.pp);
                size_t klen = e_klen(e);
                switch (
                    kvi__lt_walk_step(w, e->data, klen, e->data + klen, e_vlen(e), e_expire(e))) {
                case KVI__LT_DROP:
                    lt_bury(dead, lt_unlink(t, sh, loc));
                    sh->expired++;
                    break;
                case KVI__LT_TAKE:
                    lt_bury(dead, lt_unlink(t, sh, loc));
                    (*removed)++;
                    break;
                case KVI__LT_STOP:
                    return w->st;
                case KVI__LT_NEXT:
                    loc.pp = &e->next;
                    break;
                }
            }
        }
    }
    return KVI_OK;
}

kvi_status kvi__lt_foreach(kvi__lt *t, const char *glob, size_t glob_len, kvi__lt_entry_fn fn,
                           void *ud)
{
    kvi__lt_op n = {.k = t->k};
    kvi__lt_walk w = {glob, glob_len, fn, ud, &n, KVI_OK};
    uint64_t none = 0;
    kvi_status st = KVI_OK;
    for (size_t i = 0; i < KVI__LT_SHARDS && st == KVI_OK; i++) {
        struct lt_shard *sh = &t->shards[i];
        lt_ref dead = 0;
        pthread_mutex_lock(&sh->lock);
        st = lt_walk_shard(t, sh, &w, &none, &dead);
        pthread_mutex_unlock(&sh->lock);
        lt_free_list(t, dead);
    }
    return st;
}

void kvi__lt_remove_chunk(kvi__lt *t, const char *glob, size_t glob_len, uint64_t *removed)
{
    kvi__lt_op n = {.k = t->k};
    kvi__lt_walk w = {glob, glob_len, NULL, NULL, &n, KVI_OK};
    uint64_t count = 0;
    for (size_t i = 0; i < KVI__LT_SHARDS; i++) {
        struct lt_shard *sh = &t->shards[i];
        lt_ref dead = 0;
        pthread_mutex_lock(&sh->lock);
        (void)lt_walk_shard(t, sh, &w, &count, &dead);
        pthread_mutex_unlock(&sh->lock);
        lt_free_list(t, dead);
    }
    *removed = count;
}

void kvi__lt_stats_get(kvi__lt *t, kvi__lt_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < KVI__LT_SHARDS; i++) {
        struct lt_shard *sh = &t->shards[i];
        pthread_mutex_lock(&sh->lock);
        out->entries += sh->ht[0].used + sh->ht[1].used;
        out->bytes += sh->bytes;
        out->memory += sh->memory;
        out->hits += sh->hits;
        out->expired += sh->expired;
        out->evicted += sh->evicted;
        pthread_mutex_unlock(&sh->lock);
    }
}

uint64_t kvi__lt_changes(kvi__lt *t)
{
    uint64_t n = 0;
    for (size_t i = 0; i < KVI__LT_SHARDS; i++) {
        struct lt_shard *sh = &t->shards[i];
        pthread_mutex_lock(&sh->lock);
        n += sh->changes;
        pthread_mutex_unlock(&sh->lock);
    }
    return n;
}

/* ---------------------------------------------------------------------- */
/* The table interface (local.h): this table's instance                    */

static kvi_status op_store(void *self, const void *key, size_t key_len, const void *val,
                           size_t val_len, int64_t expire_s)
{
    return kvi__lt_store(self, key, key_len, val, val_len, expire_s);
}

static kvi_status op_store_nx(void *self, const void *key, size_t key_len, const void *val,
                              size_t val_len, int64_t expire_s)
{
    return kvi__lt_store_nx(self, key, key_len, val, val_len, expire_s);
}

static kvi_status op_put_abs(void *self, const void *key, size_t key_len, const void *val,
                             size_t val_len, int64_t expire_ms)
{
    return kvi__lt_put_abs(self, key, key_len, val, val_len, expire_ms);
}

static kvi_status op_fetch(void *self, const void *key, size_t key_len, kvi__lt_value_fn fn,
                           void *ud)
{
    return kvi__lt_fetch(self, key, key_len, fn, ud);
}

static size_t op_fetch_ops(void *self, kvi_batch_op *const *ops, size_t n, kvi__batch_sink *sink,
                           size_t *misses)
{
    return kvi__lt_fetch_ops(self, ops, n, sink, misses);
}

static kvi_status op_remove(void *self, const void *key, size_t key_len)
{
    return kvi__lt_remove(self, key, key_len);
}

static kvi_status op_add(void *self, const void *key, size_t key_len, int64_t delta,
                         int64_t expire_s, int64_t *new_value)
{
    return kvi__lt_add(self, key, key_len, delta, expire_s, new_value);
}

static kvi_status op_add_bounded(void *self, const void *key, size_t key_len, int64_t delta,
                                 int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    return kvi__lt_add_bounded(self, key, key_len, delta, expire_s, min, max, value);
}

static kvi_status op_counter(void *self, const void *key, size_t key_len, int64_t *out)
{
    return kvi__lt_counter(self, key, key_len, out);
}

static kvi_status op_ttl(void *self, const void *key, size_t key_len, int64_t *ttl_s)
{
    return kvi__lt_ttl(self, key, key_len, ttl_s);
}

static kvi_status op_foreach(void *self, const char *glob, size_t glob_len, kvi__lt_entry_fn fn,
                             void *ud)
{
    return kvi__lt_foreach(self, glob, glob_len, fn, ud);
}

static void op_remove_chunk(void *self, const char *glob, size_t glob_len, uint64_t *removed)
{
    kvi__lt_remove_chunk(self, glob, glob_len, removed);
}

static void op_stats_get(void *self, kvi__lt_stats *out)
{
    kvi__lt_stats_get(self, out);
}

static uint64_t op_changes(void *self)
{
    return kvi__lt_changes(self);
}

const kvi__tab_ops kvi__lt_ops = {
    .name = "heap",
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
