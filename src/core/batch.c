/*
 * batch.c -- batches: many operations on any engine ids, run together.
 *
 * Adding an operation checks its arguments once, with the checks of the
 * single call (ops.c), and copies its key and value into the batch's own
 * memory.  Running groups the operations per engine id (in the order they
 * were added) and hands each group to the engine's batch slot, or, for an
 * engine without one, runs it one by one through the single-operation
 * slots.  Every operation ends through kvi_batch_op_done(), the one place
 * that stores its status and message and empties what a failure leaves.
 * Invariant: items[0..nrun) have all ended; an item that ended at add time
 * (a rejected argument) may sit anywhere after that.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "core/ops.h"

#define CHUNK_MIN 65536u

struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
};

struct batch_item {
    kvi_batch_op op;  /* what the engine sees */
    kvi_batch *b;     /* the batch holding it */
    kvi_conn *c;      /* NULL when the id was not defined */
    kvi_op_kind kind; /* the caller's (SUB kinds kept) */
    int ended;
    char *msg; /* detail message of an error, or NULL */
};

/* One engine id's share of a run: group[from..to) of the run's ops. */
struct run_group {
    kvi_conn *c;
    size_t from, to;
    uint64_t t0; /* timing (ops.c) */
    int coarse;
};

struct kvi_batch {
    kvi *k;
    struct batch_item *items;
    size_t n, cap, nrun;
    struct chunk *chunks; /* newest first */
    kvi_conn *last_c;     /* the id of the last op added: most batches name one */
    size_t last_id_len;   /* strlen(last_c->id) */
    /* Since the last run: whether every op added is open and on one id
     * (run_c); then the run needs no grouping. */
    kvi_conn *run_c;
    int run_mixed;
    int run_other_kinds; /* ... and whether any is not a fetch */
    /* The group being run: all fetches (make_groups), and what its
     * engine reported of it (kvi__batch_group_counted): ops ended, misses. */
    int grp_all_fetches;
    size_t grp_counted, grp_misses;
    size_t nfailed; /* ops that ended in an error since the last run began */
    int held;       /* some item may hold heap memory (a value, reply or message) */
    size_t ops_cap; /* room in ops and groups */
    /* A run in progress (kvi_batch_start): its ops grouped per engine id,
     * the group being run, and the engine's state while it waits. */
    int pending;
    kvi_batch_op **ops;
    struct run_group *groups;
    size_t ngroups, gi;
    int64_t deadline_ms;
    void *estate; /* the current group's engine state; NULL when not waiting */
    kvi_batch_done_fn done;
    void *done_ud;
};

#define ITEM_OF(op) ((struct batch_item *)(void *)((char *)(op) - offsetof(struct batch_item, op)))

kvi_status kvi_batch_new(kvi *k, kvi_batch **out)
{
    if (out != NULL)
        *out = NULL;
    if (k == NULL || out == NULL)
        return KVI_E_INVALID;
    kvi__clear_error();
    kvi_batch *b = kvi__calloc(k, 1, sizeof *b);
    if (b == NULL)
        return kvi__error(k, KVI_E_NOMEM, "out of memory creating a batch");
    b->k = k;
    *out = b;
    return KVI_OK;
}

static void item_release(kvi *k, struct batch_item *it)
{
    /* Most items hold nothing to free (values in the batch's memory). */
    if (it->op.value.free_fn_ == NULL && it->op.reply == NULL && it->msg == NULL)
        return;
    kvi_value_free(&it->op.value);
    kvi_reply_free(it->op.reply);
    it->op.reply = NULL;
    kvi__free(k, it->msg);
    it->msg = NULL;
}

void kvi_batch_clear(kvi_batch *b)
{
    if (b == NULL)
        return;
    kvi_batch_cancel(b);
    for (size_t i = 0; b->held && i < b->n; i++)
        item_release(b->k, &b->items[i]);
    b->held = 0;
    b->n = 0;
    b->nrun = 0;
    b->run_c = NULL;
    b->run_mixed = 0;
    b->run_other_kinds = 0;
    b->nfailed = 0;
    /* Keep the newest chunk (the largest so far is likely enough next time). */
    struct chunk *keep = b->chunks;
    if (keep != NULL) {
        struct chunk *ch = keep->next;
        while (ch != NULL) {
            struct chunk *next = ch->next;
            kvi__free(b->k, ch);
            ch = next;
        }
        keep->next = NULL;
        keep->used = 0;
    }
}

void kvi_batch_free(kvi_batch *b)
{
    if (b == NULL)
        return;
    kvi_batch_clear(b);
    kvi__free(b->k, b->ops);
    kvi__free(b->k, b->groups);
    kvi__free(b->k, b->chunks);
    kvi__free(b->k, b->items);
    kvi__free(b->k, b);
}

/* A copy of len bytes (plus a NUL) in the batch's memory (src NULL: room
 * for them, uninitialised); NULL when short. */
static void *copy_in_slow(kvi_batch *b, const void *src, size_t len)
{
    size_t need = len + 1;
    struct chunk *ch = b->chunks;
    if (ch == NULL || ch->cap - ch->used < need) {
        size_t cap = need > CHUNK_MIN ? need : CHUNK_MIN;
        if (cap > SIZE_MAX - sizeof *ch)
            return NULL;
        ch = kvi__malloc(b->k, sizeof *ch + cap);
        if (ch == NULL)
            return NULL;
        ch->cap = cap;
        ch->used = 0;
        ch->next = b->chunks;
        b->chunks = ch;
    }
    char *p = (char *)ch->data + ch->used;
    if (len > 0 && src != NULL)
        memcpy(p, src, len);
    p[len] = '\0';
    ch->used += need;
    return p;
}

