/*
 * batch.c -- the redis engine's batch slot: a pipeline.
 *
 * The ops of a batch are turned into the commands their single slots send
 * (SET, SET NX, GET, DEL, and the counter scripts as EVAL) and sent to each
 * server in one write on one connection, the replies read in order: one
 * round trip per server.  In a Redis Cluster the ops are grouped per
 * master of their key's slot.  A reply that says the command did not run
 * there (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, LOADING, NOSCRIPT) sends that
 * op once more through the single-operation path, which follows the
 * redirection (such an op then takes effect after the later ops of its
 * pipeline: only after a slot moved or the scripts were flushed).
 * In the blocking batch, raw queries (their key positions and deep replies)
 * and everything under wait_replicas (a WAIT per write) run one by one, in
 * their place; the non-blocking run pipelines both (one WAIT per pipeline).
 *
 * When the connection fails in the middle, the ops whose replies came
 * back have their results; every later one that was written fails with the
 * connection's status, a state-changing one with KVI_E_OUTCOME_UNKNOWN (it
 * may have run), the ones not yet written with the status alone; none is
 * sent again -- save a pipeline of GET/SET/DEL only whose pooled
 * connection turns out closed before any reply: the pool sends that again
 * once (kvi__redis_pipeline_partial, docs/batch.md).  When no request could be handed to a
 * connection at all (connect failed, server marked down), the first op
 * runs alone through the single path, which tries the failover list and
 * refreshes the slot map; if that reached a server, the rest is pipelined
 * again, else it fails with the same status without waiting again.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/timerfd.h>
#endif

#include "batch.h"
#include "counter.h"
#include "dispatch.h"
#include "error.h"
#include "conn.h"
#include "deep.h"
#include "nearcache.h"
#include "raw.h"
#include "route.h"
#include "sentinel.h"
#include "slotmap.h"
#include "state.h"

/* The words of one op's command. */
struct bcmd {
    const char *argv[8];
    size_t lens[8];
    char text[4][24];
};

/* Fills cmd/bc with the command of op (not a raw query).  No key is
 * needed: the pipeline goes to one node chosen before.  allow_sha 0 sends
 * counter scripts as EVAL of their text (no NOSCRIPT possible). */
static void build_cmd(kvi_conn *c, kvi_batch_op *op, struct kvi_redis_cmd *cmd, struct bcmd *bc,
                      int allow_sha)
{
    int argc = 0;
    memset(cmd, 0, sizeof *cmd);
    switch (op->kind) {
    case KVI_OP_STORE:
    case KVI_OP_STORE_NX:
        bc->argv[0] = "SET";
        bc->lens[0] = 3;
        bc->argv[1] = op->key;
        bc->lens[1] = op->key_len;
        bc->argv[2] = op->val;
        bc->lens[2] = op->val_len;
        argc = 3;
        if (op->kind == KVI_OP_STORE_NX) {
            bc->argv[argc] = "NX";
            bc->lens[argc++] = 2;
        }
        /* Without EX, SET also removes an earlier TTL. */
        if (op->expire_s > 0) {
            bc->argv[argc] = "EX";
            bc->lens[argc++] = 2;
            bc->lens[argc] = kvi_format_int64(op->expire_s, bc->text[0]);
            bc->argv[argc++] = bc->text[0];
        }
        cmd->is_write = 1;
        break;
    case KVI_OP_FETCH:
    case KVI_OP_COUNTER_FETCH:
    case KVI_OP_REMOVE:
        bc->argv[0] = op->kind == KVI_OP_REMOVE ? "DEL" : "GET";
        bc->lens[0] = 3;
        bc->argv[1] = op->key;
        bc->lens[1] = op->key_len;
        argc = 2;
        cmd->is_write = op->kind == KVI_OP_REMOVE;
        break;
    case KVI_OP_ADD:
    case KVI_OP_ADD_BOUNDED:
        argc = kvi__redis_counter_argv(c, op->kind == KVI_OP_ADD_BOUNDED, allow_sha, op->key,
                                       op->key_len, op->delta, op->expire_s, op->min, op->max,
                                       bc->text, bc->argv, bc->lens);
        cmd->is_write = 1;
        break;
    default:
        break;
    }
    cmd->argc = argc;
    cmd->argv = bc->argv;
    cmd->lens = bc->lens;
    cmd->resend_ok = !op->no_resend;
}

static void build(kvi_conn *c, kvi_batch_op *op, struct kvi_redis_cmd *cmd, struct bcmd *bc)
{
    build_cmd(c, op, cmd, bc, 1);
}

/* A reply saying the command did not run on this server: send the op
 * again through the single path, which knows what to do about it. */
static int not_run_here(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ERROR)
        return 0;
    return kvi__redis_is_error_kind(r, "MOVED") || kvi__redis_is_error_kind(r, "ASK") ||
           kvi__redis_is_error_kind(r, "TRYAGAIN") || kvi__redis_is_error_kind(r, "CLUSTERDOWN") ||
           kvi__redis_is_error_kind(r, "LOADING") || kvi__redis_is_error_kind(r, "NOSCRIPT");
}

/* A write of the batch got its reply or was cut (it may have run): the near
 * cache forgets the key. */
static void written(kvi_conn *c, const kvi_batch_op *op)
{
    if (op->kind == KVI_OP_RAW_QUERY)
        kvi__redis_nc_drop_all(c);
    else if (op->kind != KVI_OP_FETCH && op->kind != KVI_OP_COUNTER_FETCH)
        kvi__redis_nc_drop(c, op->key, op->key_len);
}

/* Ends op with the meaning of its reply r (freed), as its single slot would. */
static void end_with_reply(kvi_conn *c, kvi_batch_op *op, redisReply *r)
{
    kvi_status s;
    written(c, op);
    switch (op->kind) {
    case KVI_OP_STORE:
        s = r->type == REDIS_REPLY_STATUS ? KVI_OK : kvi__redis_unexpected(c, r, "SET");
        if (s == KVI_OK)
            freeReplyObject(r);
        break;
    case KVI_OP_STORE_NX:
        if (r->type == REDIS_REPLY_NIL || r->type == REDIS_REPLY_STATUS) {
            s = r->type == REDIS_REPLY_NIL ? KVI_KEY_EXISTS : KVI_OK;
            freeReplyObject(r);
        } else {
            s = kvi__redis_unexpected(c, r, "SET NX");
        }
        break;
    case KVI_OP_FETCH:
        if (r->type == REDIS_REPLY_NIL) {
            s = KVI_NOT_FOUND;
            freeReplyObject(r);
        } else if (r->type == REDIS_REPLY_STRING) {
            char *p = kvi_batch_op_value_alloc(c, op, r->len);
            if (p != NULL && r->len > 0)
                memcpy(p, r->str, r->len);
            s = p != NULL ? KVI_OK : kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
            freeReplyObject(r);
        } else {
            s = kvi__redis_unexpected(c, r, "GET");
        }
        break;
    case KVI_OP_REMOVE:
        if (r->type == REDIS_REPLY_INTEGER) {
            s = r->integer > 0 ? KVI_OK : KVI_NOT_FOUND;
            freeReplyObject(r);
        } else {
            s = kvi__redis_unexpected(c, r, "DEL");
        }
        break;
    case KVI_OP_COUNTER_FETCH:
        s = kvi__redis_counter_get_reply(c, r, &op->integer);
        break;
    case KVI_OP_ADD:
    case KVI_OP_ADD_BOUNDED:
        s = kvi__redis_counter_reply(c, op->kind == KVI_OP_ADD_BOUNDED, r, &op->integer);
        break;
    case KVI_OP_RAW_QUERY: /* only from the non-blocking pipeline */
        s = kvi__redis_raw_reply(c, r, &op->reply);
        break;
    default:
        freeReplyObject(r);
        s = kvi_engine_error(c, KVI_E_INTERNAL, "batch: unexpected operation kind");
        break;
    }
    kvi_batch_op_done(c, op, s);
}

/* Ends the ops that did not get a reply after the connection failed with
 * s (message msg): a state-changing one may have run. */
static void end_cut(kvi_conn *c, kvi_batch_op *op, kvi_status s, const char *msg)
{
    /* A raw query's effect is unknown: whether it ran, too. */
    if (op->no_resend || op->kind == KVI_OP_RAW_QUERY)
        s = kvi_engine_error(c, KVI_E_OUTCOME_UNKNOWN,
                             "%s (sent in a pipeline that was cut before its reply: whether it "
                             "ran is unknown, and it is not sent again)",
                             msg);
    else
        s = kvi_engine_error(c, s, "%s (sent in a pipeline that was cut before its reply)", msg);
    written(c, op);
    kvi_batch_op_done(c, op, s);
}

/* Ends op, never sent, with s (message msg). */
static void end_unsent(kvi_conn *c, kvi_batch_op *op, kvi_status s, const char *msg)
{
    kvi_batch_op_done(c, op, kvi_engine_error(c, s, "%s", msg));
}

/* The calling thread's current detail message, copied without its "id: "
 * prefix (kvi_engine_error puts it back when the copy is used). */
static void copy_msg(kvi_conn *c, char *buf, size_t len)
{
    const char *m = kvi_errmsg(kvi_conn_context(c));
    size_t idl = strlen(kvi_conn_id(c));
    if (strncmp(m, kvi_conn_id(c), idl) == 0 && m[idl] == ':' && m[idl + 1] == ' ')
        m += idl + 2;
    snprintf(buf, len, "%s", m);
}

static int network_failure(kvi_status s)
{
    return s == KVI_E_CONNECT || s == KVI_E_TIMEOUT || s == KVI_E_IO;
}

/* ---- replies without reply objects -------------------------------------
 *
 * While a pipeline's replies are read, the reader's object functions are
 * replaced (kvi__redis_pipeline_partial): a top-level reply an op expects
 * in its simplest form -- a fetch's string or nil, a store's status (or
 * nil for store_nx), a remove's integer -- becomes a small record in
 * views[i] (a fetched string is copied straight into the batch's memory)
 * and the reply is the marker VIEW; anything else (errors, arrays, the
 * counters' replies, a type the op does not expect) is made by hiredis's
 * own functions and ends as before.  Saves two allocations, a copy and a
 * free per reply.  The reader hands the functions the replies in order, so
 * the i-th top-level object is op i's. */
struct view {
    int type; /* REDIS_REPLY_STRING, _STATUS, _NIL or _INTEGER */
    int nomem;
    long long integer;
};

struct view_run {
    kvi_conn *c;
    kvi_batch_op *const *ops;
    struct view *views;
    size_t n, next; /* next: index of the next top-level reply */
};

static _Thread_local struct view_run *view_run KVI_MODULE_TLS;
static char view_mark;
#define VIEW ((redisReply *)(void *)&view_mark)

/* hiredis's own object functions (a static table in libhiredis). */
static redisReplyObjectFunctions *default_fns;
static pthread_once_t default_fns_once = PTHREAD_ONCE_INIT;

static void default_fns_init(void)
{
#if !defined(HIREDIS_MAJOR) || HIREDIS_MAJOR >= 1
    /* A newer reader hands a RESP3 double, bool or big number (which a
     * hostile server may send) to createDouble/createBool, which views do
     * not set: it would then return a fake object pointer and every later
     * view would belong to the wrong op.  No views there (default_fns
     * stays NULL): replies are read as reply objects. */
#else
    redisReader *r = redisReaderCreate();
    if (r != NULL) {
        default_fns = r->fn;
        redisReaderFree(r);
    }
#endif
}

/* The op a top-level reply of this type belongs to, when the op takes it
 * as a view; NULL otherwise (a nested element, or not the expected type). */
static kvi_batch_op *view_op(const redisReadTask *task, int type)
{
    struct view_run *vr = view_run;
    if (task->parent != NULL || vr == NULL || vr->next >= vr->n)
        return NULL;
    kvi_batch_op *op = vr->ops[vr->next];
    switch (op->kind) {
    case KVI_OP_FETCH:
        return type == REDIS_REPLY_STRING || type == REDIS_REPLY_NIL ? op : NULL;
    case KVI_OP_STORE:
        return type == REDIS_REPLY_STATUS ? op : NULL;
    case KVI_OP_STORE_NX:
        return type == REDIS_REPLY_STATUS || type == REDIS_REPLY_NIL ? op : NULL;
    case KVI_OP_REMOVE:
        return type == REDIS_REPLY_INTEGER ? op : NULL;
    default:
        return NULL;
    }
}

/* Counts a top-level reply made by hiredis's functions. */
static void *counted(const redisReadTask *task, void *obj)
{
    if (task->parent == NULL && view_run != NULL)
        view_run->next++;
    return obj;
}

static void *view_string(const redisReadTask *task, char *str, size_t len)
{
    kvi_batch_op *op = view_op(task, task->type);
    if (op == NULL)
        return counted(task, default_fns->createString(task, str, len));
    struct view *v = &view_run->views[view_run->next++];
    v->type = task->type;
    v->nomem = 0;
    if (task->type == REDIS_REPLY_STRING) {
        char *p = kvi_batch_op_value_alloc(view_run->c, op, len);
        if (p == NULL)
            v->nomem = 1;
        else if (len > 0)
            memcpy(p, str, len);
    }
    return VIEW;
}

static void *view_integer(const redisReadTask *task, long long value)
{
    if (view_op(task, REDIS_REPLY_INTEGER) == NULL)
        return counted(task, default_fns->createInteger(task, value));
    struct view *v = &view_run->views[view_run->next++];
    v->type = REDIS_REPLY_INTEGER;
    v->integer = value;
    return VIEW;
}

static void *view_nil(const redisReadTask *task)
{
    if (view_op(task, REDIS_REPLY_NIL) == NULL)
        return counted(task, default_fns->createNil(task));
    view_run->views[view_run->next++].type = REDIS_REPLY_NIL;
    return VIEW;
}

static void *view_array(const redisReadTask *task, int elements)
{
    return counted(task, default_fns->createArray(task, elements));
}

static void view_free(void *obj)
{
    if (obj != VIEW)
        default_fns->freeObject(obj);
}

static redisReplyObjectFunctions view_fns = {
    .createString = view_string,
    .createArray = view_array,
    .createInteger = view_integer,
    .createNil = view_nil,
    .freeObject = view_free,
};

