/*
 * options.c -- the one parser of URL options.
 *
 * Every engine declares the options its URLs take as a table of struct
 * kvi_option (kvi/engine.h), and the core declares the common ones
 * (connect_timeout, timeout, lazy) the same way; this file reads them all
 * with one grammar, one case rule and one message style:
 *
 *   - names match exactly (they are lower-case by the name rule);
 *   - words (yes/no, enum choices, size suffixes) match without regard to
 *     ASCII case;
 *   - numbers are whole decimals as kvi_parse_int64() reads them (no '+',
 *     no blanks, no leading zeros) within the declared range;
 *   - a bad value is KVI_E_INVALID with "option 'NAME' of 'ID': 'VALUE' is
 *     not allowed; expected WHAT", and nothing is defined.
 *
 * Engines of ABI 1 list only names (engine->options) and parse the values
 * themselves in open(); for them the core checks names only, as before.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/types.h"
#include "core/options.h"

/* Longest option value quoted back in a message. */
#define ECHO_MAX 48
/* More options than any engine needs; keeps the checks cheap. */
#define MAX_TABLE 64
/* Same rule as engine names (and so as URL schemes). */
#define MAX_NAME 64

static const kvi_option common_options[] = {
    {"connect_timeout", KVI_OPT_MS, "1000", 1, 3600000, NULL,
     offsetof(struct kvi_conn, connect_timeout_ms), "time limit for connecting to a server"},
    {"timeout", KVI_OPT_MS, "1000", 1, 3600000, NULL, offsetof(struct kvi_conn, timeout_ms),
     "time limit for one operation"},
    {"lazy", KVI_OPT_BOOL, "no", 0, 1, NULL, offsetof(struct kvi_conn, lazy),
     "connect on first use instead of when the URL is added"},
    KVI_OPTION_END,
};

/* The engine's table; an ABI-1 engine's reserved_ words are not one. */
static const kvi_option *engine_table(const struct kvi_engine *e)
{
    return e->abi_version >= 2 ? e->option_table : NULL;
}

static const kvi_option *table_find(const kvi_option *t, const char *name)
{
    for (; t != NULL && t->name != NULL; t++)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static int legacy_knows(const struct kvi_engine *e, const char *name)
{
    for (const char *const *o = e->options; o != NULL && *o != NULL; o++)
        if (strcmp(*o, name) == 0)
            return 1;
    return 0;
}

/* Bytes and alignment of the field a kind writes. */
static size_t field_size(kvi_option_kind kind)
{
    switch (kind) {
    case KVI_OPT_BOOL:
    case KVI_OPT_ENUM:
        return sizeof(int);
    case KVI_OPT_INT:
        return sizeof(int64_t);
    case KVI_OPT_MS:
        return sizeof(uint32_t);
    case KVI_OPT_SIZE:
        return sizeof(uint64_t);
    case KVI_OPT_PATH:
    case KVI_OPT_STRING:
        return sizeof(char *);
    }
    return 0;
}

static const char *kind_name(kvi_option_kind kind)
{
    switch (kind) {
    case KVI_OPT_BOOL:
        return "bool";
    case KVI_OPT_INT:
        return "integer";
    case KVI_OPT_MS:
        return "milliseconds";
    case KVI_OPT_SIZE:
        return "size";
    case KVI_OPT_ENUM:
        return "enum";
    case KVI_OPT_PATH:
        return "path";
    case KVI_OPT_STRING:
        return "string";
    }
    return "?";
}

static const char *const true_words[] = {"yes", "true", "on", "1", NULL};
static const char *const false_words[] = {"no", "false", "off", "0", NULL};

/* Index of v in words (ASCII case ignored), or -1. */
static int word_index(const char *const *words, const char *v)
{
    for (int i = 0; words[i] != NULL; i++)
        if (strcasecmp(words[i], v) == 0)
            return i;
    return -1;
}

/* "a|b|c" of a word list into buf. */
static void join_words(const char *const *words, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; words[i] != NULL && n < len; i++) {
        int w = snprintf(buf + n, len - n, "%s%s", i > 0 ? "|" : "", words[i]);
        if (w < 0)
            break;
        n += (size_t)w;
    }
}

/* What a kind accepts, short ("1..3600000 ms") for listings or long
 * ("milliseconds in 1..3600000") for messages. */
