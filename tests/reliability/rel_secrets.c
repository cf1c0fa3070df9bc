/*
 * rel_secrets.c -- a known password must appear nowhere: every `kvi`
 * command and error path (good URLs, a wrong password against a real
 * password-protected redis-server and a SASL memcached, bad URLs, unknown
 * options, connection failures, configuration files) runs with the
 * password in its URLs, and all of standard output and error, every
 * log-hook line (at DEBUG, slow-op threshold 1 us), every kvi_errmsg text,
 * the URL parser's messages and redacted forms and the formatted kvi_stats
 * are searched for it (decoded and percent-encoded).
 *
 *   rel_secrets PATH_TO_KVI
 *
 * redis-server is required (skip, 77, without it); memcached with SASL is
 * used when memcached and saslpasswd2 exist, else that part is skipped
 * with a message.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rel_util.h"
#include "testserver.h"

/* The secrets: the real passwords and a wrong one; each is also searched
 * for in its percent-encoded form. */
#define PW "Sekr3t-Pa55word-Kvi"
#define PW_WRONG "Wr0ng-Guess-Secret-77"
/* "p@ss:w/rd k%" encoded. */
#define PW_ODD_DEC "p@ss:w/rd k%"
#define PW_ODD_ENC "p%40ss%3Aw%2Frd%20k%25"

static const char *const secrets[] = {PW,         PW_WRONG,      PW_ODD_DEC,
                                      PW_ODD_ENC, "Wr0ng-Guess", "Pa55word"};

static char *g_kvi;
static char *g_tmp;
static uint64_t g_texts, g_bytes, g_log_lines;
static int g_leaks;

/* Searches text (len bytes) for every secret. */
static void scan(const char *where, const char *text, size_t len)
{
    g_texts++;
    g_bytes += len;
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        size_t sl = strlen(secrets[i]);
        for (size_t o = 0; o + sl <= len; o++) {
            if (memcmp(text + o, secrets[i], sl) == 0) {
                printf("LEAK in %s: \"%s\" found in: %.*s\n", where, secrets[i],
                       (int)(len > 300 ? 300 : len), text);
                g_leaks++;
                break;
            }
        }
    }
}

static void scan_str(const char *where, const char *s)
{
    if (s != NULL)
        scan(where, s, strlen(s));
}

/* ---- the kvi command ---------------------------------------------------------- */

/* Runs kvi with argv (NULL-terminated, without argv[0]) and stdin text;
 * scans its combined output; returns the exit status. */