/* Ends op with its view v, as end_with_reply would with the reply. */
static void end_with_view(kvi_conn *c, kvi_batch_op *op, const struct view *v)
{
    kvi_status s;
    written(c, op);
    switch (op->kind) {
    case KVI_OP_FETCH:
        s = v->type == REDIS_REPLY_NIL ? KVI_NOT_FOUND
            : v->nomem                 ? kvi_engine_error(c, KVI_E_NOMEM, "out of memory")
                                       : KVI_OK;
        break;
    case KVI_OP_STORE_NX:
        s = v->type == REDIS_REPLY_NIL ? KVI_KEY_EXISTS : KVI_OK;
        break;
    case KVI_OP_REMOVE:
        s = v->integer > 0 ? KVI_OK : KVI_NOT_FOUND;
        break;
    default: /* KVI_OP_STORE: its status */
        s = KVI_OK;
        break;
    }
    kvi_batch_op_done(c, op, s);
}

/* Set while the rest of a group is pipelined again after a connect
 * failure: that happens once, never recursively. */
static _Thread_local int regrouping KVI_MODULE_TLS;

/* The ops[0..n) of a pipeline to one node end after it ran with s (msg),
 * got replies and appended requests handed to the connection. */
static void pipeline_done(kvi_conn *c, kvi_batch_op **ops, size_t n, int64_t deadline_ms,
                          kvi_status s, const char *msg, size_t got, size_t appended,
                          redisReply **replies, struct view *views)
{
    for (size_t i = 0; i < got; i++) {
        if (replies[i] == VIEW) {
            end_with_view(c, ops[i], &views[i]);
        } else if (not_run_here(replies[i])) {
            freeReplyObject(replies[i]);
            kvi_batch_op_single(c, ops[i]);
        } else {
            end_with_reply(c, ops[i], replies[i]);
        }
    }
    if (s == KVI_OK)
        return;
    if (appended > 0) {
        for (size_t i = got; i < appended; i++)
            end_cut(c, ops[i], s, msg);
        for (size_t i = appended; i < n; i++)
            end_unsent(c, ops[i], s, msg);
        return;
    }
    /* Nothing reached a server: one op alone through the single path
     * (failover list, fresh slot map); if a server answered it, pipeline
     * the rest again (once), else fail them at once with its status. */
    kvi_status one = kvi_batch_op_single(c, ops[0]);
    if (n == 1)
        return;
    if (!network_failure(one) && one != KVI_E_OUTCOME_UNKNOWN && !regrouping) {
        regrouping = 1;
        kvi__redis_batch(c, ops + 1, n - 1, deadline_ms);
        regrouping = 0;
        return;
    }
    for (size_t i = 1; i < n; i++)
        end_unsent(c, ops[i], s, msg);
}

/* Pipelines ops[0..n) (no raw queries) to node.  Scratch: cmds, bcs and
 * replies of n entries. */
static void run_on_node(kvi_conn *c, struct kvi_redis_node *node, kvi_batch_op **ops, size_t n,
                        int64_t deadline_ms, struct kvi_redis_cmd *cmds, struct bcmd *bcs,
                        redisReply **replies, struct view *views)
{
    for (size_t i = 0; i < n; i++)
        build(c, ops[i], &cmds[i], &bcs[i]);
    size_t got = 0, appended = 0;
    pthread_once(&default_fns_once, default_fns_init);
    struct view_run vr = {c, ops, views, n, 0};
    struct view_run *outer = view_run;
    view_run = &vr;
    kvi_status s = kvi__redis_pipeline_partial(c, node, n, cmds, replies, deadline_ms,
                                               default_fns != NULL ? &view_fns : NULL, &vr.next,
                                               &got, &appended);
    view_run = outer;
    char msg[400] = "";
    if (s != KVI_OK)
        copy_msg(c, msg, sizeof msg);
    pipeline_done(c, ops, n, deadline_ms, s, msg, got, appended, replies, views);
}

/* A group of a batch: ops[from, to) of the grouped array go to node. */
struct group {
    struct kvi_redis_node *node;
    size_t from, to;
};

/* One node's pipeline among several, with its replies' views. */
struct npipe {
    struct kvi_redis_pipe p;
    struct view_run vr;
    struct view_run *outer;
};

static void npipe_enter(void *ud, int on)
{
    struct npipe *np = ud;
    if (on) {
        np->outer = view_run;
        view_run = &np->vr;
    } else {
        view_run = np->outer;
    }
}

/* Pipelines the groups gs[0..ng) (ops grouped in ops[]) to their nodes at
 * once: every node's requests are written before any reply is read, so
 * the round trips overlap.  Scratch indexed like ops. */
static void run_on_nodes(kvi_conn *c, const struct group *gs, size_t ng, kvi_batch_op **ops,
                         int64_t deadline_ms, struct kvi_redis_cmd *cmds, struct bcmd *bcs,
                         redisReply **replies, struct view *views)
{
    enum { SMALL = 4 };
    struct npipe small[SMALL];
    struct kvi_redis_pipe *small_pipes[SMALL];
    struct npipe *np = small;
    struct kvi_redis_pipe **pipes = small_pipes;
    if (ng > SMALL) {
        np = kvi_engine_malloc(c, ng * sizeof *np);
        pipes = kvi_engine_malloc(c, ng * sizeof *pipes);
    }
    if (np == NULL || pipes == NULL) {
        if (np != small)
            kvi_engine_free(c, np);
        if (pipes != small_pipes)
            kvi_engine_free(c, pipes);
        for (size_t g = 0; g < ng; g++)
            run_on_node(c, gs[g].node, ops + gs[g].from, gs[g].to - gs[g].from, deadline_ms,
                        cmds, bcs, replies, views);
        return;
    }
    pthread_once(&default_fns_once, default_fns_init);
    for (size_t g = 0; g < ng; g++) {
        size_t from = gs[g].from, m = gs[g].to - from;
        for (size_t i = from; i < gs[g].to; i++)
            build(c, ops[i], &cmds[i], &bcs[i]);
        np[g].vr = (struct view_run){c, ops + from, views + from, m, 0};
        np[g].outer = NULL;
        struct kvi_redis_pipe *p = &np[g].p;
        p->node = gs[g].node;
        p->count = m;
        p->cmds = cmds + from;
        p->replies = replies + from;
        p->enter = npipe_enter;
        p->ud = &np[g];
        p->fns_seq = &np[g].vr.next;
        pipes[g] = p;
    }
    kvi__redis_pipeline_multi(c, pipes, ng, deadline_ms, default_fns != NULL ? &view_fns : NULL);
    for (size_t g = 0; g < ng; g++) {
        size_t from = gs[g].from;
        const struct kvi_redis_pipe *p = &np[g].p;
        pipeline_done(c, ops + from, p->count, deadline_ms, p->st, p->err, p->got, p->appended,
                      replies + from, views + from);
    }
    if (np != small) {
        kvi_engine_free(c, np);
        kvi_engine_free(c, pipes);
    }
}

static int must_run_alone(kvi_batch_op *op)
{
    return op->kind == KVI_OP_RAW_QUERY;
}

/* rslot[] of a raw query (redis_arun): no key (any master), or keys only
 * the server can name (COMMAND GETKEYS is asked first); else its first
 * key's slot. */
enum { RSLOT_NONE = -1, RSLOT_ASK = -2 };

/* See batch.h. */
void kvi__redis_batch(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms)
{
    const struct kvi_redis_node_cfg *cfg = &kvi__redis_priv(c)->node_cfg;
    struct kvi_redis_state *st = NULL;
    int cluster = 0;
    /* A known mode needs no lookup (is_cluster costs a getpid too). */
    int mode = atomic_load(&kvi__redis_priv(c)->mode);
    kvi_status s = KVI_OK;
    if (mode == KVI_REDIS_MODE_STANDALONE || mode == KVI_REDIS_MODE_CLUSTER)
        cluster = mode == KVI_REDIS_MODE_CLUSTER;
    else
        s = kvi__redis_is_cluster(c, &cluster);
    if (s == KVI_OK)
        s = kvi__redis_state_get(c, &st);
    if (s != KVI_OK || cfg->wait_replicas > 0) {
        /* No mode yet (nothing reachable), or a WAIT after every write:
         * the single path for each. */
        for (size_t i = 0; i < n; i++)
            kvi_batch_op_single(c, ops[i]);
        return;
    }
    /* One allocation for the scratch arrays, the most aligned first. */
    size_t per = sizeof(struct kvi_redis_cmd) + sizeof(struct bcmd) + sizeof(struct view) +
                 sizeof(struct group) + sizeof(kvi_batch_op *) + sizeof(struct kvi_redis_node *) + sizeof(redisReply *) +
                 1;
    /* Small batches use the stack: a heap block of this size costs malloc a
     * consolidation pass each time. */
    enum { STACK_OPS = 16 };
    _Alignas(max_align_t) char small[STACK_OPS *
                                     (sizeof(struct kvi_redis_cmd) + sizeof(struct bcmd) +
                                      sizeof(struct view) + sizeof(struct group) +
                                      sizeof(kvi_batch_op *) +
                                      sizeof(struct kvi_redis_node *) + sizeof(redisReply *) + 1)];
    char *scratch = n <= STACK_OPS         ? small
                    : n <= SIZE_MAX / per ? kvi_engine_malloc(c, n * per)
                                          : NULL;
    if (scratch == NULL) {
        for (size_t i = 0; i < n; i++)
            end_unsent(c, ops[i], KVI_E_NOMEM, "out of memory building a pipeline");
        return;
    }
    struct kvi_redis_cmd *cmds = (struct kvi_redis_cmd *)(void *)scratch;
    struct bcmd *bcs = (struct bcmd *)(void *)(cmds + n);
    struct view *views = (struct view *)(void *)(bcs + n);
    struct group *gs = (struct group *)(void *)(views + n);
    kvi_batch_op **group = (kvi_batch_op **)(void *)(gs + n);
    struct kvi_redis_node **node_of = (struct kvi_redis_node **)(void *)(group + n);
    redisReply **replies = (redisReply **)(void *)(node_of + n);
    unsigned char *taken = (unsigned char *)(replies + n);
    /* Segments between ops that run alone keep the order of the batch. */
    for (size_t from = 0; from < n;) {
        if (must_run_alone(ops[from])) {
            kvi_batch_op_single(c, ops[from++]);
            continue;
        }
        size_t to = from;
        while (to < n && !must_run_alone(ops[to]))
            to++;
        for (size_t i = from; i < to; i++) {
            taken[i] = 0;
            if (cluster) {
                node_of[i] = kvi__redis_key_node(st, ops[i]->key, ops[i]->key_len);
                if (node_of[i] == NULL) {
                    kvi__redis_refresh_map(c, st, 1);
                    node_of[i] = kvi__redis_key_node(st, ops[i]->key, ops[i]->key_len);
                }
            } else {
                node_of[i] = st->seeds[atomic_load(&st->current)];
            }
        }
        /* Per node, in the order of its first op; an op with no node known
         * (no map) runs alone, which reports why. */
        size_t m = 0, ng = 0;
        for (size_t first = from; first < to; first++) {
            if (taken[first])
                continue;
            struct kvi_redis_node *node = node_of[first];
            if (node == NULL) {
                taken[first] = 1;
                kvi_batch_op_single(c, ops[first]);
                continue;
            }
            gs[ng].node = node;
            gs[ng].from = m;
            for (size_t i = first; i < to; i++)
                if (!taken[i] && node_of[i] == node) {
                    group[m++] = ops[i];
                    taken[i] = 1;
                }
            gs[ng++].to = m;
        }
        if (ng > 0 && deadline_ms != 0 && kvi_monotonic_ms() >= deadline_ms) {
            for (size_t i = 0; i < m; i++)
                end_unsent(c, group[i], KVI_E_TIMEOUT,
                           "the batch's deadline passed before this operation was sent");
        } else if (ng == 1) {
            run_on_node(c, gs[0].node, group, m, deadline_ms, cmds, bcs, replies, views);
        } else if (ng > 1) {
            /* Several masters: all written first, the replies read as they
             * come. */
            run_on_nodes(c, gs, ng, group, deadline_ms, cmds, bcs, replies, views);
        }
        from = to;
    }
    if (scratch != small)
        kvi_engine_free(c, scratch);
}

/* ---- non-blocking batches (struct kvi_engine_async) --------------------- */

/* A pipeline driven by the caller's event loop: connect (a new connection
 * is started without waiting: connect, TLS and AUTH are steps of
 * kvi__redis_conn_step), write, read the replies, each step resumed when
 * the socket is ready.  In a Cluster one such pipeline per master, all
 * in flight at once (the caller waits on an epoll descriptor holding
 * their sockets while more than one waits).  An op answered
 * MOVED or ASK did not run there: it is sent again, after the round of
 * pipelines it was in, to the node the redirection names, through that
 * node's non-blocking connection (after ASKING for ASK; a MOVED also
 * records the slot's new master in the slot map, no full refresh), at most
 * MAX_REDIRECTS times.  An op answered TRYAGAIN, CLUSTERDOWN or LOADING
 * did not run: it is sent again after a backoff waited on a timerfd (the
 * map read again first after CLUSTERDOWN or when its slot has no master);
 * NOSCRIPT (not expected: EVAL) goes through the single path at the end.
 * A connection whose mode is not known yet decides it with a map read by
 * steps (detect); a Cluster's map read moves on node after node.  Standalone
 * and Sentinel also pipeline raw queries (replies read with deep.c) and,
 * under wait_replicas, one WAIT after the writes (their replies held until
 * it answers).  With Sentinel the sentinels are asked in turn by steps
 * (each within its own time limit, the wait's deadline), a new connection
 * to the master asks ROLE before the batch is written, and a master that
 * fails before anything ran (unreachable, not a master, READONLY) makes
 * the sentinels be asked again, after a backoff on the timerfd, for the
 * ops that did not run.  Raw queries in a Cluster go to the master of
 * their first key's slot (route.h's table, else COMMAND GETKEYS asked by
 * the map read's steps first).  Each pipeline keeps the connection's own
 * time limits (connect_timeout to connect and set up, timeout per reply),
 * as the single path. */
enum { RA_CONNECT, RA_ROLE, RA_ROLE_READ, RA_WRITE, RA_FLUSH, RA_READ };

/* Sentinel: after the master failed a run (unreachable before anything
 * was written, not a master by ROLE, a write answered READONLY) the
 * sentinels are asked again after a backoff waited on the run's timer: 10
 * ms, twice as long each time up to 200 ms, as long as it ends within the
 * connection's timeout and before the batch's deadline (as the single
 * path's sleeps).  Without a timer (not Linux, or timerfd failed, e.g.
 * EMFILE): at once, MAX_REASKS times at most. */
enum { MAX_REASKS = 3, REASK_BACKOFF_FIRST_MS = 10, REASK_BACKOFF_MAX_MS = 200 };

