/*
 * url.c -- the URL parser and its redacted printer (grammar in docs/urls.md):
 *
 *   scheme [":" group] "://" [userinfo "@"] [hostlist] ["/" [database]] ["?" options]
 *
 * The parser has no context, so it allocates with malloc() and reports
 * errors into a caller buffer.  It checks syntax only; which options an
 * engine accepts is checked later by the core.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

/* Longest piece of URL text quoted back in an error message. */
#define ECHO_MAX 48

/* More options than any engine has; the bound keeps the duplicate check
 * (quadratic) cheap on hostile input. */
#define MAX_OPTIONS 256

struct parser {
    char *err;
    size_t errlen;
    /* Set when an '@' follows the authority: then the URL is probably a
     * mistyped one whose password holds an unencoded '/' or '?', and no URL
     * text may be quoted in errors, because any of it may be password. */
    int quiet;
    kvi_status st;
};

/* A piece of the input: [p, p + n). */
struct span {
    const char *p;
    size_t n;
};

static kvi_status fail(struct parser *ps, kvi_status st, const char *fmt, ...) KVI_PRINTF(3, 4);

static kvi_status fail(struct parser *ps, kvi_status st, const char *fmt, ...)
{
    /* Keep the first error: it is the one that names the real cause. */
    if (ps->st != KVI_OK)
        return ps->st;
    ps->st = st;
    if (ps->err != NULL && ps->errlen > 0) {
        int n = 0;
        if (st == KVI_E_BAD_URL)
            n = snprintf(ps->err, ps->errlen, "bad URL: ");
        if (n >= 0 && (size_t)n < ps->errlen) {
            va_list ap;
            va_start(ap, fmt);
            int m = vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
            va_end(ap);
            if (ps->quiet && m >= 0 && (size_t)n + (size_t)m < ps->errlen)
                snprintf(ps->err + n + m, ps->errlen - (size_t)n - (size_t)m,
                         " (URL text hidden: an '@' after the host list suggests an unencoded"
                         " '/' or '?' in the password; percent-encode it)");
        }
    }
    return st;
}

static kvi_status nomem(struct parser *ps)
{
    return fail(ps, KVI_E_NOMEM, "out of memory while parsing URL");
}

/* Quotes a piece of URL text for an error message: at most ECHO_MAX bytes,
 * non-printable bytes as '?', "..." when cut.  In quiet mode it quotes
 * nothing.  Returns buf. */
