/*
 * kvitest.h -- the support library of kvi's test programs (not part of
 * libkvi; prefix kvi_test_).  Every test built with kvi_add_test()
 * (tests/CMakeLists.txt) links it, together with testserver.c (throwaway
 * servers, kvi_ts_) and testcluster.c (Redis Clusters, kvi_tc_).
 *
 *   skip codes      KVI_TEST_SKIP (77) is what CTest reads as "skipped";
 *                   kvi_test_skip() prints why, loudly, and exits with it --
 *                   or fails when KVI_REQUIRE_SERVERS=1 (set by `make test`);
 *   servers         kvi_test_redis() / kvi_test_memcached(): start a server
 *                   or skip loudly; a server that cannot start is a failure;
 *   programs        kvi_test_need_program(): skip loudly when one is missing;
 *   contexts, URLs  kvi_test_context(): a context with the given URLs, or a
 *                   loud skip when their engine module is not built, or a
 *                   failure; kvi_test_url(): "redis://127.0.0.1:PORT/..."
 *                   for a started server;
 *   hung servers    kvi_test_hang() / kvi_test_unhang(): SIGSTOP / SIGCONT a
 *                   started server; kvi_test_peer_port(): the port a socket
 *                   is connected to (which server a call waits on);
 *   set-ups, case   kvi_test_cluster_case() / kvi_test_sentinels_case()
 *                   (testcase.c, cmocka): a Redis Cluster or Sentinel set-up
 *                   for one case, or a loud skip of that case.
 *
 * Clocks (monotonic/wall milliseconds, sleeping, a manual clock for
 * kvi_set_clock) are in testclock.h, included here.
 *
 * Everything here is for test programs: on a failure it prints what went
 * wrong to standard error and exits the process (status 1).
 */