/* Redirections one op follows before it fails (as the single path's
 * attempts). */
enum { MAX_REDIRECTS = 5 };

struct redis_arun;

/* One node's pipeline. */
struct redis_async {
    struct kvi_redis_node *node;
    struct kvi_redis_link *link;
    kvi_batch_op *const *ops;
    const unsigned char *ask;  /* ask[i]: send ASKING before ops[i] */
    const unsigned char *hops; /* redirections ops[i] followed so far */
    size_t n, got;
    int phase;
    int probe;
    int ask_read;   /* the ASKING reply before ops[got]'s was read */
    int any_ask;    /* some ask[i] is set */
    int reused;     /* the link came from the pool */
    int resendable; /* every op may be sent twice (no store_nx, add, bounded) */
    int checked;    /* the link was polled before use (or is new) */
    struct redis_arun *run;
    /* Replies read as views (see "replies without reply objects"). */
    struct view *views; /* n of them */
    struct view_run vr;
    redisReplyObjectFunctions *saved_fns;
    int fns_on;
    /* wait_replicas (standalone, Sentinel): a WAIT follows the ops; the
     * replies of the writes are held (held[i], n of them) until it answers. */
    int wait, waited;
    redisReply **held;
    /* Raw queries among the ops: every reply is read with deep.c's reader
     * (any depth), dr, instead of hiredis's. */
    int deep;
    struct kvi_redis_deep *dr;
    /* Sentinel: ROLE is asked before anything of the batch is written
     * when the run's question named the master (role_sent: the request is
     * out). */
    int role, role_sent;
    int readonly; /* a write was answered READONLY */
    /* The connection's own time limits, as the single calls': what the
     * pipeline waits for must come by limit -- counted from its first
     * wait (limit 0), limit_ms long: connect_timeout while connecting
     * (TCP, TLS, AUTH/SELECT), then timeout for each reply (plus
     * wait_timeout under WAIT). */
    int64_t limit;
    uint32_t limit_ms;
};

/* An op to send again after a backoff, with the reply that said it did
 * not run (NULL: no master known for its slot). */
struct redis_retry {
    kvi_batch_op *op;
    redisReply *last;
};

/* An op to send again where a redirection sent it. */
struct redis_redir {
    kvi_batch_op *op;
    struct kvi_redis_node *node;
    unsigned char ask, hops;
};

/* The whole run: the ops of this round grouped per node, the node being
 * served, the redirected ops of the next round, the ops to send again
 * through the single path at the end. */
struct redis_arun {
    struct kvi_redis_state *st;
    int cluster;
    kvi_batch_op **ops;
    unsigned char *ask, *hops;
    size_t n;
    struct {
        struct kvi_redis_node *node;
        size_t from, to;
    } *groups;
    size_t ngroups, gi;
    /* The round's pipelines, one per group, all in flight at once:
     * ras[g] waits for wts[g] while waiting[g].  With more than one
     * waiting, the caller waits on epfd (Linux: an epoll descriptor on
     * which each waiting pipeline's socket is registered, regfd[g]; it is
     * readable when any of them is ready).  Without epoll the groups run
     * one after the other. */
    /* TRYAGAIN, CLUSTERDOWN, LOADING (the command did not run), or no
     * master for the key's slot: sent again after a backoff (MAX_SLEEPS
     * times at most, within the connection's timeout), waited on a
     * timerfd (tfd, backing); remap: read the slot map first. */
    struct redis_retry *retry;
    size_t nretry;
    int tries, backing, remap, tfd;
    int64_t backoff, retry_until;
    /* Sentinel: the backoff before the next re-ask (see MAX_REASKS), the
     * end of the time for them (0: none begun); timerless: the timer
     * could not be armed, re-asks go at once and MAX_REASKS times at most. */
    int64_t reask_backoff, reask_until;
    int timerless;
    /* The map read's nodes (mnodes[mi] being asked), what it got (1 a
     * map, 2 a standalone server under cluster=auto), the last failure;
     * detect: the connection's mode is decided by it; mretry: a map read
     * before a retry round. */
    struct kvi_redis_node **mnodes;
    size_t nm, mi, mseed0;
    int mshards, mgot, detect, mretry;
    int64_t mdeadline; /* the node asked must answer by then (0: no limit) */
    struct kvi_redis_node *mhint; /* ask it first (a MOVED named it) */
    kvi_status mst;
    char merr[400];
    struct redis_async *ras;
    kvi_wait *wts;
    unsigned char *waiting;
    int *regfd;
    size_t nwait, lone;
    int epfd, via_epoll, concurrent;
    /* Standalone failover list: the host the run began with, how many
     * after it were tried since. */
    int failover;
    size_t fo_first, fo_tried;
    struct redis_redir *next;
    size_t nnext;
    /* A Cluster whose map lacks a key's slot: CLUSTER SHARDS is read
     * first, step by step (map != MAP_NONE), then the ops are grouped. */
    int map;
    const char *sentinel; /* Sentinel: the master's name (the read asks for it) */
    struct kvi_redis_node *mnode;
    struct kvi_redis_link *mlink;
    int mprobe;
    kvi_batch_op **orig; /* the batch's ops, in its order */
    size_t norig;
    struct kvi_redis_node **node_of;
    int64_t deadline_ms;
    kvi_batch_op **again;
    size_t nagain;
    struct view *views; /* one per op, in the order of ops */
    redisReply **held;  /* with wait_replicas: one per op, in the order of ops */
    int *rslot; /* with raw queries: the slot of orig[i]'s first key (RSLOT_*) */
    /* Cluster raw queries whose keys only the server can name (nask of
     * them): COMMAND GETKEYS is asked of a node by the map read's steps
     * (gk: for orig[gk_i], the question's words in gk_argv/gk_lens, the
     * query's own in gk_words/gk_wlens/gk_count). */
    size_t nask, gk_i, gk_count;
    int gk;
    const char **gk_argv;
    size_t *gk_lens;
    char **gk_words;
    size_t *gk_wlens;
    /* Sentinel: the master's name (NULL otherwise).  A question goes to the
     * sentinels in turn from sn_first (sn_tried asked so far, sn_down of
     * them unreachable; sn_st/sn_msg the most telling failure).  reask:
     * the ops in next wait for the sentinels to be asked again (reasks
     * times so far); lookup_next: the question under way is for them. */
    const char *sname;
    size_t sn_first, sn_tried, sn_down;
    kvi_status sn_st;
    char sn_msg[400];
    int64_t sn_deadline; /* the sentinel asked must answer by then */
    int reask, reasks, lookup_next;
    int named; /* this run's question named the master (ROLE is checked) */
};

/* Releases ra's connection (kept for reuse or closed) and breaker. */
/* Gives the link's reader its own object functions back. */
static void ra_unhook(struct redis_async *ra)
{
    if (ra->fns_on && ra->link != NULL && ra->link->conn.reader != NULL)
        ra->link->conn.reader->fn = ra->saved_fns;
    ra->fns_on = 0;
}

static void ra_close(kvi_conn *c, struct redis_async *ra, int keep_link, kvi_status st)
{
    ra_unhook(ra);
    kvi__redis_deep_free(ra->dr);
    ra->dr = NULL;
    if (ra->link != NULL) {
        if (keep_link)
            kvi__redis_link_give(c, ra->node, ra->link);
        else
            kvi__redis_link_drop(c, ra->link);
        ra->link = NULL;
    }
    kvi_breaker_leave(c, ra->node->breaker, ra->node->addr.name, ra->probe, st);
}

static int is_write(const kvi_batch_op *op)
{
    return op->kind == KVI_OP_STORE || op->kind == KVI_OP_STORE_NX || op->kind == KVI_OP_REMOVE ||
           op->kind == KVI_OP_ADD || op->kind == KVI_OP_ADD_BOUNDED;
}

/* A write answered and then not confirmed by the WAIT after it (as the
 * single path: KVI_E_TIMEOUT -- applied on the master, not acknowledged
 * -- and for a state change that must not run twice, as the batch's single
 * path words it, KVI_E_OUTCOME_UNKNOWN). */
static void end_unconfirmed(kvi_conn *c, kvi_batch_op *op, kvi_status s, const char *msg)
{
    written(c, op);
    if (op->no_resend)
        s = kvi_engine_error(c, KVI_E_OUTCOME_UNKNOWN,
                             "%s (the request may have reached the server: whether it was "
                             "applied is unknown, and it is not sent again)",
                             msg);
    else
        s = kvi_engine_error(c, s, "%s", msg);
    kvi_batch_op_done(c, op, s);
}

/* The WAIT after ra's writes got no answer (s, msg): the held writes
 * were applied, whether the replicas have them is unknown. */
static void ra_end_held(kvi_conn *c, struct redis_async *ra, kvi_status s, const char *msg)
{
    char m[480];
    snprintf(m, sizeof m, "%s (the write was answered, the WAIT for its replicas was not)", msg);
    for (size_t i = 0; i < ra->got; i++)
        if (ra->held[i] != NULL) {
            freeReplyObject(ra->held[i]);
            ra->held[i] = NULL;
            end_unconfirmed(c, ra->ops[i], s, m);
        }
}

/* The WAIT after ra's writes answered acked (-1: not a count): each held
 * write ends with its reply, or, when fewer replicas than wait_replicas
 * confirmed it, as unconfirmed (an error reply keeps its error). */
static void ra_end_waited(kvi_conn *c, struct redis_async *ra, long long acked)
{
    const struct kvi_redis_node_cfg *cfg = &ra->node->cfg;
    char m[400];
    snprintf(m, sizeof m,
             "write applied on %s but confirmed by %lld of %u replicas within %u ms; it may be "
             "lost in a failover",
             ra->node->addr.name, acked < 0 ? 0 : acked, cfg->wait_replicas,
             (unsigned)cfg->wait_timeout_ms);
    for (size_t i = 0; i < ra->n; i++) {
        redisReply *r = ra->held[i];
        if (r == NULL)
            continue;
        ra->held[i] = NULL;
        if (r->type != REDIS_REPLY_ERROR && acked < (long long)cfg->wait_replicas) {
            freeReplyObject(r);
            end_unconfirmed(c, ra->ops[i], KVI_E_TIMEOUT, m);
        } else {
            end_with_reply(c, ra->ops[i], r);
        }
    }
}

/* Ends the ops from ra->got on after a failure or a stop with s: a
 * state change already written may have run. */
static void ra_end_rest(kvi_conn *c, struct redis_async *ra, kvi_status s, const char *msg)
{
    int written = ra->phase >= RA_FLUSH;
    if (ra->wait && !ra->waited)
        ra_end_held(c, ra, s, msg);
    for (size_t i = ra->got; i < ra->n; i++) {
        if (written)
            end_cut(c, ra->ops[i], s, msg);
        else
            end_unsent(c, ra->ops[i], s, msg);
    }
}

static int ra_step(kvi_conn *c, struct redis_async *ra, kvi_wait *w);
static int ra_begin(kvi_conn *c, struct redis_async *ra, struct kvi_redis_node *node,
                    kvi_batch_op *const *ops, const unsigned char *ask, const unsigned char *hops,
                    size_t n, kvi_wait *w);

/* Sentinel: may the ops the master failed (they did not run) wait for
 * the sentinels to be asked again?  While the next backoff ends within
 * the connection's timeout from the first re-ask and before the batch's
 * deadline; else they end with that failure. */
static int arun_may_reask(kvi_conn *c, struct redis_arun *ar)
{
#ifdef __linux__
    if (ar->timerless)
        return ar->reasks < MAX_REASKS;
    int64_t now = kvi_monotonic_ms();
    if (ar->reask_until == 0) {
        uint32_t t = kvi__redis_priv(c)->node_cfg.timeout_ms;
        ar->reask_until = now + (t > 0 ? t : 5000);
        ar->reask_backoff = REASK_BACKOFF_FIRST_MS;
    }
    int64_t end = now + ar->reask_backoff;
    return end <= ar->reask_until && (ar->deadline_ms == 0 || end < ar->deadline_ms);
#else
    (void)c;
    return ar->reasks < MAX_REASKS;
#endif
}

/* Sentinel: ops[i] of ra did not run on the master (unreached, or
 * READONLY): it goes to the master the sentinels name when asked again
 * (the one that failed is forgotten). */
static void ra_again_after_lookup(struct redis_async *ra, size_t i)
{
    struct redis_arun *ar = ra->run;
    kvi__redis_sentinel_forget(ar->st, ra->node);
    ar->next[ar->nnext].op = ra->ops[i];
    ar->next[ar->nnext].node = NULL; /* set after the answer */
    ar->next[ar->nnext].ask = 0;
    ar->next[ar->nnext++].hops = ra->hops[i];
    ar->reask = 1;
}

/* Nothing of ra reached its host (status s, message msg; ra closed): in a
 * failover list the next host is tried, on its own non-blocking
 * connection -- one its breaker marks down is passed at once; else, or
 * when every host was tried, the ops end with s.  1 ended, 0 waiting. */
static int ra_unreached(kvi_conn *c, struct redis_async *ra, kvi_status s, const char *msg,
                        kvi_wait *w)
{
    struct redis_arun *ar = ra->run;
    if (ar->failover && ra->got == 0 && ar->fo_tried + 1 < ar->st->nseeds && s != KVI_E_AUTH &&
        s != KVI_E_NOMEM && s != KVI_E_INVALID) {
        ar->fo_tried++;
        struct kvi_redis_node *n = ar->st->seeds[(ar->fo_first + ar->fo_tried) % ar->st->nseeds];
        return ra_begin(c, ra, n, ra->ops, ra->ask, ra->hops, ra->n, w);
    }
    if (ar->sname != NULL && ra->got == 0 && arun_may_reask(c, ar) && s != KVI_E_AUTH &&
        s != KVI_E_NOMEM && s != KVI_E_INVALID) {
        /* The master the sentinels named failed before anything was
         * written: they are asked again, the ops go to the one they name. */
        kvi_engine_log(c, KVI_LOG_INFO, "master %s: %s; asking the sentinels again",
                       ra->node->addr.name, msg);
        for (size_t i = 0; i < ra->n; i++)
            ra_again_after_lookup(ra, i);
        return 1;
    }
    for (size_t i = ra->got; i < ra->n; i++)
        end_unsent(c, ra->ops[i], s, msg);
    return 1;
}

/* ra's connection is set up (or taken from the pool): from now on each
 * reply must come within the connection's timeout, as the single path's
 * round trip (plus wait_timeout when a WAIT follows). */