static int run_kvi(const char *stdin_text, const char *const *args)
{
    char out_path[512], in_path[512];
    snprintf(out_path, sizeof out_path, "%s/out", g_tmp);
    snprintf(in_path, sizeof in_path, "%s/in", g_tmp);
    FILE *in = fopen(in_path, "w");
    if (in == NULL)
        rel_fail("cannot write %s", in_path);
    fputs(stdin_text != NULL ? stdin_text : "", in);
    fclose(in);
    const char *argv[64];
    size_t n = 0;
    argv[n++] = g_kvi;
    for (size_t i = 0; args[i] != NULL && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        rel_fail("fork");
    if (pid == 0) {
        int ofd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int ifd = open(in_path, O_RDONLY);
        if (ofd < 0 || ifd < 0)
            _exit(127);
        dup2(ifd, 0);
        dup2(ofd, 1);
        dup2(ofd, 2);
        execv(g_kvi, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    FILE *f = fopen(out_path, "rb");
    if (f == NULL)
        rel_fail("no output file");
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char where[256];
    snprintf(where, sizeof where, "kvi %s %s %s", args[0], args[1] ? args[1] : "",
             args[1] && args[2] ? args[2] : "");
    scan(where, buf, len);
    if (!WIFEXITED(status) || WEXITSTATUS(status) == 127)
        rel_fail("%s: did not run (status %d)", where, status);
    return WEXITSTATUS(status);
}

/* kvi -u URL [--json] ARGS... for a list of commands on id. */
static void kvi_commands(const char *url, const char *id, int expect_ok)
{
    const char *cmds[][5] = {
        {"store", id, "sk", "v", NULL},      {"fetch", id, "sk", NULL, NULL},
        {"add", id, "sc", "5", NULL},        {"sub", id, "sc", "2", NULL},
        {"counter", id, "sc", NULL, NULL},   {"ttl", id, "sk", NULL, NULL},
        {"keys", id, "s*", NULL, NULL},      {"remove-chunk", id, "zz*", NULL, NULL},
        {"ping", id, NULL, NULL, NULL},      {"stats", id, NULL, NULL, NULL},
        {"stats", NULL, NULL, NULL, NULL},   {"engines", NULL, NULL, NULL, NULL},
        {"raw", id, "PING", NULL, NULL},     {"remove", id, "sk", NULL, NULL},
        {"fetch", id, "missing", NULL, NULL}};
    int ok = 0;
    for (int json = 0; json < 2; json++) {
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
            const char *args[12];
            size_t n = 0;
            args[n++] = "-u";
            args[n++] = url;
            if (json)
                args[n++] = "--json";
            for (size_t j = 0; j < 5 && cmds[i][j] != NULL; j++)
                args[n++] = cmds[i][j];
            args[n] = NULL;
            if (run_kvi(NULL, args) == 0)
                ok++;
        }
    }
    if (expect_ok && ok == 0)
        rel_fail("no command succeeded with %s", id);
    /* stats ID, stats and engines need no server (twice: text and JSON). */
    if (!expect_ok && ok > 6)
        rel_fail("%d commands succeeded on a failing id %s", ok, id);
    /* The shell too, and a configuration file holding the URL. */
    char script[512];
    snprintf(script, sizeof script,
             "store %s a 1\nfetch %s a\nadd %s n 1\nraw %s GET a\nping %s\nbogus\n", id, id, id, id,
             id);
    const char *sh[] = {"-u", url, "shell", NULL};
    run_kvi(script, sh);
    char conf[512];
    snprintf(conf, sizeof conf, "%s/kvi.conf", g_tmp);
    FILE *f = fopen(conf, "w");
    if (f == NULL)
        rel_fail("conf");
    fprintf(f, "# test\n%s\n", url);
    fclose(f);
    const char *c1[] = {"-c", conf, "ping", id, NULL};
    run_kvi(NULL, c1);
    const char *c2[] = {"-c", conf, "--json", "engines", NULL};
    run_kvi(NULL, c2);
    const char *u1[] = {"url", url, NULL};
    run_kvi(NULL, u1);
    const char *u2[] = {"--json", "url", url, NULL};
    run_kvi(NULL, u2);
}

/* ---- the API -------------------------------------------------------------------- */

static void log_hook(void *ud, kvi_log_level level, const char *msg)
{
    (void)ud;
    (void)level;
    g_log_lines++;
    scan_str("log hook", msg);
}

static void api_checks(const char *url, const char *id)
{
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK)
        rel_fail("kvi_new");
    kvi_set_log(k, log_hook, NULL, KVI_LOG_DEBUG);
    kvi_set_slow_threshold(k, 1);
    kvi_status st = kvi_add_url(k, url);
    scan_str("kvi_errmsg(add_url)", kvi_errmsg(k));
    char err[512] = "";
    kvi_url *u = NULL;
    if (kvi_url_parse(url, &u, err, sizeof err) == KVI_OK) {
        char red[1024];
        kvi_url_format_redacted(u, red, sizeof red);
        scan_str("kvi_url_format_redacted", red);
        kvi_url_free(u);
    }
    scan_str("kvi_url_parse message", err);
    if (st == KVI_OK) {
        kvi_value v = KVI_VALUE_INIT;
        kvi_reply *r = NULL;
        int64_t n = 0;
        uint64_t removed = 0;
        kvi_store(k, id, "a", 1, "1", 1, 0);
        scan_str("kvi_errmsg(store)", kvi_errmsg(k));
        kvi_fetch(k, id, "a", 1, &v);
        scan_str("kvi_errmsg(fetch)", kvi_errmsg(k));
        kvi_value_free(&v);
        kvi_add(k, id, "a", 1, 1, 0, &n);
        scan_str("kvi_errmsg(add)", kvi_errmsg(k));
        kvi_raw_query(k, id, "AUTH " PW, strlen("AUTH " PW), &r);
        scan_str("kvi_errmsg(raw AUTH)", kvi_errmsg(k));
        if (r != NULL)
            scan_str("raw reply", kvi_reply_str(r, NULL));
        kvi_reply_free(r);
        r = NULL;
        kvi_raw_query(k, id, "NOSUCHCMD", 9, &r);
        scan_str("kvi_errmsg(raw)", kvi_errmsg(k));
        if (r != NULL)
            scan_str("raw reply", kvi_reply_str(r, NULL));
        kvi_reply_free(r);
        kvi_remove_chunk(k, id, "zz*", 3, &removed);
        scan_str("kvi_errmsg(remove_chunk)", kvi_errmsg(k));
        kvi_ping(k, id);
        scan_str("kvi_errmsg(ping)", kvi_errmsg(k));
        kvi_stats s;
        if (kvi_stats_get(k, id, &s) == KVI_OK) {
            char text[512];
            snprintf(text, sizeof text,
                     "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64, s.ops,
                     s.errors, s.misses, s.slow_ops, s.rejected, s.total_us);
            scan_str("kvi_stats", text);
        }
    }
    kvi_free(k);
}

/* ---- servers --------------------------------------------------------------------- */

static kvi_ts_server *start_sasl_memcached(void)
{
    char *prog = kvi_ts_find_program("saslpasswd2");
    if (prog == NULL)
        prog = kvi_ts_find_program("/usr/sbin/saslpasswd2");
    char *mc = kvi_ts_find_program("memcached");
    if (prog == NULL || mc == NULL) {
        free(prog);
        free(mc);
        if (kvi_ts_servers_required())
            rel_fail("memcached or saslpasswd2 missing (Debian packages memcached, sasl2-bin): "
                     "memcached SASL not checked, and KVI_REQUIRE_SERVERS=1");
        printf("SKIP part: memcached or saslpasswd2 missing; memcached SASL not checked\n");
        return NULL;
    }
    free(mc);
    char cmd[1024], path[512];
    snprintf(cmd, sizeof cmd, "printf '%%s' '%s' | %s -a memcached -c -p -f %s/sasldb2 alice", PW,
             prog, g_tmp);
    free(prog);
    if (system(cmd) != 0)
        rel_fail("saslpasswd2 failed");
    snprintf(path, sizeof path, "%s/memcached.conf", g_tmp);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        rel_fail("memcached.conf");
    fprintf(f, "mech_list: plain\nsasldb_path: %s/sasldb2\n", g_tmp);
    fclose(f);
    setenv("SASL_CONF_PATH", g_tmp, 1);
    const char *extra[] = {"-S", NULL};
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_memcached_start(&s, extra);
    unsetenv("SASL_CONF_PATH");
    if (r != KVI_TS_OK) {
        if (r != KVI_TS_MISSING || kvi_ts_servers_required())
            rel_fail("SASL memcached did not start: %s", kvi_ts_errmsg());
        printf("SKIP part: SASL memcached did not start: %s\n", kvi_ts_errmsg());
        return NULL;
    }
    return s;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2)
        rel_fail("usage: rel_secrets PATH_TO_KVI");
    g_kvi = argv[1];
    /* The scanner itself finds a secret in the middle of a text. */
    scan_str("self-test", "abc " PW_ODD_ENC " def");
    if (g_leaks != 1)
        rel_fail("the scanner missed a planted secret");
    g_leaks = 0;
    g_texts = g_bytes = 0;
    if (kvi_ts_make_tempdir("secrets", &g_tmp) != KVI_TS_OK)
        rel_fail("tempdir");
    char state[600];
    snprintf(state, sizeof state, "%s/state", g_tmp);
    setenv("XDG_STATE_HOME", state, 1);

    kvi *probe = NULL;
    kvi_new(&probe);
    if (kvi_add_url(probe, "redis://127.0.0.1:1/?lazy=1") == KVI_E_MODULE_MISSING)
        rel_skip("redis engine module not built");
    kvi_free(probe);
    const char *rextra[] = {"--requirepass", PW, NULL};
    kvi_ts_server *rs = NULL;
    kvi_ts_result r = kvi_ts_redis_start(&rs, rextra);
    if (r == KVI_TS_MISSING)
        rel_skip(kvi_ts_errmsg());
    if (r != KVI_TS_OK)
        rel_fail("redis-server: %s", kvi_ts_errmsg());
    /* An ACL user whose password has every special character. */
    {
        char url[256];
        kvi *k = NULL;
        kvi_new(&k);
        snprintf(url, sizeof url, "redis:adm://:%s@127.0.0.1:%u/", PW, kvi_ts_port(rs));
        kvi_reply *rep = NULL;
        const char q[] = "ACL SETUSER odd on >"
                         "\"" PW_ODD_DEC "\""
                         " ~* +@all";
        if (kvi_add_url(k, url) != KVI_OK ||
            kvi_raw_query(k, "redis:adm", q, strlen(q), &rep) != KVI_OK ||
            kvi_reply_type_of(rep) != KVI_REPLY_STATUS)
            rel_fail("cannot create the ACL user: %s", kvi_errmsg(k));
        kvi_reply_free(rep);
        kvi_free(k);
    }
    /* A server that echoes the password back: AUTH renamed away, so its
     * answer to the engine's AUTH is "ERR unknown command 'AUTH', with args
     * beginning with: '<password>'".  The engine passes a server's words
     * into its messages, so only the library's masking keeps the password
     * out of them: this is the end-to-end check of the masking itself. */
    const char *eextra[] = {"--rename-command", "AUTH", "", NULL};
    kvi_ts_server *es = NULL;
    r = kvi_ts_redis_start(&es, eextra);
    if (r != KVI_TS_OK)
        rel_fail("redis-server (AUTH renamed): %s", kvi_ts_errmsg());
    uint16_t free_port = 0;
    if (kvi_ts_free_port(&free_port) != KVI_TS_OK)
        rel_fail("free port");
    kvi_ts_server *ms = start_sasl_memcached();

    unsigned rp = kvi_ts_port(rs);
    char urls[20][512];
    int ok[20];
    const char *ids[20];
    int n = 0;
#define URL(good, id, ...)                                                                         \
    do {                                                                                           \
        snprintf(urls[n], sizeof urls[n], __VA_ARGS__);                                            \
        ids[n] = id;                                                                               \
        ok[n++] = good;                                                                            \
    } while (0)
    URL(1, "redis:r", "redis:r://:%s@127.0.0.1:%u/?timeout=500", PW, rp);
    URL(1, "redis:acl", "redis:acl://odd:%s@127.0.0.1:%u/", PW_ODD_ENC, rp);
    URL(0, "redis:w", "redis:w://:%s@127.0.0.1:%u/?timeout=500", PW_WRONG, rp);
    URL(0, "redis:wu", "redis:wu://odd:%s@127.0.0.1:%u/", PW_WRONG, rp);
    URL(0, "redis:down", "redis:down://:%s@127.0.0.1:%u/?connect_timeout=300", PW, free_port);
    URL(0, "redis:lazy", "redis:lazy://:%s@127.0.0.1:%u/?lazy=1&connect_timeout=300", PW,
        free_port);
    URL(0, "redis:bp", "redis:bp://:%s@127.0.0.1:99999/", PW);
    URL(0, "redis:bo", "redis:bo://:%s@127.0.0.1:%u/?nosuchoption=1", PW, rp);
    URL(0, "redis:bb", "redis:bb://:%s@[::1/", PW);
    URL(0, "redis:eh", "redis:eh://:%s@127.0.0.1:%u,,h2/", PW, rp);
    URL(0, "redis:db", "redis:db://:%s@127.0.0.1:%u/notanumber", PW, rp);
    URL(0, "nosuchengine", "nosuchengine://:%s@127.0.0.1/", PW);
    URL(0, "redis:echo", "redis:echo://:%s@127.0.0.1:%u/?timeout=500", PW, kvi_ts_port(es));
    URL(0, "redis:echou", "redis:echou://odd:%s@127.0.0.1:%u/", PW_ODD_ENC, kvi_ts_port(es));
    if (ms != NULL) {
        URL(1, "memcached:m", "memcached:m://alice:%s@127.0.0.1:%u/", PW, kvi_ts_port(ms));
        URL(0, "memcached:mw", "memcached:mw://alice:%s@127.0.0.1:%u/", PW_WRONG, kvi_ts_port(ms));
        URL(0, "memcached:mo", "memcached:mo://alice:%s@127.0.0.1:%u/?bogus=1", PW,
            kvi_ts_port(ms));
    }
    for (int i = 0; i < n; i++) {
        kvi_commands(urls[i], ids[i], ok[i]);
        api_checks(urls[i], ids[i]);
    }
    /* The echoing server did echo (else the check above proved nothing),
     * and the library masked it. */
    {
        kvi *k = NULL;
        kvi_new(&k);
        char url[256];
        snprintf(url, sizeof url, "redis:echo://:%s@127.0.0.1:%u/", PW, kvi_ts_port(es));
        if (kvi_add_url(k, url) == KVI_OK)
            kvi_ping(k, "redis:echo");
        const char *msg = kvi_errmsg(k);
        scan_str("kvi_errmsg(echo)", msg);
        if (strstr(msg, "unknown command") == NULL || strstr(msg, "***") == NULL)
            rel_fail("the AUTH-less server's answer was not seen masked: %s", msg);
        printf("echoing server, masked: %s\n", msg);
        kvi_free(k);
    }
    /* A configuration file whose bad line holds a password. */
    char conf[600];
    snprintf(conf, sizeof conf, "%s/bad.conf", g_tmp);
    FILE *f = fopen(conf, "w");
    if (f == NULL)
        rel_fail("conf");
    fprintf(f, "%s\nredis:x://:%s@h:0/\n", urls[0], PW);
    fclose(f);
    const char *c[] = {"-c", conf, "engines", NULL};
    run_kvi(NULL, c);
    kvi *k = NULL;
    kvi_new(&k);
    kvi_set_log(k, log_hook, NULL, KVI_LOG_DEBUG);
    kvi_load_config(k, conf);
    scan_str("kvi_errmsg(load_config)", kvi_errmsg(k));
    kvi_free(k);
    /* The servers' own logs are theirs, not kvi's; the temp dir holds the
     * sasldb and the scripts, so it is removed unscanned. */
    kvi_ts_free(rs);
    kvi_ts_free(es);
    kvi_ts_free(ms);
    kvi_ts_remove_tree(g_tmp);
    free(g_tmp);
    printf("RESULT secrets: %d URLs, %" PRIu64 " texts (%" PRIu64 " bytes, %" PRIu64
           " log lines) searched, %d leaks\n",
           n, g_texts, g_bytes, g_log_lines, g_leaks);
    if (g_log_lines == 0)
        rel_fail("the log hook saw nothing: the check would prove nothing");
    if (g_leaks != 0)
        rel_fail("a password appeared %d time(s)", g_leaks);
    printf("PASS secrets\n");
    return 0;
}