/* copy_in_slow, with the common case (room in the newest chunk) inline. */
static inline void *copy_in(kvi_batch *b, const void *src, size_t len)
{
    struct chunk *ch = b->chunks;
    if (ch == NULL || len >= ch->cap - ch->used)
        return copy_in_slow(b, src, len);
    char *p = (char *)ch->data + ch->used;
    if (src != NULL)
        kvi__copy_small(p, src, len);
    p[len] = '\0';
    ch->used += len + 1;
    return p;
}

/* ---- the local engine's runs of fetches (internal.h) ----------------------- */

int kvi__batch_group_all_fetches(kvi_batch_op *op)
{
    return ITEM_OF(op)->b->grp_all_fetches;
}

void kvi__batch_group_counted(kvi_batch_op *op, size_t n, size_t misses)
{
    kvi_batch *b = ITEM_OF(op)->b;
    b->grp_counted = n;
    b->grp_misses = misses;
}

void kvi__batch_sink_open(kvi_batch_op *op, kvi__batch_sink *s)
{
    kvi_batch *b = ITEM_OF(op)->b;
    struct chunk *ch = b->chunks;
    s->b = b;
    s->p = s->end = NULL;
    if (ch != NULL) {
        s->p = (char *)ch->data + ch->used;
        s->end = (char *)ch->data + ch->cap;
    }
}

void kvi__batch_sink_close(kvi__batch_sink *s)
{
    struct chunk *ch = s->b->chunks;
    if (ch != NULL && s->p != NULL)
        ch->used = (size_t)(s->p - (char *)ch->data);
    s->p = s->end = NULL;
}

char *kvi__batch_sink_more(kvi__batch_sink *s, size_t need)
{
    kvi__batch_sink_close(s);
    if (need >= SIZE_MAX - sizeof(struct chunk))
        return NULL;
    /* A new chunk with room for need bytes, none of it taken yet. */
    char *p = copy_in_slow(s->b, NULL, need - 1);
    if (p == NULL)
        return NULL;
    struct chunk *ch = s->b->chunks;
    ch->used -= need;
    s->p = p;
    s->end = (char *)ch->data + ch->cap;
    return p;
}

char *kvi_batch_op_value_alloc(kvi_conn *c, kvi_batch_op *op, size_t len)
{
    if (c == NULL || op == NULL)
        return NULL;
    if (op->value.data != NULL)
        kvi_value_free(&op->value);
    if (len >= SIZE_MAX - sizeof(struct chunk))
        return NULL;
    char *p = copy_in(ITEM_OF(op)->b, NULL, len);
    if (p == NULL)
        return NULL;
    /* No free function: kvi_value_free() only empties it. */
    op->value.data = p;
    op->value.len = len;
    return p;
}

/* Ends it at add time (an id or argument the single call would refuse) with
 * the detail message that refusal set. */
static void end_rejected(kvi_batch *b, struct batch_item *it, kvi_status st)
{
    it->op.status = st;
    it->op.done = 1;
    it->ended = 1;
    b->nfailed++;
    b->run_mixed = 1;
    b->held = 1;
    const char *m = kvi_errmsg(b->k);
    it->msg = kvi__strdup(b->k, m[0] ? m : kvi_strerror(st));
}

/* strcmp(a, b) == 0 for a the caller's id and b a known id of length n,
 * without a call: two bytes a turn.  a is read only as far as it matches b
 * (whose bytes before n are not NUL), so never past its own NUL. */
static inline int same_id(const char *a, const char *b, size_t n)
{
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        if (a[i] != b[i])
            return 0;
        if (a[i + 1] != b[i + 1])
            return 0;
    }
    if (i < n && a[i] != b[i])
        return 0;
    return a[n] == '\0';
}

/* Notes that an open op on c was appended (the run's one-id fast path). */
static inline void note_run(kvi_batch *b, kvi_conn *c)
{
    if (b->run_c != c) {
        if (b->run_c != NULL)
            b->run_mixed = 1;
        b->run_c = c;
    }
}

/* What batch_add's initialiser makes of a fetch, written field by field:
 * compilers zero a whole item with `rep stos`, whose start-up cost was a
 * third of adding a fetch.  Except the inputs a fetch has no use for (val,
 * val_len, expire_s, delta, min, max, reserved_): they keep what the slot
 * held before (a store's value, say) until make_groups empties them for
 * any engine but the built-in local one, which reads only a fetch's key
 * (fetch_inputs_empty; 5% of a local batch's time).  (The asserts make a
 * new field show up here.) */
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(struct batch_item) ==
                   sizeof(kvi_batch_op) + 3 * sizeof(void *) + 2 * sizeof(int),
               "batch_item changed: update item_init_fetch");
_Static_assert(sizeof(kvi_batch_op) ==
                   9 * 8 + sizeof(kvi_value) + 2 * 8 + 4 * 4 + 4 * sizeof(void *),
               "kvi_batch_op changed: update item_init_fetch");