static void ra_reply_limit(struct redis_async *ra)
{
    const struct kvi_redis_node_cfg *cfg = &ra->node->cfg;
    ra->limit = 0;
    ra->limit_ms = ra->wait ? cfg->timeout_ms + cfg->wait_timeout_ms : cfg->timeout_ms;
}

/* ra took a link (t: 1 from the pool, 0 a new one connecting): its first
 * phase, and its time limit -- connect_timeout for a new connection's
 * connect, TLS and set-up, as the single path's connect. */
static void ra_set_phase(struct redis_async *ra, int t)
{
    if (t == 1) {
        ra->phase = ra->role ? RA_ROLE : RA_WRITE;
        ra_reply_limit(ra);
    } else {
        ra->phase = RA_CONNECT;
        ra->limit = 0;
        ra->limit_ms = ra->node->cfg.connect_timeout_ms;
    }
}

/* The connection failed: ends the rest with its status -- or, when a
 * pooled connection taken without the idle poll failed before any reply
 * and every op may be sent twice (it was closed while idle, as in the
 * blocking pipeline: docs/batch.md), sends everything once more on a
 * checked or new connection (*w, 0, when that waits). */
static int ra_fail(kvi_conn *c, struct redis_async *ra, kvi_wait *w)
{
    struct kvi_redis_conn *conn = &ra->link->conn;
    kvi_status s = conn->st != KVI_OK ? conn->st : KVI_E_IO;
    if (ra->got == 0 && ra->reused && ra->resendable && !ra->checked &&
        kvi__redis_retryable(s)) {
        ra_unhook(ra);
        kvi__redis_link_drop(c, ra->link);
        ra->link = NULL;
        ra->checked = 1;
        ra->ask_read = 0;
        int t = kvi__redis_link_take(c, ra->node, &ra->link, 1);
        if (t >= 0) {
            ra->reused = t == 1;
            ra->role = ra->run->sname != NULL && (ra->run->named || ra->run->reasks > 0);
            ra->role_sent = 0;
            ra_set_phase(ra, t);
            return ra_step(c, ra, w);
        }
        char msg[400];
        copy_msg(c, msg, sizeof msg);
        ra_close(c, ra, 0, KVI_E_CONNECT);
        return ra_unreached(c, ra, KVI_E_CONNECT, msg, w);
    }
    char msg[400];
    snprintf(msg, sizeof msg, "%s", conn->err[0] ? conn->err : kvi_strerror(s));
    if (ra->phase < RA_FLUSH && ra->got == 0) {
        /* Nothing written: another host of a failover list may take it. */
        ra_close(c, ra, 0, s);
        return ra_unreached(c, ra, s, msg, w);
    }
    ra_end_rest(c, ra, s, msg);
    ra_close(c, ra, 0, ra->got > 0 ? KVI_OK : s);
    return 1;
}

/* Out of memory building the request (nothing written): the ops end. */
static int ra_nomem(kvi_conn *c, struct redis_async *ra, kvi_wait *w)
{
    (void)w;
    ra_close(c, ra, 0, KVI_OK);
    for (size_t i = ra->got; i < ra->n; i++)
        end_unsent(c, ra->ops[i], KVI_E_NOMEM, "out of memory building a pipeline");
    return 1;
}

/* op of ra was answered r (freed or kept), a reply saying it did not
 * run: TRYAGAIN, CLUSTERDOWN, LOADING go to the retry list (sent again
 * after a backoff); NOSCRIPT (scripts go as EVAL: not expected) and,
 * without timerfd, everything through the single path at the end. */
static void ra_not_run(struct redis_async *ra, kvi_batch_op *op, redisReply *r)
{
    struct redis_arun *ar = ra->run;
#ifdef __linux__
    if (!kvi__redis_is_error_kind(r, "NOSCRIPT")) {
        if (kvi__redis_is_error_kind(r, "CLUSTERDOWN"))
            ar->remap = ar->cluster;
        ar->retry[ar->nretry].op = op;
        ar->retry[ar->nretry++].last = r;
        return;
    }
#endif
    freeReplyObject(r);
    ar->again[ar->nagain++] = op;
}

/* ra waits for its socket (*w, 0) -- unless its time limit passed: then
 * the connection failed with KVI_E_TIMEOUT (ra_fail: before anything was
 * written the next host of a failover list is tried, or the sentinels
 * asked again; after, the rest is cut). */
static int ra_wait(kvi_conn *c, struct redis_async *ra, kvi_wait *w)
{
    if (ra->limit_ms > 0) {
        int64_t now = kvi_monotonic_ms();
        if (ra->limit == 0) {
            ra->limit = now + ra->limit_ms;
        } else if (now >= ra->limit) {
            kvi__redis_conn_timed_out(&ra->link->conn);
            return ra_fail(c, ra, w);
        }
    }
    const struct kvi_redis_sock *sock = &ra->link->conn.sock;
    w->fd = sock->fd;
    w->events = sock->want == POLLOUT ? KVI_WAIT_WRITE : KVI_WAIT_READ;
    w->deadline_ms = ra->limit;
    return 0;
}

/* ops[i] of ra was answered with the redirection r (MOVED or ASK, freed):
 * it did not run there, so it goes to the named node in the next round --
 * or ends, after too many redirections or a malformed one. */
static void ra_redirect(kvi_conn *c, struct redis_async *ra, size_t i, redisReply *r)
{
    struct redis_arun *ar = ra->run;
    kvi_batch_op *op = ra->ops[i];
    int moved = r->str[0] == 'M', slot;
    char host[256];
    uint16_t port;
    if (ra->hops[i] >= MAX_REDIRECTS) {
        freeReplyObject(r);
        end_unsent(c, op, KVI_E_BACKEND, "too many cluster redirections (the command did not run)");
        return;
    }
    if (kvi__redis_parse_redirect(r, ra->node, &slot, host, sizeof host, &port) != 0) {
        kvi_status s = kvi_engine_error(c, KVI_E_PROTOCOL, "bad redirection from %s: %.100s",
                                        ra->node->addr.name, r->str);
        freeReplyObject(r);
        kvi_batch_op_done(c, op, s);
        return;
    }
    freeReplyObject(r);
    struct kvi_redis_node *to = kvi__redis_node_get(c, ar->st, host, port);
    if (to == NULL) {
        end_unsent(c, op, KVI_E_NOMEM, "out of memory");
        return;
    }
    if (moved) {
        /* This slot now; the others that moved with it are learned by the
         * next non-blocking batch, which reads the map first. */
        kvi__redis_slot_moved(ar->st, slot, to);
        atomic_store(&ar->st->map_stale, to);
    }
    ar->next[ar->nnext].op = op;
    ar->next[ar->nnext].node = to;
    ar->next[ar->nnext].ask = (unsigned char)!moved;
    ar->next[ar->nnext++].hops = (unsigned char)(ra->hops[i] + 1);
}

/* Advances ra as far as it goes without waiting: 1 done (ra closed), 0
 * waiting (*w). */
static int ra_step(kvi_conn *c, struct redis_async *ra, kvi_wait *w)
{
    struct kvi_redis_conn *conn = &ra->link->conn;
    for (;;) {
        switch (ra->phase) {
        case RA_CONNECT: {
            int r = kvi__redis_conn_step(conn);
            if (r < 0)
                return ra_fail(c, ra, w);
            if (r == 0)
                return ra_wait(c, ra, w);
            ra->phase = ra->role ? RA_ROLE : RA_WRITE;
            ra_reply_limit(ra);
            break;
        }
        case RA_ROLE: {
            /* A new connection to the master the sentinels named: is it
             * still one (a demoted master must not get the batch)? */
            static const char *const role[1] = {"ROLE"};
            static const size_t role_len[1] = {4};
            if (!ra->role_sent) {
                if (kvi__redis_conn_append(conn, 1, (const char **)role, role_len) != 0)
                    return ra_fail(c, ra, w);
                ra->role_sent = 1;
            }
            int r = kvi__redis_conn_flush(conn);
            if (r < 0)
                return ra_fail(c, ra, w);
            if (r == 0)
                return ra_wait(c, ra, w);
            ra->phase = RA_ROLE_READ;
            break;
        }
        case RA_ROLE_READ: {
            redisReply *r = NULL;
            int x = kvi__redis_conn_read(conn, 0, &r);
            if (x < 0)
                return ra_fail(c, ra, w);
            if (x == 0)
                return ra_wait(c, ra, w);
            int master = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                         r->element[0]->type == REDIS_REPLY_STRING &&
                         strcmp(r->element[0]->str, "master") == 0;
            if (master) {
                freeReplyObject(r);
                ra->phase = RA_WRITE;
                ra->limit = 0;
                break;
            }
            char msg[400];
            if (r->type == REDIS_REPLY_ERROR)
                snprintf(msg, sizeof msg, "ROLE on %s (named master by the sentinels): %.200s",
                         ra->node->addr.name, r->str);
            else
                snprintf(msg, sizeof msg,
                         "the sentinels name %s as master of \"%s\", but it says it is a %.32s "
                         "(failover under way?)",
                         ra->node->addr.name, ra->run->sname,
                         r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                                 r->element[0]->type == REDIS_REPLY_STRING
                             ? r->element[0]->str
                             : "?");
            freeReplyObject(r);
            ra_close(c, ra, 0, KVI_OK); /* it answered: not a breaker failure */
            return ra_unreached(c, ra, KVI_E_BACKEND, msg, w);
        }
        case RA_WRITE:
            for (size_t i = 0; i < ra->n; i++) {
                struct kvi_redis_cmd cmd;
                struct bcmd bc;
                static const char *const asking[1] = {"ASKING"};
                static const size_t asking_len[1] = {6};
                if (ra->ask[i] &&
                    kvi__redis_conn_append(conn, 1, (const char **)asking, asking_len) != 0)
                    return ra_fail(c, ra, w); /* nothing written yet */
                if (ra->ops[i]->kind == KVI_OP_RAW_QUERY) {
                    /* Checked by start: only out of memory fails here. */
                    char **words;
                    size_t *lens, count;
                    if (kvi__redis_raw_words(c, ra->ops[i]->val, ra->ops[i]->val_len, &words,
                                             &lens, &count) != KVI_OK)
                        return ra_nomem(c, ra, w);
                    int a = kvi__redis_conn_append(conn, (int)count, (const char *const *)words,
                                                   lens);
                    kvi_words_free(words, lens, count);
                    if (a != 0)
                        return ra_fail(c, ra, w); /* nothing written yet */
                    continue;
                }
                build_cmd(c, ra->ops[i], &cmd, &bc, 0);
                if (kvi__redis_conn_append(conn, cmd.argc, cmd.argv, cmd.lens) != 0)
                    return ra_fail(c, ra, w); /* nothing written yet */
            }
            if (ra->wait) {
                /* One WAIT after the writes, in the same round trip: it
                 * answers once that many replicas have every write before
                 * it on this connection (or its time is up). */
                char nrep[16], wms[16];
                const struct kvi_redis_node_cfg *cfg = &ra->node->cfg;
                snprintf(nrep, sizeof nrep, "%u", cfg->wait_replicas);
                snprintf(wms, sizeof wms, "%u", (unsigned)cfg->wait_timeout_ms);
                const char *wargv[3] = {"WAIT", nrep, wms};
                size_t wlens[3] = {4, strlen(nrep), strlen(wms)};
                if (kvi__redis_conn_append(conn, 3, wargv, wlens) != 0)
                    return ra_fail(c, ra, w);
            }
            ra->phase = RA_FLUSH;
            break;
        case RA_FLUSH: {
            int r = kvi__redis_conn_flush(conn);
            if (r < 0)
                return ra_fail(c, ra, w);
            if (r == 0)
                return ra_wait(c, ra, w);
            ra->phase = RA_READ;
            if (ra->run->fo_tried > 0) {
                /* The request went out to another host of the failover
                 * list: it is the working one now. */
                struct redis_arun *ar = ra->run;
                atomic_store(&ar->st->current, (ar->fo_first + ar->fo_tried) % ar->st->nseeds);
                ar->fo_first = atomic_load(&ar->st->current);
                ar->fo_tried = 0;
                kvi_engine_log(c, KVI_LOG_WARN, "failed over to %s", ra->node->addr.name);
            }
            break;
        }
        case RA_READ:
        default:
            /* ASKING's own reply would be taken for an op's view: no
             * views in a pipeline with ASKING. */
            if (!ra->fns_on && !ra->any_ask && !ra->wait && !ra->deep && default_fns != NULL &&
                conn->reader != NULL) {
                ra->saved_fns = conn->reader->fn;
                conn->reader->fn = &view_fns;
                ra->fns_on = 1;
                ra->vr = (struct view_run){c, ra->ops, ra->views, ra->n, ra->got};
            }
            while (ra->got < ra->n) {
                redisReply *r = NULL;
                struct view_run *outer = view_run;
                view_run = ra->fns_on ? &ra->vr : NULL;
                int x = ra->deep ? kvi__redis_conn_read_deep(conn, &ra->dr, &r)
                                 : kvi__redis_conn_read(conn, 0, &r);
                view_run = outer;
                if (x < 0)
                    return ra_fail(c, ra, w);
                if (x == 0)
                    return ra_wait(c, ra, w);
                if (ra->ask[ra->got] && !ra->ask_read) {
                    /* ASKING's reply (no views in such a pipeline): the
                     * command's follows. */
                    freeReplyObject(r);
                    ra->ask_read = 1;
                    continue;
                }
                ra->ask_read = 0;
                ra->limit = 0; /* the next reply gets the full timeout */
                size_t i = ra->got++;
                kvi_batch_op *op = ra->ops[i];
                if (r == VIEW) {
                    end_with_view(c, op, &ra->views[i]);
                } else if (ra->run->cluster && r->type == REDIS_REPLY_ERROR &&
                           (kvi__redis_is_error_kind(r, "MOVED") ||
                            kvi__redis_is_error_kind(r, "ASK"))) {
                    ra_redirect(c, ra, i, r);
                } else if (ra->run->sname != NULL && arun_may_reask(c, ra->run) &&
                           r->type == REDIS_REPLY_ERROR &&
                           kvi__redis_is_error_kind(r, "READONLY")) {
                    /* A demoted master: it did not run; to the master the
                     * sentinels name when asked again. */
                    freeReplyObject(r);
                    ra->readonly = 1;
                    ra_again_after_lookup(ra, i);
                } else if (not_run_here(r)) {
                    /* Did not run there: sent again after a backoff. */
                    ra_not_run(ra, op, r);
                } else if (ra->wait && is_write(op)) {
                    ra->held[i] = r; /* ends when the WAIT answers */
                } else {
                    /* Scripts go as EVAL: no NOSCRIPT. */
                    end_with_reply(c, op, r);
                }
            }
            if (ra->wait && !ra->waited) {
                redisReply *r = NULL;
                int x = ra->deep ? kvi__redis_conn_read_deep(conn, &ra->dr, &r)
                                 : kvi__redis_conn_read(conn, 0, &r);
                if (x < 0)
                    return ra_fail(c, ra, w);
                if (x == 0)
                    return ra_wait(c, ra, w);
                ra->waited = 1;
                long long acked = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
                freeReplyObject(r);
                ra_end_waited(c, ra, acked);
            }
            /* A demoted master's connection (READONLY) is not kept. */
            ra_close(c, ra, !ra->readonly, KVI_OK);
            return 1;
        }
    }
}

