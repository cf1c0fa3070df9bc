/*
 * engine.h -- the engine-author ABI of kvi.
 *
 * An engine is one `const struct kvi_engine` with designated initializers.
 * The core is the only caller of its slots: it has already checked every
 * argument (non-NULL, key 1..KVI_MAX_KEY_LEN bytes, value within
 * max_value_len, expire_s in 0..KVI_MAX_EXPIRE_S), zeroed the outputs, and
 * checked the capability bit of the operation, and it times the call and
 * counts stats afterwards.  Slots are called concurrently from many threads
 * on the same connection; an engine is responsible for its own locking and
 * must never hold a lock across another engine's call.
 *
 * A network engine is built as module kvi_<name>.so exporting
 *     KVI_ENGINE_MODULE(kvi_engine_<name>);
 * which the core finds by scheme in its module path.  An application may
 * instead register an engine object with kvi_register_engine().
 *
 * Status discipline for slots: return KVI_OK / KVI_NOT_FOUND (and, for
 * the conditional slots, KVI_OUT_OF_BOUNDS / KVI_KEY_EXISTS) for the normal
 * outcomes, otherwise an error status, after kvi_engine_error() has set the
 * detail message (never containing a password).  On error leave outputs
 * untouched (the core frees and zeroes them).
 */
#ifndef KVI_ENGINE_H
#define KVI_ENGINE_H

#include <stdarg.h>
#include <stddef.h> /* offsetof in KVI_BREAKER_OPTIONS */
#include "kvi/kvi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ABI version of struct kvi_engine.  New slots are only ever taken from
 * reserved_, so the struct keeps its size; an engine built for an older ABI
 * has those slots NULL (zero-initialised reserved_) and the core accepts
 * any abi_version from 1 to its own (an ABI-1 engine's reserved_ words are
 * ignored).  ABI 2: add_bounded and store_nx (KVI_CAP_CONDITIONAL) from
 * reserved_[0..1], option_table and options_size from reserved_[2..3].
 * ABI 3: the optional batch slot and async table, taken from the first two
 * words of the spare room (reserved_[0..1] of ABI 2); the core reads them
 * only from engines of ABI 3 or later.  See docs/engines/writing.md for what each version added. */
#define KVI_ENGINE_ABI 3

/* ---------------------------------------------------------------------- */
/* Declared URL options (ABI 2)                                             */

/* How the core reads an option's text and what it stores at the option's
 * offset in the engine's options struct.  Words (yes/no, enum choices, size
 * suffixes) match without regard to ASCII case; option names match exactly.
 * Numbers are whole decimals as kvi_parse_int64 reads them: no '+', no
 * blanks, no leading zeros. */
typedef enum kvi_option_kind {
    /* int: 1 for yes, true, on, 1; 0 for no, false, off, 0.  With min = -1
     * the word auto is accepted too and stored as -1. */
    KVI_OPT_BOOL = 1,
    KVI_OPT_INT,   /* int64_t in [min, max] */
    KVI_OPT_MS,    /* uint32_t milliseconds in [min, max] (within 0..UINT32_MAX) */
    KVI_OPT_SIZE,  /* uint64_t bytes in [min, max]; suffix k, m or g (x1024), optional b */
    KVI_OPT_ENUM,  /* int: the index of the word in choices */
    KVI_OPT_PATH,  /* char *: 1..KVI_OPT_PATH_MAX bytes */
    KVI_OPT_STRING /* char *: any text, may be empty */
} kvi_option_kind;

/* Longest value of a KVI_OPT_PATH option, in bytes. */
#define KVI_OPT_PATH_MAX 4000

/*
 * One URL option an engine accepts, as nginx modules declare directives.
 * The core parses every option of a URL with one grammar before open(),
 * into a zeroed struct of engine->options_size bytes that open() reads with
 * kvi_conn_options(); an option the URL does not give gets default_value,
 * parsed by the same rules (NULL: the field stays zero / NULL).  Strings
 * (PATH, STRING) are copies owned by the core, valid until after close().
 * A bad value is KVI_E_INVALID naming the option, the value and what is
 * allowed; open() is then not called.  The table ends with an entry whose
 * name is NULL (KVI_OPTION_END).  Checked at registration.
 */