#endif
static inline void item_init_fetch(struct batch_item *it, kvi_batch *b, kvi_conn *c,
                                   const char *key, size_t key_len)
{
    kvi_batch_op *op = &it->op;
    op->kind = KVI_OP_FETCH;
    op->key = key;
    op->key_len = key_len;
    op->value.data = NULL;
    op->value.len = 0;
    op->value.free_fn_ = NULL;
    op->value.free_ud_ = NULL;
    op->integer = 0;
    op->reply = NULL;
    op->no_resend = 0;
    op->status = KVI_E_INVALID; /* "not run yet" until it ends */
    op->done = 0;
    it->b = b;
    it->c = c;
    it->kind = KVI_OP_FETCH;
    it->ended = 0;
    it->msg = NULL;
}

/* The inputs item_init_fetch leaves as they were, emptied for an engine
 * that may look at them. */
static void fetch_inputs_empty(kvi_batch_op *op)
{
    if (op->kind != KVI_OP_FETCH)
        return;
    op->val = NULL;
    op->val_len = 0;
    op->expire_s = 0;
    op->delta = 0;
    op->min = 0;
    op->max = 0;
    for (size_t i = 0; i < sizeof op->reserved_ / sizeof op->reserved_[0]; i++)
        op->reserved_[i] = NULL;
}

/* The one adder behind kvi_batch_store, _fetch, ... */
static kvi_status batch_add(kvi_batch *b, kvi_op_kind kind, const char *id, const void *key,
                            size_t key_len, const void *val, size_t val_len, int64_t expire_s,
                            int64_t delta, int64_t min, int64_t max)
{
    if (b == NULL || b->pending)
        return KVI_E_INVALID;
    kvi__clear_error();
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct batch_item *items = kvi__realloc(b->k, b->items, cap * sizeof *items);
        if (items == NULL)
            return kvi__error(b->k, KVI_E_NOMEM, "out of memory adding to a batch");
        b->items = items;
        b->cap = cap;
    }
    struct batch_item *it = &b->items[b->n];
    *it = (struct batch_item){
        .op = {.kind = kind,
               .key = key,
               .key_len = key_len,
               .val = val,
               .val_len = val_len,
               .expire_s = expire_s,
               .delta = delta,
               .min = min,
               .max = max,
               .status = KVI_E_INVALID}, /* "not run yet" until it ends */
        .b = b,
        .kind = kind,
    };
    kvi_batch_op *op = &it->op;

    kvi_status st = KVI_OK;
    /* Connections live as long as their context: the last one found may be
     * reused when the id is the same. */
    if (b->last_c != NULL && id != NULL && same_id(id, b->last_c->id, b->last_id_len))
        it->c = b->last_c;
    else if ((st = kvi_conn_get(b->k, id, &it->c)) == KVI_OK)
        b->last_c = it->c, b->last_id_len = strlen(it->c->id);
    if (st == KVI_OK && !(kind == KVI_OP_FETCH && key != NULL && key_len >= 1 &&
                          key_len <= KVI_MAX_KEY_LEN)) {
        /* (a fetch with a good key needs no more: its check is the key's) */
        kvi__clear_error();
        st = kvi__op_check(it->c, kind, op);
    }
    if (st != KVI_OK) {
        op->key = op->val = NULL;
        end_rejected(b, it, st);
        b->n++;
        return st;
    }
    if (kind != KVI_OP_RAW_QUERY) {
        op->key = copy_in(b, key, key_len);
        if (op->key == NULL)
            return kvi__error(b->k, KVI_E_NOMEM, "out of memory adding to a batch");
    }
    if (kind == KVI_OP_STORE || kind == KVI_OP_STORE_NX || kind == KVI_OP_RAW_QUERY) {
        op->val = copy_in(b, val != NULL ? val : "", val_len);
        if (op->val == NULL)
            return kvi__error(b->k, KVI_E_NOMEM, "out of memory adding to a batch");
    } else {
        op->val = NULL;
        op->val_len = 0;
    }
    if (kind == KVI_OP_SUB || kind == KVI_OP_SUB_BOUNDED) {
        op->delta = -delta; /* the check refused INT64_MIN */
        op->kind = kind == KVI_OP_SUB ? KVI_OP_ADD : KVI_OP_ADD_BOUNDED;
    }
    op->no_resend = kind != KVI_OP_FETCH && (op->kind == KVI_OP_STORE_NX || op->kind == KVI_OP_ADD ||
                                             op->kind == KVI_OP_ADD_BOUNDED);
    note_run(b, it->c);
    b->run_other_kinds |= kind != KVI_OP_FETCH;
    b->n++;
    kvi__discard_error();
    return KVI_OK;
}

kvi_status kvi_batch_store(kvi_batch *b, const char *id, const void *key, size_t key_len,
                           const void *val, size_t val_len, int64_t expire_s)
{
    return batch_add(b, KVI_OP_STORE, id, key, key_len, val, val_len, expire_s, 0, 0, 0);
}

kvi_status kvi_batch_store_nx(kvi_batch *b, const char *id, const void *key, size_t key_len,
                              const void *val, size_t val_len, int64_t expire_s)
{
    return batch_add(b, KVI_OP_STORE_NX, id, key, key_len, val, val_len, expire_s, 0, 0, 0);
}

/* kvi_batch_fetch's way when its fast path does not apply. */
static __attribute__((noinline)) kvi_status fetch_add(kvi_batch *b, const char *id, const void *key,
                                                      size_t key_len)
{
    return batch_add(b, KVI_OP_FETCH, id, key, key_len, NULL, 0, 0, 0, 0, 0);
}