/* Starts ra on node for ops[0..n) (ask/hops: theirs): 1 when it ended at
 * once, 0 waiting. */
static int ra_begin(kvi_conn *c, struct redis_async *ra, struct kvi_redis_node *node,
                    kvi_batch_op *const *ops, const unsigned char *ask, const unsigned char *hops,
                    size_t n, kvi_wait *w)
{
    struct redis_arun *run = ra->run;
    memset(ra, 0, sizeof *ra);
    ra->run = run;
    ra->node = node;
    ra->ops = ops;
    ra->ask = ask;
    ra->hops = hops;
    ra->n = n;
    for (size_t i = 0; i < n && !ra->any_ask; i++)
        ra->any_ask = ask[i];
    ra->views = run->views + (ops - run->ops);
    if (run->held != NULL) {
        ra->held = run->held + (ops - run->ops);
        for (size_t i = 0; i < n && !ra->wait; i++)
            ra->wait = is_write(ops[i]);
    }
    char msg[400];
    kvi_status s = kvi_breaker_enter(c, node->breaker, node->addr.name, &ra->probe);
    if (s != KVI_OK) {
        copy_msg(c, msg, sizeof msg);
        return ra_unreached(c, ra, s, msg, w);
    }
    ra->resendable = 1;
    for (size_t i = 0; i < n && ra->resendable; i++)
        ra->resendable = !ops[i]->no_resend && ops[i]->kind != KVI_OP_RAW_QUERY;
    for (size_t i = 0; i < n && !ra->deep; i++)
        ra->deep = ops[i]->kind == KVI_OP_RAW_QUERY;
    ra->checked = !ra->resendable;
    int t = kvi__redis_link_take(c, node, &ra->link, ra->checked);
    ra->reused = t == 1;
    /* ROLE (one round trip more) when this run's question named the
     * master, or once the sentinels were asked again: as the blocking
     * lookup checks the master it finds; a master named before (checked
     * then) or by +switch-master is taken as it is. */
    ra->role = run->sname != NULL && (run->named || run->reasks > 0);
    if (t < 0) {
        copy_msg(c, msg, sizeof msg);
        ra_close(c, ra, 0, KVI_E_CONNECT);
        return ra_unreached(c, ra, KVI_E_CONNECT, msg, w);
    }
    ra_set_phase(ra, t);
    return ra_step(c, ra, w);
}

/* Frees the words of the COMMAND GETKEYS question (none: nothing). */
static void gk_free(kvi_conn *c, struct redis_arun *ar)
{
    if (ar->gk_words != NULL)
        kvi_words_free(ar->gk_words, ar->gk_wlens, ar->gk_count);
    kvi_engine_free(c, ar->gk_argv);
    kvi_engine_free(c, ar->gk_lens);
    ar->gk_words = NULL;
    ar->gk_wlens = NULL;
    ar->gk_argv = NULL;
    ar->gk_lens = NULL;
    ar->gk_count = 0;
}

static void arun_free(kvi_conn *c, struct redis_arun *ar)
{
    kvi_engine_free(c, ar->ops);
    kvi_engine_free(c, ar->ask);
    kvi_engine_free(c, ar->hops);
    kvi_engine_free(c, ar->groups);
    kvi_engine_free(c, ar->next);
    kvi_engine_free(c, ar->again);
    kvi_engine_free(c, ar->views);
    kvi_engine_free(c, ar->held);
    kvi_engine_free(c, ar->rslot);
    gk_free(c, ar);
    kvi_engine_free(c, ar->orig);
    kvi_engine_free(c, ar->node_of);
    for (size_t i = 0; i < ar->nretry; i++)
        freeReplyObject(ar->retry[i].last);
    kvi_engine_free(c, ar->retry);
    kvi_engine_free(c, ar->mnodes);
#ifdef __linux__
    if (ar->tfd >= 0)
        close(ar->tfd);
#endif
    kvi_engine_free(c, ar->ras);
    kvi_engine_free(c, ar->wts);
    kvi_engine_free(c, ar->waiting);
    kvi_engine_free(c, ar->regfd);
#ifdef __linux__
    if (ar->epfd >= 0)
        close(ar->epfd);
#endif
    kvi_engine_free(c, ar);
}

/* ---- the slot map read without blocking ---- */

enum { MAP_NONE, MAP_CONNECT, MAP_WRITE, MAP_FLUSH, MAP_READ };

static void map_close(kvi_conn *c, struct redis_arun *ar, int keep_link, kvi_status st)
{
    if (ar->mlink != NULL) {
        if (keep_link)
            kvi__redis_link_give(c, ar->mnode, ar->mlink);
        else
            kvi__redis_link_drop(c, ar->mlink);
        ar->mlink = NULL;
    }
    kvi_breaker_leave(c, ar->mnode->breaker, ar->mnode->addr.name, ar->mprobe, st);
    ar->map = MAP_NONE;
}

static int cmap_begin(kvi_conn *c, struct redis_arun *ar);
static int cmap_step(kvi_conn *c, struct redis_arun *ar, kvi_wait *w);

/* Opens the map read's connection to node (its breaker entered; an idle
 * connection, or a new one connecting: ar->map says which), which must
 * answer by *by (its connect_timeout plus timeout from now, as the
 * blocking question): KVI_OK, or the failure (breaker open, connect failed
 * at once; its detail in ar->merr, nothing left to close). */
static kvi_status mq_open(kvi_conn *c, struct redis_arun *ar, struct kvi_redis_node *node,
                          int64_t *by)
{
    ar->mnode = node;
    kvi_status s = kvi_breaker_enter(c, node->breaker, node->addr.name, &ar->mprobe);
    if (s != KVI_OK) {
        copy_msg(c, ar->merr, sizeof ar->merr);
        return s;
    }
    int t = kvi__redis_link_take(c, node, &ar->mlink, 1);
    if (t < 0) {
        copy_msg(c, ar->merr, sizeof ar->merr);
        ar->map = MAP_CONNECT; /* for map_close */
        map_close(c, ar, 0, KVI_E_CONNECT);
        return KVI_E_CONNECT;
    }
    ar->map = t == 1 ? MAP_WRITE : MAP_CONNECT;
    const struct kvi_redis_node_cfg *nc = &node->cfg;
    *by = kvi_monotonic_ms() + nc->connect_timeout_ms + nc->timeout_ms;
    return KVI_OK;
}

/* Advances the map read's question (argc words) on its connection:
 * connect, write, flush, read the reply.  1 with *reply (free it), 0
 * waiting (mq_wait), -1 the connection failed (its st and err). */
static int mq_step(struct redis_arun *ar, int argc, const char *const *argv, const size_t *lens,
                   redisReply **reply)
{
    struct kvi_redis_conn *conn = &ar->mlink->conn;
    int r;
    for (;;) {
        switch (ar->map) {
        case MAP_CONNECT:
            if ((r = kvi__redis_conn_step(conn)) <= 0)
                return r;
            ar->map = MAP_WRITE;
            break;
        case MAP_WRITE:
            if (kvi__redis_conn_append(conn, argc, argv, lens) != 0)
                return -1;
            ar->map = MAP_FLUSH;
            break;
        case MAP_FLUSH:
            if ((r = kvi__redis_conn_flush(conn)) <= 0)
                return r;
            ar->map = MAP_READ;
            break;
        default:
            return kvi__redis_conn_read(conn, 0, reply);
        }
    }
}

/* The map read waits for its connection's socket, until by: 0. */
static int mq_wait(const struct redis_arun *ar, int64_t by, kvi_wait *w)
{
    const struct kvi_redis_sock *sock = &ar->mlink->conn.sock;
    w->fd = sock->fd;
    w->events = sock->want == POLLOUT ? KVI_WAIT_WRITE : KVI_WAIT_READ;
    w->deadline_ms = by;
    return 0;
}

/* The map read's connection failed: its status, the detail in ar->merr. */
static kvi_status mq_failed(struct redis_arun *ar)
{
    const struct kvi_redis_conn *conn = &ar->mlink->conn;
    kvi_status st = conn->st != KVI_OK ? conn->st : KVI_E_IO;
    snprintf(ar->merr, sizeof ar->merr, "%s", conn->err[0] ? conn->err : kvi_strerror(st));
    return st;
}

/* Starts the map read (without Sentinel: cmap_begin) or, with Sentinel,
 * the question to the sentinel sn_tried (from sn_first) on a non-blocking
 * connection: 0 started, -1 not (the detail in ar->merr). */
static int map_begin(kvi_conn *c, struct redis_arun *ar)
{
    if (ar->sentinel == NULL)
        return cmap_begin(c, ar);
    struct kvi_redis_node *sn = ar->st->seeds[(ar->sn_first + ar->sn_tried) % ar->st->nseeds];
    return mq_open(c, ar, sn, &ar->sn_deadline) == KVI_OK ? 0 : -1;
}

/* Sentinel: the question to one sentinel failed with st (message fmt):
 * remembered unless a connection failure came after a more telling one. */
static void sentinel_failed(struct redis_arun *ar, kvi_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sentinel_failed(struct redis_arun *ar, kvi_status st, const char *fmt, ...)
{
    int conn = st == KVI_E_CONNECT || st == KVI_E_TIMEOUT || st == KVI_E_IO;
    if (conn)
        ar->sn_down++;
    if (conn && ar->sn_st != KVI_OK && ar->sn_st != KVI_E_CONNECT)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ar->sn_msg, sizeof ar->sn_msg, fmt, ap);
    va_end(ap);
    ar->sn_st = conn ? KVI_E_CONNECT : st;
}

/* r is a sentinel's answer to SENTINEL get-master-addr-by-name: its
 * [host, port] becomes the master (unless one was named meanwhile), and
 * that sentinel is asked first next time: 0; the +switch-master listener
 * (sentinel.c, a thread) is started if it does not run yet.  Anything
 * else: -1 with the failure remembered (the next sentinel is asked). */