typedef struct kvi_option {
    const char *name; /* [a-z][a-z0-9_]*, not a common option's name */
    kvi_option_kind kind;
    const char *default_value;  /* URL text or NULL */
    int64_t min, max;           /* INT, MS, SIZE: inclusive range; BOOL: min -1 allows auto */
    const char *const *choices; /* ENUM: NULL-terminated words */
    size_t offset;              /* offsetof(the options struct, the field) */
    const char *help;           /* one line, shown by `kvi url` */
} kvi_option;

/* clang-format off */
#define KVI_OPTION_END {NULL, (kvi_option_kind)0, NULL, 0, 0, NULL, 0, NULL}
/* clang-format on */

/* ---------------------------------------------------------------------- */
/* Batches (ABI 3)                                                          */

/*
 * One operation of a batch as the engine's batch slot sees it.  The core
 * has checked its arguments as for the single call and emptied the
 * results.  kind is never KVI_OP_SUB or KVI_OP_SUB_BOUNDED: those arrive as
 * KVI_OP_ADD / KVI_OP_ADD_BOUNDED with delta already negated.  The engine
 * ends every operation with kvi_batch_op_done() (or kvi_batch_op_single());
 * one it leaves open becomes KVI_E_INTERNAL.
 */
typedef struct kvi_batch_op {
    kvi_op_kind kind;
    const void *key; /* 1..KVI_MAX_KEY_LEN bytes; NULL for KVI_OP_RAW_QUERY */
    size_t key_len;
    const void *val; /* store, store_nx: the value; raw query: the query text */
    size_t val_len;
    int64_t expire_s;
    int64_t delta;    /* add, add_bounded (negated for sub) */
    int64_t min, max; /* add_bounded */

    /* Results, written by the engine before kvi_batch_op_done(). */
    kvi_value value;  /* fetch: fill with kvi_value_set()/kvi_value_alloc() */
    int64_t integer;  /* add, add_bounded (also on KVI_OUT_OF_BOUNDS), counter_fetch */
    kvi_reply *reply; /* raw query */
    /* Set by the core: whether the op changes state and must never be sent
     * twice (store_nx, add, add_bounded). */
    int no_resend;
    /* Set by kvi_batch_op_done() (read-only for engines): the outcome, and
     * whether the op has ended. */
    kvi_status status;
    int done;
    void *reserved_[4];
} kvi_batch_op;

/* Ends op with status st (the normal outcomes or an error).  For an error
 * the calling thread's current detail message (kvi_engine_error) becomes
 * the op's message.  A state-changing op (op->no_resend) that was written
 * to the server and got no answer must end with KVI_E_OUTCOME_UNKNOWN. */
KVI_EXPORT void kvi_batch_op_done(kvi_conn *c, kvi_batch_op *op, kvi_status st);

/* Fetch results in the batch's own memory: returns a buffer of len bytes
 * (plus a NUL after them) that becomes op->value (an earlier value of op
 * is released first), or NULL when out of memory (op->value empty).  The
 * bytes live until the batch is cleared or freed; kvi_value_free() on
 * op->value only empties it, and kvi_batch_take_value() hands the caller a
 * heap copy.  Cheaper than kvi_value_set() (no allocation per value):
 * meant for a batch slot's fetches.  Call it from the thread running the
 * batch. */
KVI_EXPORT char *kvi_batch_op_value_alloc(kvi_conn *c, kvi_batch_op *op, size_t len);

/* Runs op through the engine's own single-operation slot (store, fetch,
 * ...) and ends it, for the ops a batch slot does not group.  A
 * state-changing op failing with KVI_E_TIMEOUT, KVI_E_IO or KVI_E_PROTOCOL
 * ends with KVI_E_OUTCOME_UNKNOWN (the slot cannot say whether it was
 * sent).  Returns the op's final status. */
KVI_EXPORT kvi_status kvi_batch_op_single(kvi_conn *c, kvi_batch_op *op);

