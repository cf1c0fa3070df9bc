/*
 * out.c -- how the kvi command writes bytes: JSON strings, base64 and the
 * readable escaped form used for keys, raw reply trees and the results of
 * the commands that print one integer.
 */
#include <inttypes.h>
#include <string.h>

#include "cli.h"

/* Length of the valid UTF-8 sequence at p[0..n), 0 when it is not one. */
static size_t utf8_seq(const unsigned char *p, size_t n, uint32_t *cp)
{
    unsigned char c = p[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        v = c & 0x1fu;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        v = c & 0x0fu;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        v = c & 0x07u;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

int kvi__cli_utf8_valid(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = utf8_seq(u + i, n - i, &cp);
        if (l == 0)
            return 0;
        i += l;
    }
    return 1;
}

void kvi__cli_json_string(FILE *f, const char *p, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        switch (c) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '\b':
            fputs("\\b", f);
            break;
        case '\f':
            fputs("\\f", f);
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
    }
    fputc('"', f);
}

void kvi__cli_json_cstr(FILE *f, const char *s)
{
    if (s == NULL) {
        fputs("null", f);
        return;
    }
    size_t n = strlen(s);
    if (kvi__cli_utf8_valid(s, n))
        kvi__cli_json_string(f, s, n);
    else
        kvi__cli_json_bytes_value(f, s, n);
}

static void base64(FILE *f, const char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *u = (const unsigned char *)p;
    fputc('"', f);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)u[i] << 16) | ((uint32_t)u[i + 1] << 8) | u[i + 2];
        fputc(tab[(v >> 18) & 63], f);
        fputc(tab[(v >> 12) & 63], f);
        fputc(tab[(v >> 6) & 63], f);
        fputc(tab[v & 63], f);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)u[i] << 16;
        fputc(tab[(v >> 18) & 63], f);
        fputc(tab[(v >> 12) & 63], f);
        fputs("==", f);
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)u[i] << 16) | ((uint32_t)u[i + 1] << 8);
        fputc(tab[(v >> 18) & 63], f);
        fputc(tab[(v >> 12) & 63], f);
        fputc(tab[(v >> 6) & 63], f);
        fputc('=', f);
    }
    fputc('"', f);
}

void kvi__cli_json_bytes_field(FILE *f, const char *name, const char *p, size_t n)
{
    if (kvi__cli_utf8_valid(p, n)) {
        fprintf(f, "\"%s\":", name);
        kvi__cli_json_string(f, p, n);
    } else {
        fprintf(f, "\"%s_base64\":", name);
        base64(f, p, n);
    }
}

void kvi__cli_json_bytes_value(FILE *f, const char *p, size_t n)
{
    if (kvi__cli_utf8_valid(p, n)) {
        kvi__cli_json_string(f, p, n);
    } else {
        fputs("{\"base64\":", f);
        base64(f, p, n);
        fputc('}', f);
    }
}

void kvi__cli_write_escaped(FILE *f, const char *p, size_t n, int quote)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0;
    while (i < n) {
        unsigned char c = u[i];
        uint32_t cp;
        size_t l;
        if (c == '\\') {
            fputs("\\\\", f);
            i++;
        } else if (c == '"' && quote) {
            fputs("\\\"", f);
            i++;
        } else if (c >= 0x20 && c < 0x7f) {
            fputc(c, f);
            i++;
        } else if (c >= 0x80 && (l = utf8_seq(u + i, n - i, &cp)) > 0 && cp >= 0xa0) {
            fwrite(u + i, 1, l, f);
            i += l;
        } else {
            fprintf(f, "\\x%02x", c);
            i++;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Results                                                                 */

void kvi__cli_print_ok(const kvi__cli *cli)
{
    if (cli->json)
        fputs("{\"status\":\"ok\"}\n", stdout);
}

void kvi__cli_print_int(const kvi__cli *cli, const char *field, int64_t v)
{
    if (cli->json)
        printf("{\"status\":\"ok\",\"%s\":%" PRId64 "}\n", field, v);
    else
        printf("%" PRId64 "\n", v);
}

static void reply_text(const kvi_reply *r, size_t indent)
{
    size_t len;
    const char *s;
    switch (kvi_reply_type_of(r)) {
    case KVI_REPLY_NIL:
        fputs("(nil)\n", stdout);
        break;
    case KVI_REPLY_INTEGER:
        printf("(integer) %" PRId64 "\n", kvi_reply_integer(r));
        break;
    case KVI_REPLY_STRING:
        s = kvi_reply_str(r, &len);
        fputc('"', stdout);
        kvi__cli_write_escaped(stdout, s, len, 1);
        fputs("\"\n", stdout);
        break;
    case KVI_REPLY_STATUS:
        s = kvi_reply_str(r, &len);
        kvi__cli_write_escaped(stdout, s, len, 0);
        fputc('\n', stdout);
        break;
    case KVI_REPLY_ERROR:
        s = kvi_reply_str(r, &len);
        fputs("(error) ", stdout);
        kvi__cli_write_escaped(stdout, s, len, 0);
        fputc('\n', stdout);
        break;
    case KVI_REPLY_ARRAY: {
        size_t n = kvi_reply_count(r);
        if (n == 0) {
            fputs("(empty array)\n", stdout);
            break;
        }
        int width = snprintf(NULL, 0, "%zu", n);
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                printf("%*s", (int)indent, "");
            printf("%*zu) ", width, i + 1);
            reply_text(kvi_reply_element(r, i), indent + (size_t)width + 2);
        }
        break;
    }
    }
}

void kvi__cli_reply_json(const kvi_reply *r)
{
    size_t len;
    const char *s;
    switch (kvi_reply_type_of(r)) {
    case KVI_REPLY_NIL:
        fputs("null", stdout);
        break;
    case KVI_REPLY_INTEGER:
        printf("%" PRId64, kvi_reply_integer(r));
        break;
    case KVI_REPLY_STRING:
        s = kvi_reply_str(r, &len);
        kvi__cli_json_bytes_value(stdout, s, len);
        break;
    case KVI_REPLY_STATUS:
    case KVI_REPLY_ERROR:
        s = kvi_reply_str(r, &len);
        printf("{\"%s\":", kvi_reply_type_of(r) == KVI_REPLY_STATUS ? "status" : "error");
        kvi__cli_json_bytes_value(stdout, s, len);
        fputc('}', stdout);
        break;
    case KVI_REPLY_ARRAY: {
        size_t n = kvi_reply_count(r);
        fputc('[', stdout);
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                fputc(',', stdout);
            kvi__cli_reply_json(kvi_reply_element(r, i));
        }
        fputc(']', stdout);
        break;
    }
    }
}

void kvi__cli_reply_text(const kvi_reply *r)
{
    reply_text(r, 0);
}