static int sentinel_answer(kvi_conn *c, struct redis_arun *ar, const redisReply *r)
{
    const char *sn = ar->mnode->addr.name;
    if (r->type == REDIS_REPLY_NIL) {
        sentinel_failed(ar, KVI_E_BACKEND,
                        "sentinel %s does not know a master named \"%s\" (check the sentinel "
                        "option)",
                        sn, ar->sentinel);
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        sentinel_failed(ar, kvi__redis_is_auth_error(r) ? KVI_E_AUTH : KVI_E_BACKEND,
                        "sentinel %s: %.200s (sentinel_user, sentinel_password?)", sn, r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[0]->len == 0 || r->element[0]->len >= 256) {
        sentinel_failed(ar, KVI_E_PROTOCOL,
                        "sentinel %s: unexpected reply to SENTINEL get-master-addr-by-name", sn);
        return -1;
    }
    char host[256], *end;
    memcpy(host, r->element[0]->str, r->element[0]->len);
    host[r->element[0]->len] = '\0';
    long port = strtol(r->element[1]->str, &end, 10);
    if (*end != '\0' || port <= 0 || port > 65535) {
        sentinel_failed(ar, KVI_E_PROTOCOL, "sentinel %s: bad master port", sn);
        return -1;
    }
    struct kvi_redis_node *m = kvi__redis_node_get(c, ar->st, host, (uint16_t)port);
    if (m == NULL) {
        sentinel_failed(ar, KVI_E_NOMEM, "out of memory");
        return -1;
    }
    atomic_store(&ar->st->current, (ar->sn_first + ar->sn_tried) % ar->st->nseeds);
    ar->named = 1;
    struct kvi_redis_node *none = NULL;
    if (atomic_compare_exchange_strong(&ar->st->master, &none, m))
        kvi_engine_log(c, KVI_LOG_INFO, "sentinel %s: master \"%s\" is %s", sn, ar->sentinel,
                       m->addr.name);
    /* From now on a failover is learned from +switch-master too. */
    kvi__redis_sentinel_watch(c, ar->st, ar->sentinel);
    return 0;
}

static int map_step(kvi_conn *c, struct redis_arun *ar, kvi_wait *w);

/* Sentinel: the question to the sentinel sn_tried failed; the next one is
 * asked, on its own non-blocking connection (one whose breaker is open is
 * passed): 0 waiting, 1 when none is left (no master named). */
static int sentinel_next(kvi_conn *c, struct redis_arun *ar, kvi_wait *w)
{
    while (++ar->sn_tried < ar->st->nseeds && ar->sn_st != KVI_E_AUTH &&
           ar->sn_st != KVI_E_NOMEM) {
        if (map_begin(c, ar) == 0)
            return map_step(c, ar, w);
        sentinel_failed(ar, KVI_E_CONNECT, "%s", ar->merr);
    }
    return 1;
}

/* Advances the map read (without Sentinel: cmap_step) or the question to
 * a sentinel: 0 waiting (*w), 1 ended (with Sentinel: a master named, or
 * none of the sentinels did; the caller sees which). */
static int map_step(kvi_conn *c, struct redis_arun *ar, kvi_wait *w)
{
    if (ar->sentinel == NULL)
        return cmap_step(c, ar, w);
    const char *ask[3] = {"SENTINEL", "get-master-addr-by-name", ar->sentinel};
    size_t ask_len[3] = {8, 23, strlen(ar->sentinel)};
    redisReply *reply = NULL;
    int r = mq_step(ar, 3, ask, ask_len, &reply);
    if (r > 0) {
        int ok = sentinel_answer(c, ar, reply) == 0;
        freeReplyObject(reply);
        map_close(c, ar, 1, KVI_OK);
        return ok ? 1 : sentinel_next(c, ar, w);
    }
    if (r == 0 && (ar->sn_deadline == 0 || kvi_monotonic_ms() < ar->sn_deadline))
        return mq_wait(ar, ar->sn_deadline, w);
    if (r == 0) {
        const struct kvi_redis_node_cfg *nc = &ar->mnode->cfg;
        sentinel_failed(ar, KVI_E_TIMEOUT, "sentinel %s: no answer within %u ms",
                        ar->mnode->addr.name,
                        (unsigned)(nc->connect_timeout_ms + nc->timeout_ms));
        map_close(c, ar, 0, KVI_E_TIMEOUT);
        return sentinel_next(c, ar, w);
    }
    kvi_status st = mq_failed(ar);
    sentinel_failed(ar, st, "sentinel %s: %s", ar->mnode->addr.name, ar->merr);
    map_close(c, ar, 0, st);
    return sentinel_next(c, ar, w);
}

/* Starts the map read on ar->mnodes[ar->mi], or the next node that can
 * be tried (a breaker open or a connect that fails at once is noted in
 * mst/merr and passed): 0 started, -1 none left.  A node answers within
 * its connect_timeout plus timeout (mdeadline, as the blocking read), else
 * the next one is asked. */
static int cmap_try(kvi_conn *c, struct redis_arun *ar)
{
    for (; ar->mi < ar->nm; ar->mi++) {
        ar->mshards = 1;
        kvi_status s = mq_open(c, ar, ar->mnodes[ar->mi], &ar->mdeadline);
        if (s == KVI_OK)
            return 0;
        ar->mst = s;
    }
    return -1;
}

/* The Cluster's map read (map_begin without Sentinel): the nodes tried in
 * turn are the working seed, then every other known node (the seeds
 * last); to decide the mode (detect) the seeds from the working one. */
static int cmap_begin(kvi_conn *c, struct redis_arun *ar)
{
    struct kvi_redis_state *st = ar->st;
    size_t cur = atomic_load(&st->current) % st->nseeds;
    kvi_engine_free(c, ar->mnodes);
    ar->mnodes = NULL;
    ar->nm = ar->mi = 0;
    ar->mgot = 0;
    ar->mseed0 = cur;
    ar->mst = kvi_engine_error(c, KVI_E_CONNECT, "no cluster node known");
    copy_msg(c, ar->merr, sizeof ar->merr);
    struct kvi_redis_node **all = NULL;
    size_t count = 0;
    if (!ar->detect && kvi__redis_node_snapshot(c, st, &all, &count) != KVI_OK)
        return -1;
    size_t k = ar->detect ? st->nseeds : count + 1;
    ar->mnodes = kvi_engine_malloc(c, k * sizeof *ar->mnodes);
    if (ar->mnodes == NULL) {
        kvi_engine_free(c, all);
        ar->mst = KVI_E_NOMEM;
        snprintf(ar->merr, sizeof ar->merr, "out of memory");
        return -1;
    }
    if (all == NULL) {
        for (size_t i = 0; i < k; i++)
            ar->mnodes[ar->nm++] = st->seeds[(cur + i) % st->nseeds];
    } else {
        struct kvi_redis_node *first = ar->mhint != NULL ? ar->mhint : st->seeds[cur];
        ar->mhint = NULL;
        ar->mnodes[ar->nm++] = first;
        for (size_t i = 0; i < count; i++)
            if (all[i] != first)
                ar->mnodes[ar->nm++] = all[i];
        kvi_engine_free(c, all);
    }
    return cmap_try(c, ar);
}

/* The map read of node mnodes[mi] failed (mst/merr set, link closed):
 * the next node is tried.  1 when one was started. */
static int cmap_next(kvi_conn *c, struct redis_arun *ar)
{
    ar->mi++;
    return cmap_try(c, ar) == 0;
}

/* Node mnodes[mi] answered r (kept) to CLUSTER SHARDS / SLOTS: 1 the
 * read ended (a map installed, or under cluster=auto a standalone server
 * found), 0 ask again on the same connection (SLOTS), -1 try the next
 * node (mst/merr set). */
static int cmap_answer(kvi_conn *c, struct redis_arun *ar, const redisReply *r)
{
    struct kvi_redis *rp = kvi__redis_priv(c);
    if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "cluster support disabled") != NULL) {
        if (ar->detect && rp->cfg.cluster != KVI_REDIS_CLUSTER_YES) {
            /* cluster=auto: a standalone server (as ensure_mode decides). */
            atomic_store(&ar->st->current, (ar->mseed0 + ar->mi) % ar->st->nseeds);
            int unknown = KVI_REDIS_MODE_UNKNOWN;
            atomic_compare_exchange_strong(&rp->mode, &unknown, KVI_REDIS_MODE_STANDALONE);
            ar->mgot = 2;
            return 1;
        }
        ar->mst = kvi_engine_error(c, KVI_E_BACKEND, "%s is not a cluster node",
                                   ar->mnode->addr.name);
        copy_msg(c, ar->merr, sizeof ar->merr);
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR && ar->mshards && strstr(r->str, "nknown") != NULL) {
        ar->mshards = 0; /* before Redis 7: CLUSTER SLOTS */
        return 0;
    }
    struct kvi_redis_range *ranges = NULL;
    size_t count = 0;
    ar->mst = kvi__redis_map_from_reply(c, ar->mnode, r, ar->mshards, &ranges, &count);
    if (ar->mst != KVI_OK) {
        copy_msg(c, ar->merr, sizeof ar->merr);
        return -1;
    }
    kvi__redis_install_map(c, ar->st, ranges, count);
    kvi_engine_free(c, ranges);
    atomic_store(&ar->st->last_refresh_ms, kvi_monotonic_ms());
    if (ar->detect) {
        int unknown = KVI_REDIS_MODE_UNKNOWN;
        atomic_compare_exchange_strong(&rp->mode, &unknown, KVI_REDIS_MODE_CLUSTER);
    }
    ar->mgot = 1;
    return 1;
}

/* Advances the map read: 0 waiting (*w), 1 ended (ar->mgot says what it
 * got; 0: every node failed, the last failure in mst/merr). */
static int cmap_step(kvi_conn *c, struct redis_arun *ar, kvi_wait *w)
{
    static const char *const shards[2] = {"CLUSTER", "SHARDS"};
    static const size_t shards_len[2] = {7, 6};
    static const char *const slots[2] = {"CLUSTER", "SLOTS"};
    static const size_t slots_len[2] = {7, 5};
    for (;;) {
        redisReply *reply = NULL;
        int r = ar->gk ? mq_step(ar, (int)ar->gk_count + 2, ar->gk_argv, ar->gk_lens, &reply)
                       : mq_step(ar, 2, ar->mshards ? shards : slots,
                                 ar->mshards ? shards_len : slots_len, &reply);
        if (r > 0 && ar->gk) {
            /* COMMAND GETKEYS: the first key names the slot; an error (no
             * key arguments, unknown command) none -- the query then gets
             * its own answer from any master, as on the blocking path. */
            const redisReply *k0 = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0
                                       ? reply->element[0]
                                       : NULL;
            ar->rslot[ar->gk_i] = k0 != NULL && k0->type == REDIS_REPLY_STRING
                                      ? (int)kvi__redis_key_slot(k0->str, k0->len)
                                      : RSLOT_NONE;
            freeReplyObject(reply);
            map_close(c, ar, 1, KVI_OK);
            ar->mgot = 1;
            return 1;
        }
        if (r > 0) {
            int a = cmap_answer(c, ar, reply);
            freeReplyObject(reply);
            if (a == 0) {
                ar->map = MAP_WRITE; /* CLUSTER SLOTS on the same connection */
                continue;
            }
            map_close(c, ar, 1, KVI_OK);
            if (a > 0 || !cmap_next(c, ar))
                return 1;
            continue;
        }
        if (r == 0 && (ar->mdeadline == 0 || kvi_monotonic_ms() < ar->mdeadline))
            return mq_wait(ar, ar->mdeadline, w);
        if (r == 0) {
            const struct kvi_redis_node_cfg *nc = &ar->mnode->cfg;
            ar->mst = KVI_E_TIMEOUT;
            snprintf(ar->merr, sizeof ar->merr, "%s: no answer to %s within %u ms",
                     ar->mnode->addr.name,
                     ar->gk        ? "COMMAND GETKEYS"
                     : ar->mshards ? "CLUSTER SHARDS"
                                   : "CLUSTER SLOTS",
                     (unsigned)(nc->connect_timeout_ms + nc->timeout_ms));
        } else {
            ar->mst = mq_failed(ar);
        }
        map_close(c, ar, 0, ar->mst);
        if (!cmap_next(c, ar))
            return 1;
    }
}

/* The master of op's slot in the map (NULL: none known); a raw query's
 * slot is its first key's (rslot), or any master for one without keys. */
static struct kvi_redis_node *op_master(struct redis_arun *ar, const kvi_batch_op *op)
{
    if (op->kind != KVI_OP_RAW_QUERY)
        return kvi__redis_key_node(ar->st, op->key, op->key_len);
    for (size_t i = 0; i < ar->norig; i++)
        if (ar->orig[i] == op)
            return kvi__redis_slot_node(ar->st, ar->rslot[i]);
    return NULL;
}

/* Groups ar->orig per node (cluster: the master of each key's slot;
 * standalone: one): 0, or -1 when a key's slot has no master in the map. */
static int arun_group(struct redis_arun *ar, struct kvi_redis_node *one, int retry_missing)
{
    size_t n = ar->norig;
    for (size_t i = 0; i < n; i++) {
        ar->node_of[i] = ar->cluster ? op_master(ar, ar->orig[i]) : one;
        if (ar->node_of[i] == NULL && !retry_missing)
            return -1;
    }
    /* (retry_missing: an op with no master goes to the retry list.) */
    for (size_t i = 0; i < n; i++)
        if (ar->node_of[i] == NULL) {
            ar->retry[ar->nretry].op = ar->orig[i];
            ar->retry[ar->nretry++].last = NULL;
            ar->remap = 1;
        }
    ar->gi = 0;
    memset(ar->ask, 0, n);
    memset(ar->hops, 0, n);
    ar->n = 0;
    ar->ngroups = 0;
    /* Per node, in the order of its first op; each node's ops in order. */
    for (size_t first = 0; first < n; first++) {
        struct kvi_redis_node *node = ar->node_of[first];
        if (node == NULL)
            continue;
        ar->groups[ar->ngroups].node = node;
        ar->groups[ar->ngroups].from = ar->n;
        for (size_t i = first; i < n; i++)
            if (ar->node_of[i] == node) {
                ar->ops[ar->n++] = ar->orig[i];
                ar->node_of[i] = NULL;
            }
        ar->groups[ar->ngroups++].to = ar->n;
    }
    return 0;
}

/* The redirected ops become the next round: grouped per node, in the
 * order of each node's first op. */
static void arun_next_round(struct redis_arun *ar)
{
    ar->n = 0;
    ar->ngroups = 0;
    ar->gi = 0;
    for (size_t first = 0; first < ar->nnext; first++) {
        struct kvi_redis_node *node = ar->next[first].node;
        if (node == NULL)
            continue;
        ar->groups[ar->ngroups].node = node;
        ar->groups[ar->ngroups].from = ar->n;
        for (size_t i = first; i < ar->nnext; i++)
            if (ar->next[i].node == node) {
                ar->ops[ar->n] = ar->next[i].op;
                ar->ask[ar->n] = ar->next[i].ask;
                ar->hops[ar->n++] = ar->next[i].hops;
                ar->next[i].node = NULL;
            }
        ar->groups[ar->ngroups++].to = ar->n;
    }
    ar->nnext = 0;
}

static int arun_lookup(kvi_conn *c, struct redis_arun *ar, kvi_wait *w);
static int arun_keys(kvi_conn *c, struct redis_arun *ar, kvi_wait *w);
static int arun_begin(kvi_conn *c, struct redis_arun *ar, kvi_wait *w);
static void arun_key_done(kvi_conn *c, struct redis_arun *ar);
static int arun_backoff(kvi_conn *c, struct redis_arun *ar, kvi_wait *w);

/* ---- every pipeline of a round in flight at once ---- */

/* ras[g]'s socket leaves the epoll set (it ended). */
static void ar_unreg(struct redis_arun *ar, size_t g)
{
#ifdef __linux__
    if (ar->regfd[g] >= 0 && ar->epfd >= 0)
        epoll_ctl(ar->epfd, EPOLL_CTL_DEL, ar->regfd[g], NULL);
#endif
    ar->regfd[g] = -1;
}

/* ras[g] (waiting) is registered for what it waits for now -- after each
 * of its steps, which may have changed its socket (a closed descriptor
 * leaves the set by itself; its number may come back for a new socket).
 * 0, or -1 when epoll failed (then no epoll any more). */