/* ABI 3, optional: running a batch's ops without blocking (the async
 * member of struct kvi_engine).  start gets the ops as the batch slot
 * does; it returns 1 when every op has ended, 0 when it waits (filling
 * *w: fd, events, and deadline_ms 0 or an earlier time of its own, when
 * resume must be called even if nothing is ready -- a step's own time
 * limit; the core keeps the earlier of that and the batch's) with its progress in
 * *state, or -1 when it cannot run these ops without blocking (nothing
 * done: the core then runs them through the batch slot).  resume
 * continues after the wait: 1 ended, 0 waits again.  cancel ends every op
 * not yet ended with st (KVI_E_TIMEOUT or KVI_E_CANCELED; a state change
 * already written with KVI_E_OUTCOME_UNKNOWN) and frees *state.  After 1
 * the engine has freed its state. */
struct kvi_engine_async {
    int (*start)(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms,
                 void **state, kvi_wait *w);
    int (*resume)(kvi_conn *c, void *state, kvi_wait *w);
    void (*cancel)(kvi_conn *c, void *state, kvi_status st);
};

struct kvi_engine {
    uint32_t abi_version; /* KVI_ENGINE_ABI */
    const char *name;     /* URL scheme: [a-z][a-z0-9_]* */
    const char *description;
    uint32_t caps;        /* KVI_CAP_* this engine guarantees */
    size_t conn_size;     /* bytes of private state per connection, zeroed */
    size_t max_value_len; /* largest value it accepts; 0 = KVI_MAX_VALUE_LEN */
    /* ABI 1 style: names of the URL options this engine parses itself in
     * open() (NULL-terminated); the core only rejects any other name except
     * the common ones (connect_timeout, timeout, lazy).  Still accepted;
     * new engines declare option_table instead (never both). */
    const char *const *options;

    /* Open a connection: parse the URL's hosts, database and options and
     * set up *kvi_conn_priv(c).  Connect now unless "lazy" is set (or the
     * engine always connects lazily).  url is valid only during the call
     * (copy what you keep).  Called without any core lock held.  On error
     * the core calls close(); close() is never called without open(). */
    kvi_status (*open)(kvi_conn *c, const kvi_url *url);
    /* Release everything open() and later calls acquired.  Must accept a
     * connection whose open() failed half-way. */
    void (*close)(kvi_conn *c);

    kvi_status (*store)(kvi_conn *c, const void *key, size_t key_len, const void *val,
                        size_t val_len, int64_t expire_s);
    /* Fill *out with kvi_value_set()/kvi_value_alloc(). */
    kvi_status (*fetch)(kvi_conn *c, const void *key, size_t key_len, kvi_value *out);
    kvi_status (*remove)(kvi_conn *c, const void *key, size_t key_len);
    /* Both add and sub arrive here; delta is already negated for sub. */
    kvi_status (*add)(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                      int64_t expire_s, int64_t *new_value);
    kvi_status (*counter_fetch)(kvi_conn *c, const void *key, size_t key_len, int64_t *out);
    kvi_status (*raw_query)(kvi_conn *c, const char *query, size_t query_len, kvi_reply **out);
    /* glob is never NULL (the core passes "*" for an empty one). */
    kvi_status (*keys)(kvi_conn *c, const char *glob, size_t glob_len, kvi_reply **out);
    kvi_status (*remove_chunk)(kvi_conn *c, const char *glob, size_t glob_len,
                              uint64_t *removed);
    kvi_status (*ttl)(kvi_conn *c, const void *key, size_t key_len, int64_t *ttl_s);
    kvi_status (*ping)(kvi_conn *c);
    /* Optional: set out->has_content and the content fields. */
    kvi_status (*stats)(kvi_conn *c, kvi_stats *out);

    /* ABI 2, KVI_CAP_CONDITIONAL (both or neither).  add_bounded: apply
     * delta (already negated for sub) only when the result stays within
     * [min, max] (min <= max is checked by the core), atomically with every
     * other operation on the key; a missing or expired key is created as
     * 0 + delta with expiry expire_s when that is within the bounds.  On
     * KVI_OK *value is the new value; on KVI_OUT_OF_BOUNDS nothing changed
     * and *value is the current value (0 when missing; the conformance
     * suite checks it).  Overflow (KVI_E_OVERFLOW) and a non-integer
     * value (KVI_E_NOT_A_COUNTER) are checked before the bounds. */
    kvi_status (*add_bounded)(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                              int64_t expire_s, int64_t min, int64_t max, int64_t *value);
    /* store_nx: store only when key is absent (expired counts as absent),
     * with the expiry set in the same atomic step; KVI_KEY_EXISTS (nothing
     * changed) otherwise. */
    kvi_status (*store_nx)(kvi_conn *c, const void *key, size_t key_len, const void *val,
                           size_t val_len, int64_t expire_s);

