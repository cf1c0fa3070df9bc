/*
 * testserver.h -- throwaway servers for kvi's tests.
 *
 * A small test-only library (not part of libkvi; prefix kvi_ts_) that runs
 * real servers on 127.0.0.1 for the tests that need them:
 *
 *     kvi_ts_server *s;
 *     if (kvi_ts_redis_start(&s, NULL) == KVI_TS_MISSING)
 *         ... skip the test, printing kvi_ts_errmsg() ...
 *     snprintf(url, sizeof url, "redis://127.0.0.1:%u/", kvi_ts_port(s));
 *     ...
 *     kvi_ts_kill(s);       // kill -9, e.g. to test "server down"
 *     kvi_ts_restart(s);    // same argv, port and directory
 *     kvi_ts_free(s);       // stops it and removes its temp directory
 *
 * Each server is a child process started with fork+exec, its stdout and
 * stderr going to "<dir>/<name>.log".  Whatever happens to the test, no
 * server outlives it: servers still running are stopped at exit(), on
 * SIGINT/SIGTERM/SIGABRT/SIGHUP, and (Linux) the kernel kills a server when
 * the process that started it dies, even by SIGKILL.  At exit() the temp
 * dirs of servers never freed are removed too.
 *
 * Threads: start/stop/restart/free of one server must not run concurrently
 * with each other; different servers may be handled from different threads.
 * The kernel's parent-death signal fires when the *thread* that started a
 * server exits, so start long-lived servers from a thread that outlives
 * them (normally the main thread).
 * Messages (kvi_ts_errmsg) are per thread.
 */
#ifndef KVI_TESTSERVER_H
#define KVI_TESTSERVER_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Results of the functions that can fail.  KVI_TS_MISSING means "this
 * machine cannot run that server" (binary not on PATH): a test gets it
 * only from a start function and must then skip, printing kvi_ts_errmsg(),
 * never pass silently. */
typedef enum kvi_ts_result { KVI_TS_OK = 0, KVI_TS_MISSING = 1, KVI_TS_FAILED = 2 } kvi_ts_result;

/* Text of the last failure of this thread ("" when none); valid until the
 * thread's next kvi_ts_ call. */
const char *kvi_ts_errmsg(void);

/* 1 when the environment says every server a test needs must be there
 * (KVI_REQUIRE_SERVERS=1, set by `make test` after installing them): then
 * a missing server binary is a failure, not a skip. */
int kvi_ts_servers_required(void);

/* The one decision for a server binary that is not on PATH: stores the
 * message "<prog> not found on PATH; install it (Debian: <package>) ..." and
 * returns KVI_TS_MISSING, or KVI_TS_FAILED when kvi_ts_servers_required().
 * The ready-made starters below and kvi_tc_start() use it. */
kvi_ts_result kvi_ts_missing(const char *prog, const char *package);

/* Full path of program `name` found on $PATH (or name itself when it holds a
 * '/' and is executable), malloc'd; NULL when there is none. */
char *kvi_ts_find_program(const char *name);

/* A TCP port on 127.0.0.1 that is free right now (bound, then released),
 * picked at random below the kernel's ephemeral port range, where no
 * outgoing connection can take it before the server binds it.
 * KVI_TS_FAILED when no socket can be bound. */
kvi_ts_result kvi_ts_free_port(uint16_t *port);

/* Makes a new private directory "$TMPDIR/kvi-<tag>-XXXXXX" (/tmp when
 * TMPDIR is unset) and returns its malloc'd path in *path. */
kvi_ts_result kvi_ts_make_tempdir(const char *tag, char **path);

/* Removes a directory tree (files, subdirectories, symlinks themselves).
 * NULL is accepted.  KVI_TS_FAILED when something could not be removed. */
kvi_ts_result kvi_ts_remove_tree(const char *path);

/* Readiness probe: given a socket connected to the server's port, returns 1
 * when the server is ready, 0 to retry a little later. */
typedef int (*kvi_ts_probe_fn)(int fd, void *ud);