static int ar_reg(struct redis_arun *ar, size_t g)
{
#ifdef __linux__
    int fd = ar->wts[g].fd;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = ar->wts[g].events & KVI_WAIT_WRITE ? EPOLLOUT : EPOLLIN;
    ev.data.u64 = g;
    if (ar->regfd[g] >= 0 && ar->regfd[g] != fd) {
        epoll_ctl(ar->epfd, EPOLL_CTL_DEL, ar->regfd[g], NULL);
        ar->regfd[g] = -1;
    }
    /* Not registered yet: ADD (EEXIST: MOD); registered: MOD (ENOENT --
     * the socket was closed and its number reused --: ADD). */
    int add = ar->regfd[g] < 0;
    ar->regfd[g] = -1;
    if (epoll_ctl(ar->epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0 &&
        (errno != (add ? EEXIST : ENOENT) ||
         epoll_ctl(ar->epfd, add ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0)) {
        close(ar->epfd);
        ar->epfd = -1;
        return -1;
    }
    ar->regfd[g] = fd;
    return 0;
#else
    (void)ar;
    (void)g;
    return -1;
#endif
}

/* What the caller waits for while nwait > 0 pipelines wait: the one
 * pipeline's own socket, or the epoll descriptor of them all.  Without
 * epoll (it failed), the first waiting one's socket: every waiting
 * pipeline is stepped at each resume. */
static int arun_wait(struct redis_arun *ar, kvi_wait *w)
{
    ar->via_epoll = 0;
    /* The earliest of the waiting pipelines' own time limits: resume is
     * called then, and ends (or moves on) the one whose limit passed. */
    w->deadline_ms = 0;
    for (size_t g = 0; g < ar->gi; g++)
        if (ar->waiting[g] && ar->wts[g].deadline_ms != 0 &&
            (w->deadline_ms == 0 || ar->wts[g].deadline_ms < w->deadline_ms))
            w->deadline_ms = ar->wts[g].deadline_ms;
#ifdef __linux__
    if (ar->nwait > 1 && ar->epfd < 0 && ar->concurrent == 1) {
        ar->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (ar->epfd < 0)
            ar->concurrent = 2; /* no epoll: step them all */
    }
    if (ar->nwait > 1 && ar->epfd >= 0) {
        size_t g;
        for (g = 0; g < ar->gi; g++)
            if (ar->waiting[g] && ar->regfd[g] != ar->wts[g].fd && ar_reg(ar, g) != 0)
                break;
        if (g == ar->gi) {
            ar->via_epoll = 1;
            w->fd = ar->epfd;
            w->events = KVI_WAIT_READ;
            return 0;
        }
        ar->concurrent = 2;
    }
#endif
    for (size_t g = 0; g < ar->gi; g++)
        if (ar->waiting[g]) {
            ar->lone = g;
            w->fd = ar->wts[g].fd;
            w->events = ar->wts[g].events;
            break;
        }
    return 0;
}

/* One step of waiting pipeline g. */
static void arun_step(kvi_conn *c, struct redis_arun *ar, size_t g)
{
    if (ra_step(c, &ar->ras[g], &ar->wts[g]) != 0) {
        ar->waiting[g] = 0;
        ar->nwait--;
        ar_unreg(ar, g);
    } else if (ar->via_epoll && ar_reg(ar, g) != 0) {
        ar->concurrent = 2;
    }
}

/* Arms the run's timer (a timerfd, made at its first use) to fire in ms
 * (> 0) and hands it to the caller as the wait (*w): 0; resume goes on
 * when it fired (a retry round or a re-ask).  -1 without a timer (not
 * Linux, or it could not be made). */
static int arun_pause(struct redis_arun *ar, int64_t ms, kvi_wait *w)
{
#ifdef __linux__
    if (ar->tfd < 0)
        ar->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = (time_t)(ms / 1000);
    its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
    if (ar->tfd >= 0 && timerfd_settime(ar->tfd, 0, &its, NULL) == 0) {
        ar->backing = 1;
        w->fd = ar->tfd;
        w->events = KVI_WAIT_READ;
        w->deadline_ms = 0; /* the timer is the limit */
        return 0;
    }
#else
    (void)ar;
    (void)ms;
    (void)w;
#endif
    return -1;
}

static int arun_next(kvi_conn *c, struct redis_arun *ar, kvi_wait *w);

/* Sentinel: the backoff before asking again is over.  Another thread or
 * the +switch-master listener may have named the new master meanwhile;
 * else the sentinels are asked (by steps).  Then the ops that did not run
 * go to that master. */
static int arun_reask(kvi_conn *c, struct redis_arun *ar, kvi_wait *w)
{
    ar->reask = 0;
    ar->reasks++;
    struct kvi_redis_node *m = atomic_load(&ar->st->master);
    if (m == NULL) {
        ar->lookup_next = 1;
        return arun_lookup(c, ar, w);
    }
    for (size_t i = 0; i < ar->nnext; i++)
        ar->next[i].node = m;
    return arun_next(c, ar, w);
}

/* Starts the groups from ar->gi on (all of them, or with concurrent 0
 * the next one when none waits), then the rounds of redirected ops: 0
 * when some wait, 1 when all are done (then the ops to send again,
 * through the single path, and ar freed). */
static int arun_next(kvi_conn *c, struct redis_arun *ar, kvi_wait *w)
{
    for (;;) {
        while (ar->gi < ar->ngroups && (ar->nwait == 0 || ar->concurrent)) {
            size_t g = ar->gi++;
            size_t from = ar->groups[g].from, to = ar->groups[g].to;
            ar->regfd[g] = -1;
            ar->waiting[g] = ra_begin(c, &ar->ras[g], ar->groups[g].node, ar->ops + from,
                                      ar->ask + from, ar->hops + from, to - from,
                                      &ar->wts[g]) == 0;
            ar->nwait += ar->waiting[g];
        }
        if (ar->nwait > 0)
            return arun_wait(ar, w);
        if (ar->gi < ar->ngroups)
            continue;
        if (ar->nnext == 0)
            break;
        if (ar->reask) {
            /* Sentinel: the master failed before running some ops (and
             * was forgotten): they are asked again after a backoff (a
             * failover under way needs time), waited on the timer. */
            if (arun_pause(ar, ar->reask_backoff, w) == 0) {
                ar->reask_backoff = ar->reask_backoff * 2 > REASK_BACKOFF_MAX_MS
                                        ? REASK_BACKOFF_MAX_MS
                                        : ar->reask_backoff * 2;
                return 0;
            }
            ar->timerless = 1; /* re-asks at once are counted (arun_may_reask) */
            return arun_reask(c, ar, w);
        }
        arun_next_round(ar);
    }
    if (ar->nretry > 0 && arun_backoff(c, ar, w) == 0)
        return 0;
    for (size_t i = 0; i < ar->nagain; i++)
        kvi_batch_op_single(c, ar->again[i]);
    arun_free(c, ar);
    return 1;
}

/* Sentinel: every sentinel was asked and none named a master: the
 * status, with the detail message set. */
static kvi_status sentinel_none(kvi_conn *c, struct redis_arun *ar)
{
    if (ar->sn_st == KVI_OK || ar->sn_down >= ar->st->nseeds)
        return kvi_engine_error(c, KVI_E_CONNECT,
                                "no sentinel answered for master \"%s\" (%zu asked without "
                                "blocking; %s)",
                                ar->sname, ar->st->nseeds, ar->sn_msg);
    return kvi_engine_error(c, ar->sn_st, "%s", ar->sn_msg);
}

/* Backoff before a retry round: the first 10 ms, then twice as long
 * each time (as the single path's). */
#define RETRY_BACKOFF_FIRST_MS 10
#define RETRY_MAX_SLEEPS 6

/* The retry list's ops end: each with the error its last reply was, or
 * (no master known for its slot) the map read's failure. */
static void arun_retry_end(kvi_conn *c, struct redis_arun *ar)
{
    for (size_t i = 0; i < ar->nretry; i++) {
        kvi_batch_op *op = ar->retry[i].op;
        if (ar->retry[i].last != NULL) {
            kvi_status s = kvi__redis_reply_error(c, ar->retry[i].last);
            freeReplyObject(ar->retry[i].last);
            kvi_batch_op_done(c, op, s);
        } else if (ar->mst != KVI_OK && ar->mgot == 0) {
            end_unsent(c, op, ar->mst, ar->merr);
        } else {
            end_unsent(c, op, KVI_E_BACKEND,
                       "no cluster node serves this key's slot (the command did not run)");
        }
    }
    ar->nretry = 0;
}

/* The retry list is not empty and the rounds are over: waits the next
 * backoff on the timerfd (0, *w) -- or, after RETRY_MAX_SLEEPS backoffs or
 * past the connection's timeout, ends the ops (1).  Without a timerfd
 * they go through the single path (its own backoff). */
static int arun_backoff(kvi_conn *c, struct redis_arun *ar, kvi_wait *w)
{
    int64_t now = kvi_monotonic_ms();
    if (ar->retry_until == 0) {
        uint32_t t = kvi__redis_priv(c)->node_cfg.timeout_ms;
        ar->retry_until = now + (t > 0 ? t : 5000);
        ar->backoff = RETRY_BACKOFF_FIRST_MS;
    }
    if (ar->tries >= RETRY_MAX_SLEEPS || now + ar->backoff > ar->retry_until) {
        arun_retry_end(c, ar);
        return 1;
    }
    if (arun_pause(ar, ar->backoff, w) == 0) {
        ar->tries++;
        ar->backoff *= 2;
        return 0;
    }
    for (size_t i = 0; i < ar->nretry; i++) {
        freeReplyObject(ar->retry[i].last);
        ar->again[ar->nagain++] = ar->retry[i].op;
    }
    ar->nretry = 0;
    return 1;
}

/* The retry list's ops become the next round, each to the master of its
 * slot (standalone: the working host, or the named master); one with no
 * master stays for the next backoff. */
static int arun_retry_go(kvi_conn *c, struct redis_arun *ar, kvi_wait *w)
{
    struct kvi_redis_node *one =
        ar->cluster ? NULL
        : kvi__redis_priv(c)->cfg.sentinel != NULL
            ? atomic_load(&ar->st->master)
            : ar->st->seeds[atomic_load(&ar->st->current) % ar->st->nseeds];
    size_t keep = 0;
    for (size_t i = 0; i < ar->nretry; i++) {
        kvi_batch_op *op = ar->retry[i].op;
        struct kvi_redis_node *node =
            ar->cluster ? op_master(ar, op) : one;
        if (node == NULL) {
            ar->retry[keep++] = ar->retry[i];
            ar->remap = ar->cluster;
            continue;
        }
        freeReplyObject(ar->retry[i].last);
        ar->next[ar->nnext].op = op;
        ar->next[ar->nnext].node = node;
        ar->next[ar->nnext].ask = 0;
        ar->next[ar->nnext++].hops = 0;
    }
    ar->nretry = keep;
    ar->gi = ar->ngroups = 0;
    return arun_next(c, ar, w);
}

/* The backoff ended: the map is read first when a reply said CLUSTERDOWN
 * or a slot had no master, then the retry round. */
static int arun_retry(kvi_conn *c, struct redis_arun *ar, kvi_wait *w)
{
    if (ar->remap) {
        ar->remap = 0;
        if (map_begin(c, ar) == 0) {
            ar->mretry = 1;
            if (map_step(c, ar, w) == 0)
                return 0;
            ar->mretry = 0;
        }
    }
    return arun_retry_go(c, ar, w);
}

/* Every op not yet ended fails with the map read's failure (nothing was
 * sent). */
static int arun_fail_all(kvi_conn *c, struct redis_arun *ar)
{
    for (size_t i = 0; i < ar->norig; i++)
        end_unsent(c, ar->orig[i], ar->mst != KVI_OK ? ar->mst : KVI_E_CONNECT, ar->merr);
    arun_free(c, ar);
    return 1;
}

/* The map read (or the question to the sentinels) ended: group and run
 * the ops -- or, when a key's slot still has no master (the read failed),
 * run the batch on the blocking path here; with Sentinel and no master
 * named, the ops fail, nothing sent.  When the question was asked again
 * for the ops that did not run (lookup_next), they go to the new master. */
static int arun_after_map(kvi_conn *c, struct redis_arun *ar, kvi_wait *w)
{
    struct kvi_redis *rp = kvi__redis_priv(c);
    if (ar->gk) {
        /* COMMAND GETKEYS for a raw query: the next one, then the ops. */
        arun_key_done(c, ar);
        return arun_keys(c, ar, w);
    }
    if (ar->mretry) {
        /* The map read before a retry round. */
        ar->mretry = 0;
        return arun_retry_go(c, ar, w);
    }
    if (ar->detect) {
        /* The mode was being decided: standalone goes on as such (a
         * failover list), a cluster is grouped by the map just read (with
         * wait_replicas: the blocking path, which knows the mode now; raw
         * queries were routed by start); nothing found fails the ops,
         * nothing sent. */
        int mode = atomic_load(&rp->mode);
        if (mode != KVI_REDIS_MODE_STANDALONE && mode != KVI_REDIS_MODE_CLUSTER)
            return arun_fail_all(c, ar);
        ar->detect = 0;
        ar->cluster = mode == KVI_REDIS_MODE_CLUSTER;
        if (ar->cluster && ar->nask > 0)
            return arun_keys(c, ar, w); /* then grouped by the map just read */
        if (!ar->cluster) {
            size_t cur = atomic_load(&ar->st->current) % ar->st->nseeds;
            ar->failover = ar->st->nseeds > 1;
            ar->fo_first = cur;
            arun_group(ar, ar->st->seeds[cur], 0);
            return arun_next(c, ar, w);
        }
    }
    if (ar->cluster) {
        /* Grouped by the map; an op whose slot has no master goes to the
         * retry list (after a backoff the map is read again).  No map
         * read at all: the ops fail with its last failure. */
        if (ar->mgot == 0 && arun_group(ar, NULL, 0) != 0)
            return arun_fail_all(c, ar);
        if (ar->mgot != 0)
            arun_group(ar, NULL, 1);
        return arun_next(c, ar, w);
    }
    struct kvi_redis_node *m = ar->sname != NULL ? atomic_load(&ar->st->master) : NULL;
    if (ar->lookup_next) {
        ar->lookup_next = 0;
        if (m == NULL) {
            kvi_status s = sentinel_none(c, ar);
            char msg[400];
            copy_msg(c, msg, sizeof msg);
            for (size_t i = 0; i < ar->nnext; i++)
                end_unsent(c, ar->next[i].op, s, msg);
            ar->nnext = 0;
        }
        for (size_t i = 0; i < ar->nnext; i++)
            ar->next[i].node = m;
        return arun_next(c, ar, w);
    }
    if (arun_group(ar, m, 0) != 0) {
        if (ar->sname != NULL) {
            kvi_status s = sentinel_none(c, ar);
            char msg[400];
            copy_msg(c, msg, sizeof msg);
            for (size_t i = 0; i < ar->norig; i++)
                end_unsent(c, ar->orig[i], s, msg);
        } else {
            kvi__redis_batch(c, ar->orig, ar->norig, ar->deadline_ms);
        }
        arun_free(c, ar);
        return 1;
    }
    return arun_next(c, ar, w);
}

/* Reads the slot map, or with Sentinel asks the sentinels in turn for the
 * master (ar->sentinel set), then goes on with arun_after_map. */
static int arun_lookup(kvi_conn *c, struct redis_arun *ar, kvi_wait *w)
{
    int r = 1;
    ar->sentinel = ar->sname;
    ar->sn_first = atomic_load(&ar->st->current);
    ar->sn_tried = ar->sn_down = 0;
    ar->sn_st = KVI_OK;
    snprintf(ar->sn_msg, sizeof ar->sn_msg, "none answered");
    if (map_begin(c, ar) == 0) {
        r = map_step(c, ar, w);
    } else if (ar->sentinel != NULL) {
        sentinel_failed(ar, KVI_E_CONNECT, "%s", ar->merr);
        r = sentinel_next(c, ar, w);
    }
    if (r == 0)
        return 0;
    return arun_after_map(c, ar, w);
}

/* COMMAND GETKEYS for orig[gk_i] ended (ar->mgot: answered, rslot[gk_i]
 * set; 0: no node answered, the failure in mst/merr, and that raw query
 * ends with it, nothing sent -- as the blocking path's). */
static void arun_key_done(kvi_conn *c, struct redis_arun *ar)
{
    gk_free(c, ar);
    ar->gk = 0;
    if (ar->mgot != 0) {
        ar->gk_i++;
        return;
    }
    end_unsent(c, ar->orig[ar->gk_i], ar->mst != KVI_OK ? ar->mst : KVI_E_CONNECT, ar->merr);
    size_t rest = ar->norig - ar->gk_i - 1;
    memmove(ar->orig + ar->gk_i, ar->orig + ar->gk_i + 1, rest * sizeof *ar->orig);
    memmove(ar->rslot + ar->gk_i, ar->rslot + ar->gk_i + 1, rest * sizeof *ar->rslot);
    ar->norig--;
}

/* In a Cluster, every raw query whose keys only the server can name is
 * asked about first, one after the other: COMMAND GETKEYS and its words,
 * to the working seed, or the next known node when one fails or does not
 * answer within its connect_timeout + timeout (the map read's steps,
 * cmap_*).  Then the ops are grouped (arun_begin).  0 waiting, 1 done. */
static int arun_keys(kvi_conn *c, struct redis_arun *ar, kvi_wait *w)
{
    while (ar->cluster && ar->nask > 0) {
        while (ar->gk_i < ar->norig && ar->rslot[ar->gk_i] != RSLOT_ASK)
            ar->gk_i++;
        if (ar->gk_i >= ar->norig)
            break;
        kvi_batch_op *op = ar->orig[ar->gk_i];
        /* Its words were checked by start: only out of memory fails. */
        kvi_status s = kvi__redis_raw_words(c, op->val, op->val_len, &ar->gk_words,
                                            &ar->gk_wlens, &ar->gk_count);
        if (s == KVI_OK) {
            ar->gk_argv = kvi_engine_malloc(c, (ar->gk_count + 2) * sizeof *ar->gk_argv);
            ar->gk_lens = kvi_engine_malloc(c, (ar->gk_count + 2) * sizeof *ar->gk_lens);
            if (ar->gk_argv == NULL || ar->gk_lens == NULL)
                s = kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
        }
        if (s != KVI_OK) {
            ar->mgot = 0;
            ar->mst = s;
            copy_msg(c, ar->merr, sizeof ar->merr);
            arun_key_done(c, ar);
            continue;
        }
        ar->gk_argv[0] = "COMMAND";
        ar->gk_lens[0] = 7;
        ar->gk_argv[1] = "GETKEYS";
        ar->gk_lens[1] = 7;
        for (size_t i = 0; i < ar->gk_count; i++) {
            ar->gk_argv[i + 2] = ar->gk_words[i];
            ar->gk_lens[i + 2] = ar->gk_wlens[i];
        }
        ar->gk = 1;
        if (cmap_begin(c, ar) == 0 && cmap_step(c, ar, w) == 0)
            return 0;
        arun_key_done(c, ar);
    }
    ar->nask = 0;
    return arun_begin(c, ar, w);
}

static int redis_async_start(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms,
                             void **state, kvi_wait *w)
{
    struct kvi_redis *rp = kvi__redis_priv(c);
    struct kvi_redis_state *st = NULL;
    /* The core stops us at the deadline; kept for the blocking fallback. */
    int mode = atomic_load(&rp->mode);
    if (mode == KVI_REDIS_MODE_UNKNOWN &&
        (rp->cfg.cluster == KVI_REDIS_CLUSTER_NO || rp->cfg.socket != NULL ||
         rp->cfg.sentinel != NULL)) {
        /* Known without asking a server (as dispatch.c's ensure_mode). */
        mode = KVI_REDIS_MODE_STANDALONE;
        atomic_store(&rp->mode, mode);
    }
    /* Not known yet (cluster=auto, or cluster=yes before its first map):
     * decided by a map read without blocking (detect). */
    int detect = mode != KVI_REDIS_MODE_STANDALONE && mode != KVI_REDIS_MODE_CLUSTER;
    /* Raw queries in a Cluster go to the master of their first key's
     * slot (route.h's table, as the blocking path); for one whose keys
     * only the server can name, COMMAND GETKEYS is asked first, by steps
     * (arun_keys). */
    int raws = 0;
    for (size_t i = 0; i < n && !raws; i++)
        raws = must_run_alone(ops[i]);
    if (kvi__redis_state_get(c, &st) != KVI_OK)
        return -1;
    struct redis_arun *ar = kvi_engine_malloc(c, sizeof *ar);
    if (ar == NULL)
        return -1;
    memset(ar, 0, sizeof *ar);
    ar->epfd = -1;
    ar->tfd = -1;
#ifdef __linux__
    ar->concurrent = 1;
#endif
    ar->st = st;
    ar->cluster = mode == KVI_REDIS_MODE_CLUSTER;
    ar->deadline_ms = deadline_ms;
    ar->node_of = kvi_engine_malloc(c, n * sizeof *ar->node_of);
    ar->orig = kvi_engine_malloc(c, n * sizeof *ar->orig);
    ar->ops = kvi_engine_malloc(c, n * sizeof *ar->ops);
    ar->ask = kvi_engine_malloc(c, n);
    ar->hops = kvi_engine_malloc(c, n);
    ar->groups = kvi_engine_malloc(c, n * sizeof *ar->groups);
    ar->next = kvi_engine_malloc(c, n * sizeof *ar->next);
    ar->again = kvi_engine_malloc(c, n * sizeof *ar->again);
    ar->views = kvi_engine_malloc(c, n * sizeof *ar->views);
    ar->ras = kvi_engine_malloc(c, n * sizeof *ar->ras);
    ar->retry = kvi_engine_malloc(c, n * sizeof *ar->retry);
    ar->wts = kvi_engine_malloc(c, n * sizeof *ar->wts);
    ar->waiting = kvi_engine_malloc(c, n);
    ar->regfd = kvi_engine_malloc(c, n * sizeof *ar->regfd);
    if (raws && (ar->rslot = kvi_engine_malloc(c, n * sizeof *ar->rslot)) == NULL) {
        arun_free(c, ar);
        return -1;
    }
    if (rp->node_cfg.wait_replicas > 0) {
        ar->held = kvi_engine_malloc(c, n * sizeof *ar->held);
        if (ar->held == NULL) {
            arun_free(c, ar);
            return -1;
        }
        memset(ar->held, 0, n * sizeof *ar->held);
    }
    pthread_once(&default_fns_once, default_fns_init);
    if (ar->node_of == NULL || ar->orig == NULL || ar->ops == NULL || ar->ask == NULL ||
        ar->hops == NULL || ar->groups == NULL || ar->next == NULL || ar->again == NULL ||
        ar->views == NULL || ar->ras == NULL || ar->retry == NULL || ar->wts == NULL || ar->waiting == NULL ||
        ar->regfd == NULL) {
        arun_free(c, ar);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        ar->ras[i].run = ar;
        ar->regfd[i] = -1;
        ar->waiting[i] = 0;
    }
    /* A raw query the raw_query slot would refuse (no command, one that
     * changes the connection's state) ends here, never sent. */
    for (size_t i = 0; i < n; i++) {
        if (ops[i]->kind == KVI_OP_RAW_QUERY) {
            char **words;
            size_t *lens, count;
            kvi_status s = kvi__redis_raw_words(c, ops[i]->val, ops[i]->val_len, &words, &lens,
                                                &count);
            if (s != KVI_OK) {
                kvi_batch_op_done(c, ops[i], s);
                continue;
            }
            int pos = kvi__redis_first_key(count, words, lens);
            ar->rslot[ar->norig] = pos > 0                   ? (int)kvi__redis_key_slot(words[pos], lens[pos])
                                   : pos == KVI_REDIS_NO_KEY ? RSLOT_NONE
                                                             : RSLOT_ASK;
            ar->nask += ar->rslot[ar->norig] == RSLOT_ASK;
            kvi_words_free(words, lens, count);
        }
        ar->orig[ar->norig++] = ops[i];
    }
    if (ar->norig == 0) {
        arun_free(c, ar);
        return 1;
    }
    size_t cur = atomic_load(&st->current);
    ar->failover = mode != KVI_REDIS_MODE_CLUSTER && rp->cfg.sentinel == NULL && st->nseeds > 1;
    ar->fo_first = cur;
    ar->sname = rp->cfg.sentinel;
    *state = ar;
    if (detect) {
        /* The mode: CLUSTER SHARDS (SLOTS before Redis 7) asked of the
         * seeds in turn, step by step; a map makes it a cluster (grouped
         * by it), "cluster support disabled" under cluster=auto a
         * standalone server (arun_after_map). */
        ar->detect = 1;
        ar->sentinel = NULL;
        if (map_begin(c, ar) != 0)
            return arun_fail_all(c, ar);
        if (map_step(c, ar, w) == 0)
            return 0;
        return arun_after_map(c, ar, w);
    }
    return arun_keys(c, ar, w);
}

/* The ops are grouped per node and their pipelines started -- after a map
 * read first when a MOVED made it stale, or when a key's slot has no
 * master in it (with Sentinel: after the sentinels were asked, when no
 * master is named yet). */
static int arun_begin(kvi_conn *c, struct redis_arun *ar, kvi_wait *w)
{
    struct kvi_redis_state *st = ar->st;
    if (ar->norig == 0) {
        arun_free(c, ar);
        return 1;
    }
    /* Standalone: the working host of the failover list, or with Sentinel
     * the master the sentinels named (the seeds are the sentinels). */
    struct kvi_redis_node *one = ar->sname != NULL ? atomic_load(&st->master)
                                                   : st->seeds[atomic_load(&st->current)];
    struct kvi_redis_node *hint = atomic_load(&st->map_stale);
    if (ar->cluster && hint != NULL &&
        atomic_compare_exchange_strong(&st->map_stale, &hint, NULL)) {
        /* A MOVED was seen (once per MOVED, by one batch): the map is read
         * again first, by steps, from the node the MOVED named (it just
         * answered), then the ops grouped by it. */
        ar->mhint = hint;
        return arun_lookup(c, ar, w);
    }
    if (arun_group(ar, one, 0) != 0) {
        /* No master named yet (Sentinel: the sentinels are asked in
         * turn), or a key's slot without a master in the map (a new
         * process's empty map): read the map first, without blocking. */
        if (!ar->cluster && ar->sname == NULL) {
            /* (Not -1: some raw queries may have ended above.) */
            kvi__redis_batch(c, ar->orig, ar->norig, ar->deadline_ms);
            arun_free(c, ar);
            return 1;
        }
        return arun_lookup(c, ar, w);
    }
    return arun_next(c, ar, w);
}

static int redis_async_resume(kvi_conn *c, void *state, kvi_wait *w)
{
    struct redis_arun *ar = state;
    if (ar->map != MAP_NONE) {
        if (map_step(c, ar, w) == 0)
            return 0;
        return arun_after_map(c, ar, w);
    }
#ifdef __linux__
    if (ar->backing) {
        uint64_t fired;
        if (read(ar->tfd, &fired, sizeof fired) != (ssize_t)sizeof fired) {
            w->fd = ar->tfd; /* not yet */
            w->events = KVI_WAIT_READ;
            return 0;
        }
        ar->backing = 0;
        /* The backoff before a re-ask (Sentinel), or before a retry round. */
        return ar->reask ? arun_reask(c, ar, w) : arun_retry(c, ar, w);
    }
#endif
    if (ar->via_epoll) {
#ifdef __linux__
        struct epoll_event evs[16];
        int k = epoll_wait(ar->epfd, evs, 16, 0);
        for (int e = 0; e < k; e++) {
            size_t g = (size_t)evs[e].data.u64;
            if (g < ar->gi && ar->waiting[g])
                arun_step(c, ar, g);
        }
        /* A pipeline whose own time limit passed is stepped too: it times
         * out there (ra_wait). */
        int64_t now = kvi_monotonic_ms();
        for (size_t g = 0; g < ar->gi; g++)
            if (ar->waiting[g] && ar->wts[g].deadline_ms != 0 && now >= ar->wts[g].deadline_ms)
                arun_step(c, ar, g);
#endif
    } else if (ar->concurrent == 2) {
        for (size_t g = 0; g < ar->gi; g++)
            if (ar->waiting[g])
                arun_step(c, ar, g);
    } else if (ar->nwait > 0) {
        arun_step(c, ar, ar->lone);
    }
    if (ar->nwait > 0)
        return arun_wait(ar, w);
    return arun_next(c, ar, w);
}

static void redis_async_cancel(kvi_conn *c, void *state, kvi_status st)
{
    struct redis_arun *ar = state;
    const char *why = st == KVI_E_TIMEOUT ? "no reply by the batch's deadline"
                                          : "the batch was canceled before the reply came";
    const char *unsent = st == KVI_E_TIMEOUT
                             ? "the batch's deadline passed before this operation was sent"
                             : "the batch was canceled before this operation was sent";
    if (ar->map != MAP_NONE) {
        map_close(c, ar, 0, KVI_OK);
        if (!ar->lookup_next && !ar->mretry) {
            /* Nothing of the batch was sent yet. */
            for (size_t i = 0; i < ar->norig; i++)
                end_unsent(c, ar->orig[i], st, unsent);
            arun_free(c, ar);
            return;
        }
        /* Asking again for the ops in next (which did not run). */
    }
    /* Answered TRYAGAIN/CLUSTERDOWN/LOADING or without a master: did not
     * run. */
    for (size_t i = 0; i < ar->nretry; i++) {
        freeReplyObject(ar->retry[i].last);
        end_unsent(c, ar->retry[i].op, st, unsent);
    }
    ar->nretry = 0;
    for (size_t g = 0; g < ar->gi; g++) {
        if (!ar->waiting[g])
            continue;
        ar_unreg(ar, g);
        ra_end_rest(c, &ar->ras[g], st, why);
        /* A connection left in the middle of a pipeline is not reused. */
        ra_close(c, &ar->ras[g], 0, KVI_OK);
        ar->waiting[g] = 0;
    }
    ar->nwait = 0;
    for (; ar->gi < ar->ngroups; ar->gi++)
        for (size_t i = ar->groups[ar->gi].from; i < ar->groups[ar->gi].to; i++)
            end_unsent(c, ar->ops[i], st, unsent);
    /* A redirected op did not run where it was sent first. */
    for (size_t i = 0; i < ar->nnext; i++)
        end_unsent(c, ar->next[i].op, st, unsent);
    for (size_t i = 0; i < ar->nagain; i++)
        end_unsent(c, ar->again[i], st,
                   "redirected and not sent again before the batch ended");
    arun_free(c, ar);
}

/* See batch.h. */
const struct kvi_engine_async kvi__redis_async = {
    .start = redis_async_start,
    .resume = redis_async_resume,
    .cancel = redis_async_cancel,
};