kvi_status kvi_batch_fetch(kvi_batch *b, const char *id, const void *key, size_t key_len)
{
    /* The common case without batch_add's general steps: an open batch
     * with room for the item and the key, a good key, the id of the op
     * before.  What it records is what batch_add records for a fetch. */
    if (b == NULL || b->pending || b->n >= b->cap || b->last_c == NULL || key == NULL ||
        key_len - 1u >= KVI_MAX_KEY_LEN || id == NULL ||
        !same_id(id, b->last_c->id, b->last_id_len))
        return fetch_add(b, id, key, key_len);
    struct chunk *ch = b->chunks;
    if (ch == NULL || key_len >= ch->cap - ch->used)
        return fetch_add(b, id, key, key_len);
    char *kc = (char *)ch->data + ch->used;
    kvi__copy_small(kc, key, key_len);
    kc[key_len] = '\0';
    ch->used += key_len + 1;
    item_init_fetch(&b->items[b->n], b, b->last_c, kc, key_len);
    note_run(b, b->last_c);
    b->n++;
    kvi__discard_error_inline();
    return KVI_OK;
}

kvi_status kvi_batch_remove(kvi_batch *b, const char *id, const void *key, size_t key_len)
{
    return batch_add(b, KVI_OP_REMOVE, id, key, key_len, NULL, 0, 0, 0, 0, 0);
}

kvi_status kvi_batch_add(kvi_batch *b, const char *id, const void *key, size_t key_len,
                         int64_t delta, int64_t expire_s)
{
    return batch_add(b, KVI_OP_ADD, id, key, key_len, NULL, 0, expire_s, delta, 0, 0);
}

kvi_status kvi_batch_sub(kvi_batch *b, const char *id, const void *key, size_t key_len,
                         int64_t delta, int64_t expire_s)
{
    return batch_add(b, KVI_OP_SUB, id, key, key_len, NULL, 0, expire_s, delta, 0, 0);
}

kvi_status kvi_batch_add_bounded(kvi_batch *b, const char *id, const void *key, size_t key_len,
                                 int64_t delta, int64_t expire_s, int64_t min, int64_t max)
{
    return batch_add(b, KVI_OP_ADD_BOUNDED, id, key, key_len, NULL, 0, expire_s, delta, min, max);
}

kvi_status kvi_batch_sub_bounded(kvi_batch *b, const char *id, const void *key, size_t key_len,
                                 int64_t delta, int64_t expire_s, int64_t min, int64_t max)
{
    return batch_add(b, KVI_OP_SUB_BOUNDED, id, key, key_len, NULL, 0, expire_s, delta, min, max);
}

kvi_status kvi_batch_counter_fetch(kvi_batch *b, const char *id, const void *key, size_t key_len)
{
    return batch_add(b, KVI_OP_COUNTER_FETCH, id, key, key_len, NULL, 0, 0, 0, 0, 0);
}

kvi_status kvi_batch_raw_query(kvi_batch *b, const char *id, const char *query, size_t query_len)
{
    return batch_add(b, KVI_OP_RAW_QUERY, id, NULL, 0, query, query_len, 0, 0, 0, 0);
}

/* ---- ending an operation ------------------------------------------------- */

void kvi_batch_op_done(kvi_conn *c, kvi_batch_op *op, kvi_status st)
{
    if (c == NULL || op == NULL || op->done)
        return;
    if ((st == KVI_OK && op->kind == KVI_OP_FETCH && op->value.data != NULL) ||
        (st == KVI_NOT_FOUND && op->value.data == NULL && op->reply == NULL)) {
        /* The common outcomes of a fetch: nothing to fix up, no message. */
        if (st != KVI_OK)
            op->integer = 0;
        else if (op->value.free_fn_ != NULL)
            ITEM_OF(op)->b->held = 1; /* a heap value (not the batch's memory) */
        kvi__clear_error();
        op->status = st;
        op->done = 1;
        return;
    }
    struct batch_item *it = ITEM_OF(op);
    it->b->held = 1; /* kvi_batch_clear looks at every item */
    if ((unsigned)st >= KVI_STATUS_COUNT)
        st = kvi_engine_error(c, KVI_E_INTERNAL, "batch: engine returned unknown status %d",
                              (int)st);
    if (st == KVI_OK && op->kind == KVI_OP_FETCH && op->value.data == NULL)
        st = kvi_value_set(c, &op->value, "", 0);
    if (st == KVI_OK && op->kind == KVI_OP_RAW_QUERY && op->reply == NULL)
        st = kvi_engine_error(c, KVI_E_INTERNAL, "raw_query: engine returned no reply");
    if (st != KVI_OK) {
        kvi_value_free(&op->value);
        kvi_reply_free(op->reply);
        op->reply = NULL;
        if (st != KVI_OUT_OF_BOUNDS)
            op->integer = 0;
    }
    if (KVI_STATUS_IS_ERROR(st)) {
        kvi *k = kvi_conn_context(c);
        char fallback[128];
        const char *m = kvi__error_is_set() ? kvi_errmsg(k) : "";
        if (m[0] == '\0') {
            snprintf(fallback, sizeof fallback, "%s: %s", kvi_conn_id(c), kvi_strerror(st));
            m = fallback;
        }
        it->msg = kvi__strdup(k, m); /* NULL when short: the status still tells */
    }
    kvi__clear_error(); /* the next op starts without this one's message */
    op->status = st;
    op->done = 1;
}