#ifndef KVI_TEST_SUPPORT_H
#define KVI_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "kvi/kvi.h"
#include "testclock.h"
#include "testserver.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 in a build with AddressSanitizer (KVI_SANITIZE=ON, clang or gcc): its
 * allocator has no fork handling (clang 14), so a child forked while
 * another thread allocates may block in malloc for good -- a test that
 * forks with threads at work waits for them first in such a build (and
 * under valgrind, kvi_test_valgrind(), whose leak check of the child
 * counts what the parent's other threads held as lost, and fails it). */
#if defined(__SANITIZE_ADDRESS__)
#define KVI_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KVI_TEST_ASAN 1
#endif
#endif
#ifndef KVI_TEST_ASAN
#define KVI_TEST_ASAN 0
#endif

/* 1 when the program runs under valgrind. */
int kvi_test_valgrind(void);

/* Exit status CTest reads as "skipped" (SKIP_RETURN_CODE of every test). */
#define KVI_TEST_SKIP 77

#if defined(__GNUC__)
#define KVI_TEST_NORETURN __attribute__((noreturn))
#define KVI_TEST_FMT(f, a) __attribute__((format(printf, f, a)))
#else
#define KVI_TEST_NORETURN
#define KVI_TEST_FMT(f, a)
#endif

/* Prints "SKIPPED: <why>" to standard error and exits KVI_TEST_SKIP; under
 * KVI_REQUIRE_SERVERS=1 prints "FAILED: ..." instead and exits 1.  Servers
 * started through testserver.c are stopped by its exit hook. */
void kvi_test_skip(const char *fmt, ...) KVI_TEST_FMT(1, 2) KVI_TEST_NORETURN;

/* For one case of a cmocka program that cannot run here (a program, a
 * module, root missing): KVI_TEST_SKIP_CASE("why %s", ...) prints
 * "SKIPPED: why" and skips the case, or under KVI_REQUIRE_SERVERS=1 prints
 * "FAILED: ..." and fails it.  Include <cmocka.h> before using it.
 * kvi_test_skip_case_note() is its message half: returns 1 when the case
 * must fail instead of being skipped. */
int kvi_test_skip_case_note(const char *fmt, ...) KVI_TEST_FMT(1, 2);
#define KVI_TEST_SKIP_CASE(...)                                                                \
    do {                                                                                       \
        if (kvi_test_skip_case_note(__VA_ARGS__))                                              \
            fail();                                                                            \
        skip();                                                                                \
    } while (0)

/* For a case that does not apply (the engine does not declare the
 * capability the row is about): prints "N/A: why" and returns; the case
 * passes on what it checked before.  Not a skip: nothing is missing. */
void kvi_test_not_applicable(const char *fmt, ...) KVI_TEST_FMT(1, 2);

/* Prints "FAILED: <why>" to standard error and exits 1. */
void kvi_test_fail(const char *fmt, ...) KVI_TEST_FMT(1, 2) KVI_TEST_NORETURN;

/* Skips (kvi_test_skip) unless program `prog` is on PATH; `package` names
 * the Debian package that has it, for the message. */
void kvi_test_need_program(const char *prog, const char *package);

/* Starts a throwaway redis-server (kvi_ts_redis_start, `extra` appended to
 * its arguments, may be NULL) or memcached (kvi_ts_memcached_start).  A
 * binary not on PATH is a loud skip; a server that does not start is a
 * failure with its message.  Release with kvi_ts_free(). */
kvi_ts_server *kvi_test_redis(const char *const *extra);
kvi_ts_server *kvi_test_memcached(const char *const *extra);

/* Writes "<scheme>://127.0.0.1:<port of s>/<rest>" into buf (rest may be
 * "" or e.g. "?timeout=2000"); fails when it does not fit. */
void kvi_test_url(char *buf, size_t buflen, const char *scheme, const kvi_ts_server *s,
                  const char *rest);

/* A new context with each URL of the NULL-terminated list added in order
 * (none: an empty context).  An engine module that is not built is a loud
 * skip; any other error a failure that names the URL (passwords redacted
 * by the library's message).  Release with kvi_free(). */
kvi *kvi_test_context(const char *const *urls);

/* kvi_test_context() with one URL. */
kvi *kvi_test_context1(const char *url);

/* The scheduler state letter ('R', 'S', 'T', 'Z', ...) in a /proc stat
 * file (/proc/PID/stat, /proc/PID/task/TID/stat), 0 when it cannot be
 * read. */
char kvi_test_proc_state(const char *stat_path);

/* A hung server: SIGSTOP keeps its sockets open (connects still complete
 * in the kernel's backlog) but it answers nothing until kvi_test_unhang()
 * (SIGCONT); kvi_test_hang() returns once every thread of the server has
 * stopped (Linux /proc; at most 2 s, else a failure).  A signal that cannot be sent fails the program (exit 1,
 * also in a forked child: no cmocka jump).  kvi_test_unhang() of a server
 * that does not run (pid 0) does nothing, so teardowns may call it. */
void kvi_test_hang(kvi_ts_server *s);
void kvi_test_unhang(kvi_ts_server *s);

/* Waits with poll() for what a pending kvi_batch_start/_resume asked in w:
 * its descriptor ready as asked, or its deadline (w->deadline_ms, 0: none;
 * fd -1: only the deadline) -- what an event loop does, for tests that
 * drive a batch by hand.  A poll() error other than EINTR fails the
 * program, and so does a wait without a deadline that sees nothing for 60
 * s (a hang fails with a message, not at CTest's timeout). */
void kvi_test_wait(const kvi_wait *w);

/* A fork()ed child's leak check under valgrind (memcheck), counting what
 * the child itself loses.  After fork() memcheck may count blocks of the
 * parent lost in the child although nothing leaked: blocks held only by
 * another thread of the parent (that thread does not exist in the child;
 * glibc would give its stack to the child's next thread, which overwrites
 * it -- e.g. a Sentinel listener's connection), and blocks the parent
 * points to only from a register (keep such a pointer in a static before
 * the fork when the child must not free the block, e.g. the parent's
 * servers).  kvi_test_child_start(), first thing in the child: the
 * child's new threads get stacks of their own (never one of the parent's
 * threads'), the blocks lost so far are the baseline (each is lost in the
 * parent too, and the parent's own check reports it), and the child's
 * messages are quiet (-q: no second heap summary in the log it shares with
 * the parent).  kvi_test_child_exit(code), after the child released what
 * it holds: a full leak search that reports only blocks lost since the
 * baseline (each an error: memcheck's --error-exitcode then ends the child
 * with that code), no search at exit, and _exit(code) -- or
 * KVI_TEST_CHILD_LEAKED when the child lost blocks and code was 0.
 * Without valgrind: only _exit(code). */
#define KVI_TEST_CHILD_LEAKED 96
void kvi_test_child_start(void);
void kvi_test_child_exit(int code) KVI_TEST_NORETURN;

/* The port of the peer of socket fd (IPv4 or IPv6), 0 when fd is negative,
 * not connected or not an internet socket: tells which server a kvi_wait's
 * descriptor is connected to. */
unsigned kvi_test_peer_port(int fd);

/* 1 when descriptor fd is of `kind` as its /proc/self/fd link names it
 * ("socket", "timerfd", "eventpoll", ...): what a kvi_wait waits on. */
int kvi_test_fd_is(int fd, const char *kind);

/* For one case of a cmocka program (testcase.c; include <cmocka.h> and
 * testcluster.h / testsentinel.h first): starts a Redis Cluster
 * (kvi_tc_start) or a Sentinel set-up (kvi_tsn_start).  A program missing
 * is KVI_TEST_SKIP_CASE (this case only), a set-up that does not start
 * fails the case with the support library's message.  Release with
 * kvi_tc_free() / kvi_tsn_free(). */
struct kvi_tc_spec;
struct kvi_tc_cluster;
struct kvi_tsn_spec;
struct kvi_tsn_setup;
struct kvi_tc_cluster *kvi_test_cluster_case(const struct kvi_tc_spec *spec);
struct kvi_tsn_setup *kvi_test_sentinels_case(const struct kvi_tsn_spec *spec);

/* What kvi_test_fetch_storm() saw. */
typedef struct kvi_test_storm {
    int failed;      /* KVI_E_TIMEOUT or KVI_E_CONNECT */
    int marked_down; /* ... whose message says the server "is marked down" until "... UTC" */
    int other;       /* any other status */
    int calls;       /* calls made: threads x calls unless the budget ran out */
    int64_t elapsed_ms;
} kvi_test_storm;

/* Runs `threads` threads that each fetch `key` from engine id `id` `calls`
 * times (the breaker tests: calls against a stopped server), joins them and
 * fills *out.  A thread makes no further call once budget_ms have passed
 * since the start, so a breaker that never marks the server down fails the
 * test (out->calls short) within about budget_ms plus one timeout, not after
 * every call has waited for its timeout.  Fails the test when a thread
 * cannot be started. */
void kvi_test_fetch_storm(kvi *k, const char *id, const char *key, int threads, int calls,
                          int64_t budget_ms, kvi_test_storm *out);

#ifdef __cplusplus
}
#endif

#endif /* KVI_TEST_SUPPORT_H */