static void describe(const kvi_option *o, int for_message, char *buf, size_t len)
{
    char words[96];
    long long lo = (long long)o->min, hi = (long long)o->max;
    switch (o->kind) {
    case KVI_OPT_BOOL:
        snprintf(buf, len, for_message ? "yes or no%s (or true/false, on/off, 1/0)" : "yes|no%s",
                 o->min < 0 ? (for_message ? " or auto" : "|auto") : "");
        return;
    case KVI_OPT_INT:
        snprintf(buf, len, for_message ? "an integer in %lld..%lld" : "%lld..%lld", lo, hi);
        return;
    case KVI_OPT_MS:
        snprintf(buf, len, for_message ? "milliseconds in %lld..%lld" : "%lld..%lld ms", lo, hi);
        return;
    case KVI_OPT_SIZE:
        snprintf(buf, len,
                 for_message ? "bytes in %lld..%lld, optionally with suffix k, m or g (x1024)"
                             : "%lld..%lld bytes, suffix k/m/g",
                 lo, hi);
        return;
    case KVI_OPT_ENUM:
        join_words(o->choices, words, sizeof words);
        snprintf(buf, len, for_message ? "one of %s" : "%s", words);
        return;
    case KVI_OPT_PATH:
        snprintf(buf, len, for_message ? "a path of 1..%d bytes" : "path (1..%d bytes)",
                 KVI_OPT_PATH_MAX);
        return;
    case KVI_OPT_STRING:
        snprintf(buf, len, "any text");
        return;
    }
    snprintf(buf, len, "?");
}

/* A whole decimal in [lo, hi]. */
static int parse_range(const char *v, size_t len, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t n;
    if (!kvi_parse_int64(v, len, &n) || n < lo || n > hi)
        return 0;
    *out = n;
    return 1;
}

/* "123", "64k", "10MB", "2g": digits, then an optional k/m/g (x1024) and an
 * optional b, in [lo, hi]. */
static int parse_size(const char *v, int64_t lo, int64_t hi, uint64_t *out)
{
    size_t digits = strspn(v, "0123456789");
    int64_t n;
    unsigned shift = 0;
    if (digits == 0 || !kvi_parse_int64(v, digits, &n))
        return 0;
    const char *s = v + digits;
    if (*s != '\0') {
        const char *p = strchr("kmg", *s | 0x20);
        if (p == NULL)
            return 0;
        shift = 10u * (unsigned)(p - "kmg" + 1);
        s++;
        if ((*s | 0x20) == 'b')
            s++;
        if (*s != '\0')
            return 0;
    }
    if (n > (INT64_MAX >> shift))
        return 0;
    n = (int64_t)((uint64_t)n << shift);
    if (n < lo || n > hi)
        return 0;
    *out = (uint64_t)n;
    return 1;
}

/* Result of reading one value. */
enum parsed { PARSED_OK, PARSED_BAD, PARSED_NOMEM };

/*
 * Reads v as option o and, when dst is not NULL, stores it there (strings
 * as a copy from k's allocator, replacing and freeing an earlier one).
 * k may be NULL only with dst NULL (checking a default).
 */
static enum parsed parse_value(const kvi *k, const kvi_option *o, const char *v, void *dst)
{
    size_t len = strlen(v);
    int64_t n = 0;
    uint64_t size = 0;
    int w = 0;

    switch (o->kind) {
    case KVI_OPT_BOOL:
        if (word_index(true_words, v) >= 0)
            w = 1;
        else if (word_index(false_words, v) >= 0)
            w = 0;
        else if (o->min < 0 && strcasecmp(v, "auto") == 0)
            w = -1;
        else
            return PARSED_BAD;
        if (dst != NULL)
            memcpy(dst, &w, sizeof w);
        return PARSED_OK;
    case KVI_OPT_ENUM:
        if ((w = word_index(o->choices, v)) < 0)
            return PARSED_BAD;
        if (dst != NULL)
            memcpy(dst, &w, sizeof w);
        return PARSED_OK;
    case KVI_OPT_INT:
        if (!parse_range(v, len, o->min, o->max, &n))
            return PARSED_BAD;
        if (dst != NULL)
            memcpy(dst, &n, sizeof n);
        return PARSED_OK;
    case KVI_OPT_MS:
        if (!parse_range(v, len, o->min, o->max, &n))
            return PARSED_BAD;
        if (dst != NULL) {
            uint32_t ms = (uint32_t)n;
            memcpy(dst, &ms, sizeof ms);
        }
        return PARSED_OK;
    case KVI_OPT_SIZE:
        if (!parse_size(v, o->min, o->max, &size))
            return PARSED_BAD;
        if (dst != NULL)
            memcpy(dst, &size, sizeof size);
        return PARSED_OK;
    case KVI_OPT_PATH:
    case KVI_OPT_STRING:
        if (o->kind == KVI_OPT_PATH && (len == 0 || len > KVI_OPT_PATH_MAX))
            return PARSED_BAD;
        if (dst != NULL) {
            char *copy = kvi__strdup(k, v), *old;
            if (copy == NULL)
                return PARSED_NOMEM;
            memcpy(&old, dst, sizeof old);
            kvi__free(k, old);
            memcpy(dst, &copy, sizeof copy);
        }
        return PARSED_OK;
    }
    return PARSED_BAD;
}