/* Whether a failure of a state-changing op may have happened after the
 * request was written: then it may have been applied. */
static int maybe_applied(kvi_status st)
{
    return st == KVI_E_TIMEOUT || st == KVI_E_IO || st == KVI_E_PROTOCOL;
}

kvi_status kvi_batch_op_single(kvi_conn *c, kvi_batch_op *op)
{
    if (c == NULL || op == NULL)
        return KVI_E_INVALID;
    const struct kvi_engine *e = c->engine;
    kvi_status st;
    kvi__clear_error();
    switch (op->kind) {
    case KVI_OP_STORE:
        st = e->store(c, op->key, op->key_len, op->val, op->val_len, op->expire_s);
        break;
    case KVI_OP_STORE_NX:
        st = e->store_nx(c, op->key, op->key_len, op->val, op->val_len, op->expire_s);
        break;
    case KVI_OP_FETCH:
        st = e->fetch(c, op->key, op->key_len, &op->value);
        break;
    case KVI_OP_REMOVE:
        st = e->remove(c, op->key, op->key_len);
        break;
    case KVI_OP_ADD:
        st = e->add(c, op->key, op->key_len, op->delta, op->expire_s, &op->integer);
        break;
    case KVI_OP_ADD_BOUNDED:
        st = e->add_bounded(c, op->key, op->key_len, op->delta, op->expire_s, op->min, op->max,
                            &op->integer);
        break;
    case KVI_OP_COUNTER_FETCH:
        st = e->counter_fetch(c, op->key, op->key_len, &op->integer);
        break;
    case KVI_OP_RAW_QUERY:
        st = e->raw_query(c, op->val, op->val_len, &op->reply);
        break;
    default:
        st = kvi_engine_error(c, KVI_E_INTERNAL, "batch: operation kind %d reached an engine",
                              (int)op->kind);
        break;
    }
    if (op->no_resend && maybe_applied(st)) {
        const char *m = kvi__error_is_set() ? kvi_errmsg(kvi_conn_context(c)) : "";
        char was[512];
        snprintf(was, sizeof was, "%s", m[0] ? m : kvi_strerror(st));
        st = kvi_engine_error(c, KVI_E_OUTCOME_UNKNOWN,
                              "%s (the request may have reached the server: whether it was "
                              "applied is unknown, and it is not sent again)",
                              was);
    }
    kvi_batch_op_done(c, op, st);
    return op->status;
}

/* ---- running ----------------------------------------------------------- */

static int deadline_passed(int64_t deadline_ms)
{
    return deadline_ms != 0 && kvi_monotonic_ms() >= deadline_ms;
}

static void end_unsent(kvi_conn *c, kvi_batch_op *op)
{
    kvi_batch_op_done(c, op,
                      kvi_engine_error(c, KVI_E_TIMEOUT,
                                       "the batch's deadline passed before this operation was "
                                       "sent"));
}

/* The ops of one engine id, through its batch slot or one by one; every
 * op has ended afterwards. */
static void group_ops(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms)
{
    if (deadline_passed(deadline_ms)) {
        for (size_t i = 0; i < n; i++)
            end_unsent(c, ops[i]);
    } else if (c->engine->abi_version >= 3 && c->engine->batch != NULL) {
        kvi__clear_error();
        c->engine->batch(c, ops, n, deadline_ms);
    } else {
        for (size_t i = 0; i < n; i++) {
            if (deadline_passed(deadline_ms))
                end_unsent(c, ops[i]);
            else
                kvi_batch_op_single(c, ops[i]);
        }
    }
}

/* The end of a group: an op the engine left open is an internal error;
 * stats and timing. */
static void group_end(kvi_batch *b, const struct run_group *g, kvi_batch_op *const *ops)
{
    size_t n = g->to - g->from, misses = 0, errors = 0;
    if (b->grp_counted == n && n > 0) {
        /* The engine ended them all and counted them (local fetches). */
        misses = b->grp_misses;
        n = 0;
    }
    b->grp_counted = 0;
    for (size_t i = 0; i < n; i++) {
        kvi_batch_op *op = ops[i];
        if (op->done && op->status == KVI_OK)
            continue; /* most */
        if (!op->done)
            kvi_batch_op_done(g->c, op,
                              kvi_engine_error(g->c, KVI_E_INTERNAL,
                                               "batch: the engine left the operation unanswered"));
        misses += op->status == KVI_NOT_FOUND;
        errors += KVI_STATUS_IS_ERROR(op->status);
    }
    b->nfailed += errors;
    kvi__op_batch_end(g->c, g->t0, g->coarse, g->to - g->from, misses, errors);
}

/* Groups the ops added since the last run by engine id, each group in the
 * order of addition, the groups in the order of their first op, into
 * b->ops / b->groups.  KVI_E_NOMEM (nothing changed). */