    /* ABI 2: the engine's declared URL options (see struct kvi_option) and
     * the size of the struct the core parses them into. */
    const kvi_option *option_table;
    size_t options_size;

    /* ABI 3, optional: runs n operations of this connection (n >= 1, in
     * the order they were added) in as few round trips as the store
     * allows, ending each with kvi_batch_op_done().  deadline_ms is the
     * kvi_monotonic_ms() time by which the whole batch must be done (0:
     * only the connection's own timeouts); an op not sent by then ends with
     * KVI_E_TIMEOUT.  Operations on one key must take effect in their
     * order.  Without this slot the core runs the ops one by one through
     * the single-operation slots. */
    void (*batch)(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms);
    /* ABI 3, optional: non-blocking batches (struct kvi_engine_async). */
    const struct kvi_engine_async *async;

    void *reserved_[2]; /* room to grow without breaking the ABI */
};

/* Marks the one symbol a module exports. */
#define KVI_ENGINE_MODULE(engine_var)                                            \
    __attribute__((visibility("default"))) const struct kvi_engine *kvi_module_engine(void); \
    __attribute__((visibility("default"))) const struct kvi_engine *kvi_module_engine(void) \
    {                                                                            \
        return &(engine_var);                                                    \
    }

/* For a module's thread-locals: `static _Thread_local int x KVI_MODULE_TLS;`.
 * A module is dlopen()ed, where the default TLS model reaches each variable
 * through __tls_get_addr and a block glibc allocates per thread on first
 * use; initial-exec puts them in the static TLS reserve instead (keep them
 * to a few dozen bytes: the reserve is shared by every dlopen()ed library).
 * It is also what AddressSanitizer's leak checker of GCC <= 13 and
 * LLVM <= 16 needs: its __tls_get_addr interceptor can misread such a
 * block and crash at exit ("Tracer caught signal 11"). */
#if defined(__GNUC__)
#define KVI_MODULE_TLS __attribute__((tls_model("initial-exec")))
#else
#define KVI_MODULE_TLS
#endif

/* Makes an engine available to a context under engine->name.  The engine
 * object must outlive the context.  KVI_E_EXISTS when the name is taken,
 * KVI_E_INVALID when the object is malformed (abi_version, name, slots). */
KVI_EXPORT kvi_status kvi_register_engine(kvi *k, const struct kvi_engine *engine);

/* ---------------------------------------------------------------------- */
/* Services the core gives to engines                                       */

/* The engine's private state of a connection (conn_size bytes, zeroed). */
KVI_EXPORT void *kvi_conn_priv(kvi_conn *c);

/* The context a connection belongs to. */
KVI_EXPORT kvi *kvi_conn_context(kvi_conn *c);

/* Replaces a connection's capability bits (by default the engine's caps)
 * with what this connection really guarantees, e.g. KVI_CAP_PERSISTENT for a
 * local store with a snapshot file.  Only from open().  Bits whose
 * operations need slots (COUNTERS, ITERATE, RAW_QUERY, TTL, CONDITIONAL)
 * cannot be added beyond the engine's caps. */
KVI_EXPORT void kvi_conn_set_caps(kvi_conn *c, uint32_t caps);

/* The struct the core parsed the engine's option_table into
 * (engine->options_size bytes; NULL without a table).  From open() until
 * close() returns; read-only for the engine. */
KVI_EXPORT const void *kvi_conn_options(const kvi_conn *c);

/* Common options, parsed once by the core (defaults 1000 ms and 0). */
KVI_EXPORT uint32_t kvi_conn_connect_timeout_ms(const kvi_conn *c);
KVI_EXPORT uint32_t kvi_conn_timeout_ms(const kvi_conn *c);
KVI_EXPORT int kvi_conn_lazy(const kvi_conn *c);

/* Sets the calling thread's detail message for the current call and returns
 * st, so that a slot can `return kvi_engine_error(c, KVI_E_IO, "...")`.  The
 * message is prefixed with the engine id.  Password-safe: in the text that
 * each argument puts in (%s, %d, ...: URL parts, a server's reply) the core
 * replaces every occurrence of the URL's password by "***" (a password of
 * one or two bytes by '*'; with a precision, also a cut-off start of it),
 * so an engine passes a server's error text as it is and need not mask it.
 * The format's own words are never masked, so that a password such as "e"
 * does not garble them: write fixed words into the format, not as
 * arguments, and never format the password in on purpose. */