static const char *echo(const struct parser *ps, struct span s, char buf[ECHO_MAX + 8])
{
    if (ps->quiet) {
        strcpy(buf, "(hidden)");
        return buf;
    }
    size_t n = 0;
    for (; n < s.n && n < ECHO_MAX; n++) {
        unsigned char ch = (unsigned char)s.p[n];
        buf[n] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    if (s.n > ECHO_MAX) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* Percent-decodes s into a new NUL-terminated string in *out.  `what`
 * names the part in error messages ("the password", "host 2"). */
static kvi_status decode(struct parser *ps, struct span s, const char *what, char **out)
{
    char *d = malloc(s.n + 1);
    if (d == NULL)
        return nomem(ps);
    size_t j = 0;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch != '%') {
            d[j++] = (char)ch;
            continue;
        }
        int hi = i + 1 < s.n ? kvi__hexval((unsigned char)s.p[i + 1]) : -1;
        int lo = i + 2 < s.n ? kvi__hexval((unsigned char)s.p[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            free(d);
            return fail(ps, KVI_E_BAD_URL,
                        "bad percent-encoding in %s ('%%' must be followed by two hex digits)",
                        what);
        }
        if (hi == 0 && lo == 0) {
            free(d);
            return fail(ps, KVI_E_BAD_URL, "%%00 (NUL byte) not allowed in %s", what);
        }
        d[j++] = (char)(hi * 16 + lo);
        i += 2;
    }
    d[j] = '\0';
    *out = d;
    return KVI_OK;
}

/* Like decode() but leaves *out NULL for an empty piece. */
static kvi_status decode_opt(struct parser *ps, struct span s, const char *what, char **out)
{
    *out = NULL;
    if (s.n == 0)
        return KVI_OK;
    kvi_status st = decode(ps, s, what, out);
    if (st == KVI_OK && *out != NULL && (*out)[0] == '\0') {
        free(*out);
        *out = NULL;
    }
    return st;
}

static const char *find_byte(struct span s, char ch)
{
    return s.n == 0 ? NULL : memchr(s.p, ch, s.n);
}

static const char *find_last_byte(struct span s, char ch)
{
    for (size_t i = s.n; i > 0; i--)
        if (s.p[i - 1] == ch)
            return s.p + i - 1;
    return NULL;
}

static int is_scheme(const char *s)
{
    if (!(s[0] >= 'a' && s[0] <= 'z'))
        return 0;
    for (size_t i = 1; s[i] != '\0'; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return 0;
    }
    return 1;
}

static int is_group(const char *s)
{
    if (s[0] == '\0')
        return 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

static kvi_status parse_id(struct parser *ps, struct span s, kvi_url *u)
{
    char e[ECHO_MAX + 8];
    const char *colon = find_byte(s, ':');
    struct span sch = {s.p, colon != NULL ? (size_t)(colon - s.p) : s.n};

    if (sch.n == 0)
        return fail(ps, KVI_E_BAD_URL, "missing scheme before '://'");
    if (decode(ps, sch, "the scheme", &u->scheme) != KVI_OK)
        return ps->st;
    if (!is_scheme(u->scheme))
        return fail(ps, KVI_E_BAD_URL,
                    "scheme '%s' is not valid (lower-case letter, then a-z, 0-9, '_')",
                    echo(ps, sch, e));
    if (colon != NULL) {
        struct span grp = {colon + 1, s.n - sch.n - 1};
        if (grp.n == 0)
            return fail(ps, KVI_E_BAD_URL, "empty group after '%s:'", u->scheme);
        if (decode(ps, grp, "the group", &u->group) != KVI_OK)
            return ps->st;
        if (!is_group(u->group))
            return fail(ps, KVI_E_BAD_URL,
                        "group '%s' is not valid (letters, digits, '_', '.', '-')",
                        echo(ps, grp, e));
    }

    size_t idlen = strlen(u->scheme) + (u->group != NULL ? 1 + strlen(u->group) : 0);
    if (idlen > KVI_MAX_ID_LEN)
        return fail(ps, KVI_E_BAD_URL, "engine id is %zu bytes long, more than %u", idlen,
                    KVI_MAX_ID_LEN);
    u->id = malloc(idlen + 1);
    if (u->id == NULL)
        return nomem(ps);
    if (u->group != NULL)
        snprintf(u->id, idlen + 1, "%s:%s", u->scheme, u->group);
    else
        memcpy(u->id, u->scheme, idlen + 1);
    return KVI_OK;
}

static kvi_status parse_userinfo(struct parser *ps, struct span s, kvi_url *u)
{
    /* The password is everything after the FIRST ':' so that it may itself
     * contain ':' (and '@', since the userinfo ends at the last '@'). */
    const char *colon = find_byte(s, ':');
    struct span user = {s.p, colon != NULL ? (size_t)(colon - s.p) : s.n};
    if (decode_opt(ps, user, "the user name", &u->user) != KVI_OK)
        return ps->st;
    if (colon != NULL) {
        struct span pw = {colon + 1, s.n - user.n - 1};
        if (decode(ps, pw, "the password", &u->password) != KVI_OK)
            return ps->st;
        u->has_password = 1;
    }
    return KVI_OK;
}

static kvi_status parse_port(struct parser *ps, struct span s, size_t pos, uint16_t *port)
{
    char e[ECHO_MAX + 8];
    char what[48];
    char *text = NULL;

    snprintf(what, sizeof what, "the port of host %zu", pos);
    if (s.n == 0)
        return fail(ps, KVI_E_BAD_URL, "empty port after ':' in host %zu", pos);
    if (decode(ps, s, what, &text) != KVI_OK)
        return ps->st;
    unsigned long v = 0;
    int digits = text[0] != '\0';
    for (const char *q = text; *q != '\0'; q++) {
        if (*q < '0' || *q > '9') {
            digits = 0;
            break;
        }
        /* Saturate instead of overflowing: any value this big is out of
         * range anyway. */
        if (v <= 100000)
            v = v * 10 + (unsigned long)(*q - '0');
    }
    free(text);
    /* The "port" may be a password whose '@' is missing (user:secret/0):
     * never echo a non-numeric one, nor a number longer than a port. */
    if (!digits)
        return fail(ps, KVI_E_BAD_URL,
                    "port of host %zu is not a number (text not shown: if it is a password, "
                    "the URL lacks '@' before the host)",
                    pos);
    if (v < 1 || v > 65535) {
        if (s.n > 5)
            return fail(ps, KVI_E_BAD_URL, "port of host %zu out of range 1..65535", pos);
        return fail(ps, KVI_E_BAD_URL, "port %s of host %zu out of range 1..65535", echo(ps, s, e),
                    pos);
    }
    *port = (uint16_t)v;
    return KVI_OK;
}

/* Parses one host[:port] or [v6][:port] item at position pos (1-based). */
static kvi_status parse_host(struct parser *ps, struct span s, size_t pos, kvi_url_host *h)
{
    char e[ECHO_MAX + 8];
    char what[32];
    struct span name;
    const char *rest;

    snprintf(what, sizeof what, "host %zu", pos);
    if (s.n > 0 && s.p[0] == '[') {
        const char *close = find_byte((struct span){s.p, s.n}, ']');
        if (close == NULL)
            return fail(ps, KVI_E_BAD_URL, "unterminated '[' in host %zu", pos);
        name = (struct span){s.p + 1, (size_t)(close - s.p - 1)};
        if (name.n == 0)
            return fail(ps, KVI_E_BAD_URL, "empty IPv6 address '[]' in host %zu", pos);
        h->ipv6 = 1;
        rest = close + 1;
        if (rest < s.p + s.n && *rest != ':')
            return fail(ps, KVI_E_BAD_URL,
                        "unexpected text '%s' after ']' in host %zu (expected ':port' or ',')",
                        echo(ps, (struct span){rest, (size_t)(s.p + s.n - rest)}, e), pos);
    } else {
        const char *colon = find_byte(s, ':');
        name = (struct span){s.p, colon != NULL ? (size_t)(colon - s.p) : s.n};
        if (name.n == 0)
            return fail(ps, KVI_E_BAD_URL, "empty host in host list (position %zu)", pos);
        if (find_byte(name, ']') != NULL)
            return fail(ps, KVI_E_BAD_URL, "unexpected ']' in host %zu", pos);
        rest = name.p + name.n;
    }
    if (decode(ps, name, what, &h->host) != KVI_OK)
        return ps->st;
    if (rest < s.p + s.n) /* *rest == ':' */
        return parse_port(ps, (struct span){rest + 1, (size_t)(s.p + s.n - rest - 1)}, pos,
                          &h->port);
    return KVI_OK;
}

static kvi_status parse_hostlist(struct parser *ps, struct span s, kvi_url *u)
{
    if (s.n == 0)
        return KVI_OK; /* local:// and unix-socket style URLs have no host */
    size_t n = 1;
    for (size_t i = 0; i < s.n; i++)
        n += s.p[i] == ',';
    u->hosts = calloc(n, sizeof *u->hosts);
    if (u->hosts == NULL)
        return nomem(ps);
    const char *p = s.p;
    const char *end = s.p + s.n;
    for (size_t i = 0; i < n; i++) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma != NULL ? comma : end;
        u->nhosts = i + 1; /* so that kvi_url_free frees what was filled */
        if (parse_host(ps, (struct span){p, (size_t)(stop - p)}, i + 1, &u->hosts[i]) != KVI_OK)
            return ps->st;
        p = stop + 1;
    }
    return KVI_OK;
}

static kvi_status parse_options(struct parser *ps, struct span s, kvi_url *u)
{
    char e[ECHO_MAX + 8];
    char what[64];

    if (s.n == 0)
        return KVI_OK; /* "host/?" has no options */
    size_t n = 1;
    for (size_t i = 0; i < s.n; i++)
        n += s.p[i] == '&';
    if (n > MAX_OPTIONS)
        return fail(ps, KVI_E_BAD_URL, "too many options (%zu, at most %d)", n, MAX_OPTIONS);
    u->options = calloc(n, sizeof *u->options);
    if (u->options == NULL)
        return nomem(ps);
    const char *p = s.p;
    const char *end = s.p + s.n;
    for (size_t i = 0; i < n; i++) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        struct span item = {p, (size_t)((amp != NULL ? amp : end) - p)};
        kvi_url_option *o = &u->options[i];
        u->noptions = i + 1;
        p = item.p + item.n + 1;

        if (item.n == 0)
            return fail(ps, KVI_E_BAD_URL, "empty option (position %zu) in '?' part", i + 1);
        const char *eq = find_byte(item, '=');
        if (eq == NULL)
            return fail(ps, KVI_E_BAD_URL, "option '%s' has no '=' (write name=value)",
                        echo(ps, item, e));
        struct span name = {item.p, (size_t)(eq - item.p)};
        struct span value = {eq + 1, item.n - name.n - 1};
        if (name.n == 0)
            return fail(ps, KVI_E_BAD_URL, "option %zu has an empty name", i + 1);
        snprintf(what, sizeof what, "the name of option %zu", i + 1);
        if (decode(ps, name, what, &o->name) != KVI_OK)
            return ps->st;
        snprintf(what, sizeof what, "the value of option '%s'", echo(ps, name, e));
        if (decode(ps, value, what, &o->value) != KVI_OK)
            return ps->st;
        for (size_t j = 0; j < i; j++)
            if (strcmp(u->options[j].name, o->name) == 0)
                return fail(ps, KVI_E_BAD_URL, "option '%s' given twice", echo(ps, name, e));
    }
    return KVI_OK;
}