static kvi_status make_groups(kvi_batch *b)
{
    size_t todo = b->n - b->nrun; /* at most */
    b->ngroups = b->gi = 0;
    if (todo > b->ops_cap) {
        kvi_batch_op **ops = kvi__malloc(b->k, todo * sizeof *ops);
        struct run_group *groups = kvi__malloc(b->k, todo * sizeof *groups);
        if (ops == NULL || groups == NULL) {
            kvi__free(b->k, ops);
            kvi__free(b->k, groups);
            return kvi__error(b->k, KVI_E_NOMEM, "out of memory running a batch");
        }
        kvi__free(b->k, b->ops);
        kvi__free(b->k, b->groups);
        b->ops = ops;
        b->groups = groups;
        b->ops_cap = todo;
    }
    size_t m = 0;
    if (todo > 0 && !b->run_mixed && b->run_c != NULL) {
        /* Every op since the last run open and on one id: one group. */
        struct run_group *g = &b->groups[b->ngroups++];
        g->c = b->run_c;
        g->from = 0;
        for (size_t i = b->nrun; i < b->n; i++) {
            b->ops[m++] = &b->items[i].op;
            b->items[i].ended = 1;
        }
        g->to = m;
        b->grp_all_fetches = !b->run_other_kinds;
        for (size_t i = 0; g->c->engine != &kvi__engine_local && i < m; i++)
            fetch_inputs_empty(b->ops[i]);
    } else {
        b->grp_all_fetches = 0;
        for (size_t first = b->nrun; first < b->n; first++) {
            if (b->items[first].ended)
                continue;
            struct run_group *g = &b->groups[b->ngroups++];
            g->c = b->items[first].c;
            g->from = m;
            for (size_t i = first; i < b->n; i++) {
                if (!b->items[i].ended && b->items[i].c == g->c) {
                    b->ops[m++] = &b->items[i].op;
                    b->items[i].ended = 1;
                    if (g->c->engine != &kvi__engine_local)
                        fetch_inputs_empty(&b->items[i].op);
                }
            }
            g->to = m;
        }
    }
    b->run_c = NULL;
    b->run_mixed = 0;
    b->run_other_kinds = 0;
    return KVI_OK;
}

/* The run's summary: KVI_OK, or the status of the first op (from index
 * from on) that ended in an error, with its message as this thread's. */
static kvi_status run_summary(kvi_batch *b, size_t from)
{
    b->nrun = b->n;
    size_t failed = b->nfailed;
    b->nfailed = 0;
    for (size_t i = from; failed != 0 && i < b->n; i++) {
        const struct batch_item *it = &b->items[i];
        if (KVI_STATUS_IS_ERROR(it->op.status))
            return kvi__error(b->k, it->op.status, "batch operation %zu: %s", i,
                              it->msg ? it->msg : kvi_strerror(it->op.status));
    }
    kvi__discard_error();
    return KVI_OK;
}

kvi_status kvi_batch_run(kvi_batch *b, uint32_t timeout_ms)
{
    if (b == NULL || b->pending)
        return KVI_E_INVALID;
    kvi__clear_error();
    int64_t deadline_ms = timeout_ms ? kvi_monotonic_ms() + (int64_t)timeout_ms : 0;
    size_t from = b->nrun;
    kvi_status st = make_groups(b);
    if (st != KVI_OK)
        return st;
    for (size_t gi = 0; gi < b->ngroups; gi++) {
        struct run_group *g = &b->groups[gi];
        g->t0 = kvi__op_batch_begin(g->c, &g->coarse);
        group_ops(g->c, b->ops + g->from, g->to - g->from, deadline_ms);
        group_end(b, g, b->ops + g->from);
    }
    return run_summary(b, from);
}

/* ---- non-blocking runs ------------------------------------------------- */

static const struct kvi_engine_async *async_of(const kvi_conn *c)
{
    return c->engine->abi_version >= 3 ? c->engine->async : NULL;
}

/* Ends the pending run: summary, the done callback. */
static int async_finish(kvi_batch *b)
{
    size_t from = b->nrun;
    b->pending = 0;
    (void)run_summary(b, from);
    if (b->done != NULL)
        b->done(b->done_ud, b);
    return 1;
}

/* The wait's deadline: the batch's, or the engine's own earlier one (a
 * step with its own time limit, e.g. a server that must answer within its
 * timeout before the next is tried), which resume then handles. */
static void wait_deadline(const kvi_batch *b, kvi_wait *w)
{
    if (w->deadline_ms == 0 || (b->deadline_ms != 0 && b->deadline_ms < w->deadline_ms))
        w->deadline_ms = b->deadline_ms;
}

/* Runs groups from b->gi on until one waits (0, *w filled) or all are done
 * (1). */
static int async_advance(kvi_batch *b, kvi_wait *w)
{
    for (; b->gi < b->ngroups; b->gi++) {
        struct run_group *g = &b->groups[b->gi];
        kvi_batch_op **ops = b->ops + g->from;
        size_t n = g->to - g->from;
        const struct kvi_engine_async *as = async_of(g->c);
        g->t0 = kvi__op_batch_begin(g->c, &g->coarse);
        if (as != NULL && !deadline_passed(b->deadline_ms)) {
            kvi__clear_error();
            w->fd = -1;
            w->events = 0;
            w->deadline_ms = 0;
            int r = as->start(g->c, ops, n, b->deadline_ms, &b->estate, w);
            if (r == 0) {
                wait_deadline(b, w);
                return 0;
            }
            b->estate = NULL;
            if (r == 1) {
                group_end(b, g, ops);
                continue;
            }
        }
        group_ops(g->c, ops, n, b->deadline_ms);
        group_end(b, g, ops);
    }
    return async_finish(b);
}