KVI_EXPORT kvi_status kvi_engine_error(kvi_conn *c, kvi_status st, const char *fmt, ...)
    KVI_PRINTF(3, 4);

/* kvi_engine_error() for fixed words that arrive in a variable: where (the
 * operation's name, "fetch"; NULL or "" for none) is written after the
 * engine id as it is, never masked: "memcached: fetch: <fmt...>".  Passing
 * it as a %s argument instead would mask it where it holds the password
 * ("f*tch" for the password "e"). */
KVI_EXPORT kvi_status kvi_engine_error_in(kvi_conn *c, kvi_status st, const char *where,
                                          const char *fmt, ...) KVI_PRINTF(4, 5);

/* Logs through the context's hook, prefixed with the engine id, with the
 * URL's password masked in the arguments' text as in kvi_engine_error(). */
KVI_EXPORT void kvi_engine_log(kvi_conn *c, kvi_log_level level, const char *fmt, ...)
    KVI_PRINTF(3, 4);

/* Replaces the URL's password in msg (a NUL-terminated buffer, changed in
 * place; the text never grows) by "***", for text an engine hands out
 * other than through kvi_engine_error()/kvi_engine_log(), which do it
 * themselves.  Thread-safe. */
KVI_EXPORT void kvi_engine_scrub(const kvi_conn *c, char *msg);

/* Allocation through the context's allocator. */
KVI_EXPORT void *kvi_engine_malloc(kvi_conn *c, size_t size);
KVI_EXPORT void *kvi_engine_realloc(kvi_conn *c, void *ptr, size_t size);
KVI_EXPORT void kvi_engine_free(kvi_conn *c, void *ptr);

/* A copy of the NUL-terminated s through the context's allocator (free it
 * with kvi_engine_free); NULL when s is NULL or memory is short. */
KVI_EXPORT char *kvi_engine_strdup(kvi_conn *c, const char *s);

/* Milliseconds of CLOCK_MONOTONIC, for deadlines, intervals and back-off.
 * Never the context's replaceable wall clock (kvi_now_ms), which is for
 * expiry.  Thread-safe. */
KVI_EXPORT int64_t kvi_monotonic_ms(void);

/* Sleeps at least ms milliseconds (ms <= 0: returns at once), resuming
 * after a signal interrupts it.  Thread-safe. */
KVI_EXPORT void kvi_sleep_ms(int64_t ms);

/* Fills a value with a copy of len bytes (plus a NUL).  KVI_E_NOMEM. */
KVI_EXPORT kvi_status kvi_value_set(kvi_conn *c, kvi_value *out, const void *data, size_t len);
/* Gives out an uninitialised buffer of len bytes (plus a NUL the core
 * writes) for the engine to fill; returns NULL on KVI_E_NOMEM. */
KVI_EXPORT char *kvi_value_alloc(kvi_conn *c, kvi_value *out, size_t len);

/* Reply builders (NULL when out of memory).  An array takes ownership of
 * the elements appended to it. */
KVI_EXPORT kvi_reply *kvi_reply_new_nil(void);
KVI_EXPORT kvi_reply *kvi_reply_new_integer(int64_t v);
KVI_EXPORT kvi_reply *kvi_reply_new_string(kvi_reply_type type, const void *data, size_t len);
KVI_EXPORT kvi_reply *kvi_reply_new_array(size_t capacity_hint);
KVI_EXPORT kvi_status kvi_reply_append(kvi_reply *array, kvi_reply *element);

/* Parses a whole decimal int64 ("-42", no blanks, no '+', no leading zeros
 * except "0"): 1 on success, 0 when text is not exactly such a number. */
KVI_EXPORT int kvi_parse_int64(const char *text, size_t len, int64_t *out);

/* Formats v in decimal into buf (at least 21 bytes); returns the length. */
KVI_EXPORT size_t kvi_format_int64(int64_t v, char *buf);