static kvi_status parse(struct parser *ps, const char *url, kvi_url *u)
{
    size_t len = strlen(url);

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)url[i];
        if (ch <= 0x20 || ch == 0x7f)
            return fail(ps, KVI_E_BAD_URL,
                        "blank or control character at offset %zu (percent-encode it)", i);
    }
    const char *sep = strstr(url, "://");
    if (sep == NULL)
        return fail(ps, KVI_E_BAD_URL, "missing '://' after the scheme");

    /* Where the authority ends decides which '@' is the last one of the
     * userinfo; an '@' after it means the URL is probably mistyped and may
     * spill a password into the database or options, so stay quiet. */
    const char *auth = sep + 3;
    size_t auth_len = strcspn(auth, "/?");
    const char *after = auth + auth_len;
    ps->quiet = strchr(after, '@') != NULL;

    if (parse_id(ps, (struct span){url, (size_t)(sep - url)}, u) != KVI_OK)
        return ps->st;

    struct span a = {auth, auth_len};
    const char *at = find_last_byte(a, '@');
    if (at != NULL) {
        if (parse_userinfo(ps, (struct span){auth, (size_t)(at - auth)}, u) != KVI_OK)
            return ps->st;
        a = (struct span){at + 1, (size_t)(auth + auth_len - at - 1)};
    }
    if (parse_hostlist(ps, a, u) != KVI_OK)
        return ps->st;

    if (*after == '/') {
        size_t db_len = strcspn(after + 1, "?");
        if (decode_opt(ps, (struct span){after + 1, db_len}, "the database", &u->database) !=
            KVI_OK)
            return ps->st;
        after += 1 + db_len;
    }
    if (*after == '?') {
        if (parse_options(ps, (struct span){after + 1, strlen(after + 1)}, u) != KVI_OK)
            return ps->st;
    }
    return KVI_OK;
}