int kvi_batch_start(kvi_batch *b, uint32_t timeout_ms, kvi_batch_done_fn done, void *ud,
                    kvi_wait *w)
{
    if (b == NULL || w == NULL || b->pending)
        return -1;
    kvi__clear_error();
    w->fd = -1;
    w->events = 0;
    w->deadline_ms = 0;
    if (make_groups(b) != KVI_OK)
        return -1;
    b->pending = 1;
    b->done = done;
    b->done_ud = ud;
    b->estate = NULL;
    b->deadline_ms = timeout_ms ? kvi_monotonic_ms() + (int64_t)timeout_ms : 0;
    return async_advance(b, w);
}

/* Ends the group the engine is waiting on with st, then every later op
 * not sent (they end in async_advance: the deadline has passed, or
 * cancel's status below). */
static void async_stop_group(kvi_batch *b, kvi_status st)
{
    struct run_group *g = &b->groups[b->gi];
    kvi__clear_error();
    async_of(g->c)->cancel(g->c, b->estate, st);
    b->estate = NULL;
    group_end(b, g, b->ops + g->from);
    b->gi++;
}

int kvi_batch_resume(kvi_batch *b, kvi_wait *w)
{
    if (b == NULL || w == NULL || !b->pending)
        return -1;
    kvi__clear_error();
    if (b->estate != NULL) {
        struct run_group *g = &b->groups[b->gi];
        if (deadline_passed(b->deadline_ms)) {
            async_stop_group(b, KVI_E_TIMEOUT);
        } else {
            w->deadline_ms = 0;
            int r = async_of(g->c)->resume(g->c, b->estate, w);
            if (r == 0) {
                wait_deadline(b, w);
                return 0;
            }
            b->estate = NULL;
            group_end(b, g, b->ops + g->from);
            b->gi++;
        }
    }
    return async_advance(b, w);
}

void kvi_batch_cancel(kvi_batch *b)
{
    if (b == NULL || !b->pending)
        return;
    if (b->estate != NULL)
        async_stop_group(b, KVI_E_CANCELED);
    for (; b->gi < b->ngroups; b->gi++) {
        struct run_group *g = &b->groups[b->gi];
        kvi_batch_op **ops = b->ops + g->from;
        g->t0 = kvi__op_batch_begin(g->c, &g->coarse);
        for (size_t i = 0; i < g->to - g->from; i++)
            kvi_batch_op_done(g->c, ops[i],
                              kvi_engine_error(g->c, KVI_E_CANCELED,
                                               "the batch was canceled before this operation "
                                               "was sent"));
        group_end(b, g, ops);
    }
    (void)async_finish(b);
}

/* ---- results ------------------------------------------------------------- */

static const struct batch_item *ended_item(const kvi_batch *b, size_t i)
{
    if (b == NULL || i >= b->n || !b->items[i].ended || !b->items[i].op.done)
        return NULL;
    return &b->items[i];
}

size_t kvi_batch_count(const kvi_batch *b)
{
    return b ? b->n : 0;
}

size_t kvi_batch_failed(const kvi_batch *b)
{
    size_t n = 0;
    for (size_t i = 0; b != NULL && i < b->n; i++)
        if (ended_item(b, i) && KVI_STATUS_IS_ERROR(b->items[i].op.status))
            n++;
    return n;
}

kvi_op_kind kvi_batch_kind(const kvi_batch *b, size_t i)
{
    return b != NULL && i < b->n ? b->items[i].kind : (kvi_op_kind)0;
}

kvi_status kvi_batch_status(const kvi_batch *b, size_t i)
{
    const struct batch_item *it = ended_item(b, i);
    return it ? it->op.status : KVI_E_INVALID;
}

const char *kvi_batch_errmsg(const kvi_batch *b, size_t i)
{
    const struct batch_item *it = ended_item(b, i);
    if (it == NULL || !KVI_STATUS_IS_ERROR(it->op.status))
        return "";
    return it->msg ? it->msg : kvi_strerror(it->op.status);
}

const char *kvi_batch_value(const kvi_batch *b, size_t i, size_t *len)
{
    if (len != NULL)
        *len = 0;
    const struct batch_item *it = ended_item(b, i);
    if (it == NULL || it->op.status != KVI_OK || it->op.value.data == NULL)
        return NULL;
    if (len != NULL)
        *len = it->op.value.len;
    return it->op.value.data;
}

kvi_status kvi_batch_take_value(kvi_batch *b, size_t i, kvi_value *out)
{
    if (out == NULL)
        return KVI_E_INVALID;
    kvi_value_free(out);
    if (kvi_batch_value(b, i, NULL) == NULL)
        return KVI_E_INVALID;
    kvi_value *v = &b->items[i].op.value;
    if (v->free_fn_ == NULL) {
        /* In the batch's memory (kvi_batch_op_value_alloc): a heap copy. */
        char *p = kvi__malloc(b->k, v->len + 1);
        if (p == NULL)
            return kvi__error(b->k, KVI_E_NOMEM, "out of memory taking a batch value");
        memcpy(p, v->data, v->len + 1);
        out->data = p;
        out->len = v->len;
        out->free_fn_ = b->k->alloc.free_fn;
        out->free_ud_ = b->k->alloc.ud;
    } else {
        *out = *v;
    }
    memset(v, 0, sizeof *v);
    return KVI_OK;
}

int64_t kvi_batch_integer(const kvi_batch *b, size_t i)
{
    const struct batch_item *it = ended_item(b, i);
    if (it == NULL)
        return 0;
    return it->op.status == KVI_OK || it->op.status == KVI_OUT_OF_BOUNDS ? it->op.integer : 0;
}