/* Glob match with the syntax of kvi_keys() over byte strings; 1 on match. */
KVI_EXPORT int kvi_glob_match(const char *glob, size_t glob_len, const void *str,
                              size_t str_len);

/* Splits a query into words with shell-like quoting ("a b", 'a b', \x
 * escapes and \xHH in double quotes); used by raw_query of line-based
 * engines.  On success *words and *lens are arrays of *count elements, each
 * word NUL-terminated, freed with kvi_words_free.  KVI_E_INVALID for an
 * unterminated quote (with a detail message when c is not NULL). */
KVI_EXPORT kvi_status kvi_split_words(kvi_conn *c, const char *query, size_t query_len,
                                      char ***words, size_t **lens, size_t *count);
KVI_EXPORT void kvi_words_free(char **words, size_t *lens, size_t count);

/* ---------------------------------------------------------------------- */
/* Circuit breaker: a server that stops answering costs one timeout        */

/*
 * One breaker per server (each standalone host, failover host, cluster
 * node, memcached server).  After down_after consecutive calls that ended
 * in KVI_E_TIMEOUT or KVI_E_CONNECT, the server is marked down for
 * down_for_ms: calls to it fail at once with that status and a message
 * that names the server and says until when it is marked down.  When the
 * time is up, one call at a time goes through as a probe (the others still
 * fail at once); a probe that gets any answer marks the server up, one
 * that times out or cannot connect marks it down for down_for_ms again.
 * Any answer (also an error reply) resets the count.  Thread-safe.
 */
typedef struct kvi_breaker kvi_breaker;

/* The breaker's URL options, for an engine's option table. */
typedef struct kvi_breaker_options {
    int64_t down_after;   /* consecutive failures; 0 = never mark down */
    uint32_t down_for_ms; /* how long a server stays marked down */
} kvi_breaker_options;

/* Defaults of the breaker's URL options (docs/urls.md). */
#define KVI_BREAKER_DOWN_AFTER_DEFAULT "3"
#define KVI_BREAKER_DOWN_FOR_DEFAULT "2000"

/* The two kvi_option entries of the breaker (down_after, down_for) for a
 * kvi_breaker_options member of the engine's options struct type. */
#define KVI_BREAKER_OPTIONS(type, member)                                          \
    {"down_after", KVI_OPT_INT, KVI_BREAKER_DOWN_AFTER_DEFAULT, 0, 1000000, NULL,  \
     offsetof(type, member.down_after),                                            \
     "timeouts or connect failures in a row that mark a server down (0: never)"},  \
    {"down_for", KVI_OPT_MS, KVI_BREAKER_DOWN_FOR_DEFAULT, 1, 86400000, NULL,      \
     offsetof(type, member.down_for_ms),                                           \
     "how long a server marked down fails calls at once before one probe"}

/* A new breaker (server up) with opt's settings, allocated through c's
 * context; NULL when out of memory.  Free with kvi_breaker_free(). */
KVI_EXPORT kvi_breaker *kvi_breaker_new(kvi_conn *c, const kvi_breaker_options *opt);

/* Frees b (NULL is fine). */
KVI_EXPORT void kvi_breaker_free(kvi_conn *c, kvi_breaker *b);

/*
 * Before a call to the server named server (for messages): KVI_OK when
 * the call may go ahead (*probe = 1 when it is the one probe of a server
 * marked down), else KVI_E_TIMEOUT or KVI_E_CONNECT (the kind of the
 * failures that marked it down) with the detail message set, e.g.
 * "127.0.0.1:6379 is marked down until 08:15:02.120 UTC after 3 timeouts
 * in a row; calls fail at once until then".  b NULL: always KVI_OK.
 */
KVI_EXPORT kvi_status kvi_breaker_enter(kvi_conn *c, kvi_breaker *b, const char *server,
                                        int *probe);

/*
 * After a call that kvi_breaker_enter() let through: st is its outcome as
 * far as the server is concerned (KVI_E_TIMEOUT and KVI_E_CONNECT count as
 * failures; anything else is an answer), probe what enter() said.  Logs
 * (warning) when the server is marked down and (info) when it is back.
 */
KVI_EXPORT void kvi_breaker_leave(kvi_conn *c, kvi_breaker *b, const char *server, int probe,
                                  kvi_status st);

#ifdef __cplusplus
}
#endif

#endif /* KVI_ENGINE_H */