/*
 * Parses url into a new *out (free with kvi_url_free).  KVI_E_INVALID for a
 * NULL url or out, KVI_E_BAD_URL for bad syntax, KVI_E_NOMEM; on error *out
 * is NULL and err (errlen bytes, may be NULL/0) holds a message that names
 * the offending part and never holds the password or the raw userinfo.
 * Thread-safe; allocates with malloc().
 */
kvi_status kvi_url_parse(const char *url, kvi_url **out, char *err, size_t errlen)
{
    struct parser ps = {err, errlen, 0, KVI_OK};

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL)
        return fail(&ps, KVI_E_INVALID, "kvi_url_parse: out is NULL");
    *out = NULL;
    if (url == NULL)
        return fail(&ps, KVI_E_INVALID, "URL is NULL");

    kvi_url *u = calloc(1, sizeof *u);
    if (u == NULL)
        return nomem(&ps);
    if (parse(&ps, url, u) != KVI_OK) {
        kvi_url_free(u);
        return ps.st;
    }
    *out = u;
    return KVI_OK;
}

/* Frees a URL returned by kvi_url_parse, password bytes wiped first.  NULL
 * is accepted. */
void kvi_url_free(kvi_url *u)
{
    if (u == NULL)
        return;
    free(u->scheme);
    free(u->group);
    free(u->id);
    free(u->user);
    if (u->password != NULL) {
        /* volatile so that the wipe is not optimised away before free() */
        volatile char *p = u->password;
        while (*p != '\0')
            *p++ = '\0';
        free(u->password);
    }
    for (size_t i = 0; i < u->nhosts; i++)
        free(u->hosts[i].host);
    free(u->hosts);
    free(u->database);
    for (size_t i = 0; i < u->noptions; i++) {
        free(u->options[i].name);
        free(u->options[i].value);
    }
    free(u->options);
    free(u);
}