const kvi_reply *kvi_batch_reply(const kvi_batch *b, size_t i)
{
    const struct batch_item *it = ended_item(b, i);
    return it != NULL && it->op.status == KVI_OK ? it->op.reply : NULL;
}

/* ---- non-blocking single operations --------------------------------------- */

/* Empties b for one operation: -1 when b or w is NULL. */
static int start_prepare(kvi_batch *b, kvi_wait *w)
{
    if (b == NULL || w == NULL)
        return -1;
    kvi_batch_clear(b);
    return 0;
}

/* Starts b's one operation (a refused one ends at once with its status):
 * -1 when it could not be appended (out of memory). */
static int start_one(kvi_batch *b, uint32_t timeout_ms, kvi_batch_done_fn done, void *ud,
                     kvi_wait *w)
{
    return b->n == 1 ? kvi_batch_start(b, timeout_ms, done, ud, w) : -1;
}

int kvi_start_store(kvi_batch *b, const char *id, const void *key, size_t key_len, const void *val,
                    size_t val_len, int64_t expire_s, uint32_t timeout_ms, kvi_batch_done_fn done,
                    void *ud, kvi_wait *w)
{
    if (start_prepare(b, w) != 0)
        return -1;
    (void)kvi_batch_store(b, id, key, key_len, val, val_len, expire_s);
    return start_one(b, timeout_ms, done, ud, w);
}

int kvi_start_store_nx(kvi_batch *b, const char *id, const void *key, size_t key_len,
                       const void *val, size_t val_len, int64_t expire_s, uint32_t timeout_ms,
                       kvi_batch_done_fn done, void *ud, kvi_wait *w)
{
    if (start_prepare(b, w) != 0)
        return -1;
    (void)kvi_batch_store_nx(b, id, key, key_len, val, val_len, expire_s);
    return start_one(b, timeout_ms, done, ud, w);
}

int kvi_start_fetch(kvi_batch *b, const char *id, const void *key, size_t key_len,
                    uint32_t timeout_ms, kvi_batch_done_fn done, void *ud, kvi_wait *w)
{
    if (start_prepare(b, w) != 0)
        return -1;
    (void)kvi_batch_fetch(b, id, key, key_len);
    return start_one(b, timeout_ms, done, ud, w);
}

int kvi_start_remove(kvi_batch *b, const char *id, const void *key, size_t key_len,
                     uint32_t timeout_ms, kvi_batch_done_fn done, void *ud, kvi_wait *w)
{
    if (start_prepare(b, w) != 0)
        return -1;
    (void)kvi_batch_remove(b, id, key, key_len);
    return start_one(b, timeout_ms, done, ud, w);
}

int kvi_start_add(kvi_batch *b, const char *id, const void *key, size_t key_len, int64_t delta,
                  int64_t expire_s, uint32_t timeout_ms, kvi_batch_done_fn done, void *ud,
                  kvi_wait *w)
{
    if (start_prepare(b, w) != 0)
        return -1;
    (void)kvi_batch_add(b, id, key, key_len, delta, expire_s);
    return start_one(b, timeout_ms, done, ud, w);
}

int kvi_start_sub(kvi_batch *b, const char *id, const void *key, size_t key_len, int64_t delta,
                  int64_t expire_s, uint32_t timeout_ms, kvi_batch_done_fn done, void *ud,
                  kvi_wait *w)
{
    if (start_prepare(b, w) != 0)
        return -1;
    (void)kvi_batch_sub(b, id, key, key_len, delta, expire_s);
    return start_one(b, timeout_ms, done, ud, w);
}

int kvi_start_add_bounded(kvi_batch *b, const char *id, const void *key, size_t key_len,
                          int64_t delta, int64_t expire_s, int64_t min, int64_t max,
                          uint32_t timeout_ms, kvi_batch_done_fn done, void *ud, kvi_wait *w)
{
    if (start_prepare(b, w) != 0)
        return -1;
    (void)kvi_batch_add_bounded(b, id, key, key_len, delta, expire_s, min, max);
    return start_one(b, timeout_ms, done, ud, w);
}

int kvi_start_sub_bounded(kvi_batch *b, const char *id, const void *key, size_t key_len,
                          int64_t delta, int64_t expire_s, int64_t min, int64_t max,
                          uint32_t timeout_ms, kvi_batch_done_fn done, void *ud, kvi_wait *w)
{
    if (start_prepare(b, w) != 0)
        return -1;
    (void)kvi_batch_sub_bounded(b, id, key, key_len, delta, expire_s, min, max);
    return start_one(b, timeout_ms, done, ud, w);
}

int kvi_start_counter_fetch(kvi_batch *b, const char *id, const void *key, size_t key_len,
                            uint32_t timeout_ms, kvi_batch_done_fn done, void *ud, kvi_wait *w)
{
    if (start_prepare(b, w) != 0)
        return -1;
    (void)kvi_batch_counter_fetch(b, id, key, key_len);
    return start_one(b, timeout_ms, done, ud, w);
}

int kvi_start_raw_query(kvi_batch *b, const char *id, const char *query, size_t query_len,
                        uint32_t timeout_ms, kvi_batch_done_fn done, void *ud, kvi_wait *w)
{
    if (start_prepare(b, w) != 0)
        return -1;
    (void)kvi_batch_raw_query(b, id, query, query_len);
    return start_one(b, timeout_ms, done, ud, w);
}