/* Quotes a value for a message: printable bytes, at most ECHO_MAX. */
static const char *echo(const char *v, char buf[ECHO_MAX + 4])
{
    size_t n = 0;
    for (; v[n] != '\0' && n < ECHO_MAX; n++) {
        unsigned char ch = (unsigned char)v[n];
        buf[n] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    if (v[n] != '\0') {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* The secrets of a definition: the URL's password and the value of an
 * option that holds one (sentinel_password); either may be NULL. */
struct secrets {
    const char *password, *option;
};

static int holds(const char *v, const char *secret)
{
    return secret != NULL && secret[0] != '\0' && strstr(v, secret) != NULL;
}

/* echo() of v with every occurrence of a secret masked first, so that
 * neither a whole password nor one cut by the echo's limit shows. */
static const char *echo_masked(const char *v, const struct secrets *z, char buf[ECHO_MAX + 4])
{
    if (z == NULL || (!holds(v, z->password) && !holds(v, z->option)))
        return echo(v, buf);
    char copy[ECHO_MAX * 4];
    snprintf(copy, sizeof copy, "%s", v);
    kvi__scrub(copy, z->password);
    kvi__scrub(copy, z->option);
    return echo(copy, buf);
}

/* Parses v into base + o->offset, with the one message style on error;
 * no secret of z (may be NULL) shows in it. */
static kvi_status apply_one(kvi *k, const char *id, const kvi_option *o, const char *v,
                            const struct secrets *z, unsigned char *base)
{
    switch (parse_value(k, o, v, base + o->offset)) {
    case PARSED_OK:
        return KVI_OK;
    case PARSED_NOMEM:
        return kvi__error(k, KVI_E_NOMEM, "out of memory reading option '%s' of '%s'", o->name, id);
    case PARSED_BAD:
        break;
    }
    char e[ECHO_MAX + 4], expect[160];
    describe(o, 1, expect, sizeof expect);
    return kvi__error(k, KVI_E_INVALID, "option '%s' of '%s': '%s' is not allowed; expected %s",
                      o->name, id, echo_masked(v, z, e), expect);
}

static kvi_status apply_defaults(kvi *k, const char *id, const kvi_option *t, unsigned char *base)
{
    for (; t != NULL && t->name != NULL; t++) {
        if (t->default_value == NULL)
            continue;
        kvi_status st = apply_one(k, id, t, t->default_value, NULL, base);
        if (st != KVI_OK)
            return st;
    }
    return KVI_OK;
}

/* "a, b, c" of every option name the engine's URLs take, into buf. */
static void known_names(const struct kvi_engine *e, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0;; i++) {
        kvi_option_info info;
        if (kvi__option_describe(e, i, &info) != KVI_OK || n >= len)
            break;
        int w = snprintf(buf + n, len - n, "%s%s", i > 0 ? ", " : "", info.name);
        if (w < 0)
            break;
        n += (size_t)w;
    }
}

kvi_status kvi__options_apply(kvi *k, struct kvi_conn *c, const kvi_url *u)
{
    const struct kvi_engine *e = c->engine;
    const kvi_option *table = engine_table(e);
    unsigned char *conn_base = (unsigned char *)c;
    /* (c->secret2 is set before the options are read: ids.c) */
    const struct secrets z = {u->password, c->secret2};

    if (table != NULL) {
        c->options = kvi__calloc(k, 1, e->options_size);
        if (c->options == NULL)
            return kvi__error(k, KVI_E_NOMEM, "out of memory defining '%s'", u->id);
    }
    kvi_status st = apply_defaults(k, u->id, common_options, conn_base);
    if (st == KVI_OK)
        st = apply_defaults(k, u->id, table, c->options);
    for (size_t i = 0; st == KVI_OK && i < u->noptions; i++) {
        const kvi_url_option *uo = &u->options[i];
        const kvi_option *o;
        if ((o = table_find(common_options, uo->name)) != NULL) {
            st = apply_one(k, u->id, o, uo->value, &z, conn_base);
        } else if ((o = table_find(table, uo->name)) != NULL) {
            st = apply_one(k, u->id, o, uo->value, &z, c->options);
        } else if (!legacy_knows(e, uo->name)) {
            char known[256], name[ECHO_MAX + 4];
            known_names(e, known, sizeof known);
            st = kvi__error(k, KVI_E_INVALID,
                            "unknown option '%s' for engine '%s' in URL of '%s' (known: %s)",
                            echo_masked(uo->name, &z, name), e->name, u->id, known);
        }
    }
    return st;
}

void kvi__options_free(kvi *k, struct kvi_conn *c)
{
    if (c->options == NULL)
        return;
    for (const kvi_option *o = engine_table(c->engine); o != NULL && o->name != NULL; o++) {
        if (o->kind != KVI_OPT_PATH && o->kind != KVI_OPT_STRING)
            continue;
        char *s;
        memcpy(&s, c->options + o->offset, sizeof s);
        kvi__free(k, s);
    }
    kvi__free(k, c->options);
    c->options = NULL;
}

static int valid_name(const char *s)
{
    if (s == NULL || !(s[0] >= 'a' && s[0] <= 'z'))
        return 0;
    size_t n = 1;
    for (; s[n] != '\0'; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return 0;
    return n <= MAX_NAME;
}

/* Why declaration o is malformed, or NULL when it is sound. */
static const char *declaration_fault(const kvi_option *o, size_t options_size)
{
    size_t fs = field_size(o->kind);
    if (!valid_name(o->name))
        return "name must match [a-z][a-z0-9_]* (at most 64 bytes)";
    if (table_find(common_options, o->name) != NULL)
        return "name is a common option's";
    if (fs == 0)
        return "unknown kind";
    if (o->offset > options_size || options_size - o->offset < fs || o->offset % fs != 0)
        return "offset is outside options_size or not aligned for its kind";
    switch (o->kind) {
    case KVI_OPT_BOOL:
        if (o->min != 0 && o->min != -1)
            return "a bool's min must be 0 or -1 (auto allowed)";
        break;
    case KVI_OPT_INT:
        if (o->min > o->max)
            return "min > max";
        break;
    case KVI_OPT_MS:
        if (o->min < 0 || o->min > o->max || o->max > (int64_t)UINT32_MAX)
            return "milliseconds need 0 <= min <= max <= UINT32_MAX";
        break;
    case KVI_OPT_SIZE:
        if (o->min < 0 || o->min > o->max)
            return "a size needs 0 <= min <= max";
        break;
    case KVI_OPT_ENUM:
        if (o->choices == NULL || o->choices[0] == NULL)
            return "an enum needs choices";
        for (const char *const *w = o->choices; *w != NULL; w++)
            if ((*w)[0] == '\0')
                return "an enum choice is empty";
        break;
    case KVI_OPT_PATH:
    case KVI_OPT_STRING:
        break;
    }
    if (o->default_value != NULL && parse_value(NULL, o, o->default_value, NULL) != PARSED_OK)
        return "its default is not an allowed value";
    return NULL;
}

kvi_status kvi__options_check(const kvi *k, const struct kvi_engine *e)
{
    const kvi_option *table = engine_table(e);
    if (table == NULL)
        return KVI_OK;
    if (e->options != NULL)
        return kvi__error(k, KVI_E_INVALID,
                          "engine '%s' declares options both as option_table and as a name list",
                          e->name);
    if (e->options_size == 0)
        return kvi__error(k, KVI_E_INVALID, "engine '%s' has an option_table but options_size 0",
                          e->name);
    for (size_t i = 0; table[i].name != NULL; i++) {
        const char *why =
            i >= MAX_TABLE ? "too many options" : declaration_fault(&table[i], e->options_size);
        if (why == NULL) {
            for (size_t j = 0; j < i; j++)
                if (strcmp(table[j].name, table[i].name) == 0)
                    why = "declared twice";
        }
        if (why != NULL)
            return kvi__error(k, KVI_E_INVALID, "engine '%s', option %zu ('%.64s'): %s", e->name,
                              i + 1, table[i].name != NULL ? table[i].name : "", why);
    }
    return KVI_OK;
}

static void info_of(const kvi_option *o, int common, kvi_option_info *out)
{
    memset(out, 0, sizeof *out);
    out->name = o->name;
    out->kind = kind_name(o->kind);
    out->default_value = o->default_value;
    out->help = o->help != NULL ? o->help : "";
    out->common = common;
    describe(o, 0, out->allowed, sizeof out->allowed);
}

kvi_status kvi__option_describe(const struct kvi_engine *e, size_t index, kvi_option_info *out)
{
    const kvi_option *table = engine_table(e);
    size_t own = 0;
    if (table != NULL) {
        while (table[own].name != NULL)
            own++;
        if (index < own) {
            info_of(&table[index], 0, out);
            return KVI_OK;
        }
    } else {
        while (e->options != NULL && e->options[own] != NULL)
            own++;
        if (index < own) {
            memset(out, 0, sizeof *out);
            out->name = e->options[index];
            out->kind = "engine-parsed";
            out->help = "";
            snprintf(out->allowed, sizeof out->allowed, "see the engine's documentation");
            return KVI_OK;
        }
    }
    size_t ncommon = sizeof common_options / sizeof common_options[0] - 1;
    if (index - own >= ncommon)
        return KVI_NOT_FOUND;
    info_of(&common_options[index - own], 1, out);
    return KVI_OK;
}