/* Value of option name, or NULL when absent (or u/name NULL).  Owned by u. */
const char *kvi_url_option_get(const kvi_url *u, const char *name)
{
    if (u == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < u->noptions; i++)
        if (u->options[i].name != NULL && strcmp(u->options[i].name, name) == 0)
            return u->options[i].value;
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* Redacted printing                                                       */

struct out {
    char *buf;
    size_t cap;
    size_t len; /* length the full text needs */
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len < o->cap) {
        size_t room = o->cap - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Writes s percent-encoded: unreserved characters and those in `keep` stay
 * as they are. */
static void put_enc(struct out *o, const char *s, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        unsigned char ch = *p;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~' || (strchr(keep, ch) != NULL)) {
            put(o, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            put(o, e, 3);
        }
    }
}

/*
 * Writes u back in canonical form, with the password (if any) shown as
 * "***" and each part percent-encoded where needed so that the text parses
 * back to the same URL (but for the password).  buf gets at most buflen
 * bytes including the NUL (buf may be NULL when buflen is 0).  Returns the
 * length the whole text needs, like snprintf; 0 for a NULL u.
 */
size_t kvi_url_format_redacted(const kvi_url *u, char *buf, size_t buflen)
{
    struct out o = {buf, buflen, 0};

    if (u == NULL || u->scheme == NULL) {
        if (buf != NULL && buflen > 0)
            buf[0] = '\0';
        return 0;
    }
    puts_(&o, u->scheme);
    if (u->group != NULL) {
        puts_(&o, ":");
        puts_(&o, u->group);
    }
    puts_(&o, "://");
    if (u->user != NULL || u->has_password) {
        if (u->user != NULL)
            put_enc(&o, u->user, "");
        if (u->has_password)
            puts_(&o, ":***");
        puts_(&o, "@");
    }
    for (size_t i = 0; i < u->nhosts; i++) {
        const kvi_url_host *h = &u->hosts[i];
        if (i > 0)
            puts_(&o, ",");
        if (h->ipv6) {
            puts_(&o, "[");
            put_enc(&o, h->host, ":");
            puts_(&o, "]");
        } else {
            put_enc(&o, h->host, "");
        }
        if (h->port != 0) {
            char p[8];
            snprintf(p, sizeof p, ":%u", (unsigned)h->port);
            puts_(&o, p);
        }
    }
    if (u->database != NULL) {
        puts_(&o, "/");
        put_enc(&o, u->database, "/:,");
    }
    for (size_t i = 0; i < u->noptions; i++) {
        puts_(&o, i == 0 ? "?" : "&");
        put_enc(&o, u->options[i].name, "");
        puts_(&o, "=");
        /* An option that holds a password (redis: sentinel_password) is
         * hidden like the userinfo's. */
        size_t nl = strlen(u->options[i].name);
        if (nl >= 8 && strcmp(u->options[i].name + nl - 8, "password") == 0)
            puts_(&o, "***");
        else
            put_enc(&o, u->options[i].value, "/:,");
    }
    if (buf != NULL && buflen > 0)
        buf[o.len < buflen ? o.len : buflen - 1] = '\0';
    return o.len;
}