/* Redis readiness probe: sends PING and accepts any reply but -LOADING
 * (so it also works with requirepass/ACL and with cluster nodes). */
int kvi_ts_probe_redis(int fd, void *ud);

/* What kvi_ts_start() runs. */
typedef struct kvi_ts_spec {
    const char *name;          /* short label: "redis", "memcached-2"; log file name */
    const char *const *argv;   /* NULL-terminated; argv[0] searched on $PATH; copied */
    uint16_t port;             /* 127.0.0.1 port it will listen on; 0 = nothing to wait for */
    const char *dir;           /* working directory (copied); NULL = a new temp dir */
    int own_dir;               /* remove dir in kvi_ts_free() (always for a new temp dir) */
    unsigned ready_timeout_ms; /* how long to wait for the port; 0 = 5000 */
    kvi_ts_probe_fn probe;     /* NULL = accepting a connection is enough */
    void *probe_ud;
} kvi_ts_spec;

/* Opaque running (or stopped) server. */
typedef struct kvi_ts_server kvi_ts_server;

/* Starts a server and waits until it accepts connections on spec->port (and
 * its probe says ready).  On success *out owns the server (release with
 * kvi_ts_free).  KVI_TS_MISSING when argv[0] is not found, KVI_TS_FAILED
 * when it exits or is not ready in time (the log's tail is in the message;
 * nothing is left running and a temp dir it made is removed). */
kvi_ts_result kvi_ts_start(const kvi_ts_spec *spec, kvi_ts_server **out);

/* Ready-made starters.  Each picks a free port and makes a temp dir, then
 * runs, with `extra` (NULL-terminated, may be NULL) appended:
 *   redis-server --port P --bind 127.0.0.1 --save "" --appendonly no
 *                --dir DIR [extra...]     (a later "--appendonly yes" wins)
 *   memcached -l 127.0.0.1 -p P -U 0 -I 2m -m 64 [-u root when root] [extra...]
 * Results as kvi_ts_start. */
kvi_ts_result kvi_ts_redis_start(kvi_ts_server **out, const char *const *extra);
kvi_ts_result kvi_ts_memcached_start(kvi_ts_server **out, const char *const *extra);

/* Accessors (the server keeps ownership of strings). */
uint16_t kvi_ts_port(const kvi_ts_server *s);
const char *kvi_ts_dir(const kvi_ts_server *s);
const char *kvi_ts_name(const kvi_ts_server *s);
const char *kvi_ts_log_path(const kvi_ts_server *s);
/* Process id, or 0 when not running. */
pid_t kvi_ts_pid(const kvi_ts_server *s);
/* 1 while the process is alive (reaps it when it has exited). */
int kvi_ts_running(kvi_ts_server *s);

/* Stops the server gracefully: SIGTERM, wait up to 5 s, then SIGKILL.  The
 * directory stays (restart reuses it).  No-op when not running. */
kvi_ts_result kvi_ts_stop(kvi_ts_server *s);

/* kill -9 and reap: the server dies without any cleanup or save. */
kvi_ts_result kvi_ts_kill(kvi_ts_server *s);

/* Stops the server if it runs, then starts it again with the same argv,
 * port and directory and waits until it is ready. */
kvi_ts_result kvi_ts_restart(kvi_ts_server *s);

/* Waits up to timeout_ms until the server accepts connections (and its
 * probe says ready). */
kvi_ts_result kvi_ts_wait_ready(kvi_ts_server *s, unsigned timeout_ms);

/* Writes the last max_bytes of the server's log to f (for failure reports). */
void kvi_ts_print_log(const kvi_ts_server *s, FILE *f, size_t max_bytes);

/* Stops the server, removes its directory when owned, frees it.  NULL is
 * accepted. */
void kvi_ts_free(kvi_ts_server *s);

/* SIGKILLs every server this process started that still runs (a forked
 * child never kills its parent's).  Used by the exit and signal hooks;
 * async-signal-safe.  Tests rarely need to call it. */
void kvi_ts_kill_all(void);

#ifdef __cplusplus
}
#endif

#endif /* KVI_TESTSERVER_H */
