/* auth.c -- digest authentication with a password cache (see auth.h). */
#include "auth.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static void md5_hex(const char *text, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(text, strlen(text), md, &n, EVP_md5(), NULL);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 16; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[32] = '\0';
}

void auth_ha1(const char *user, const char *realm, const char *password, char out[33])
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s:%s:%s", user, realm, password);
    md5_hex(buf, out);
}

void auth_response(const char *ha1, const char *nonce, const char *method, const char *uri,
                   char out[33])
{
    char buf[512], ha2[33];
    snprintf(buf, sizeof buf, "%s:%s", method, uri);
    md5_hex(buf, ha2);
    snprintf(buf, sizeof buf, "%s:%s:%s", ha1, nonce, ha2);
    md5_hex(buf, out);
}

int auth_db_create(const char *path, const char *domain, int users)
{
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    int rc = sqlite3_exec(db,
                          "DROP TABLE IF EXISTS subscriber;"
                          "CREATE TABLE subscriber (username TEXT NOT NULL, domain TEXT NOT "
                          "NULL, password TEXT NOT NULL, ha1 TEXT NOT NULL,"
                          " PRIMARY KEY (username, domain));"
                          "BEGIN;",
                          NULL, NULL, NULL);
    sqlite3_stmt *ins = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "INSERT INTO subscriber VALUES (?, ?, ?, ?)", -1, &ins, NULL);
    for (int i = 1; rc == SQLITE_OK && i <= users; i++) {
        char user[32], pw[48], ha1[33];
        snprintf(user, sizeof user, "user%04d", i);
        snprintf(pw, sizeof pw, "pw-%s", user);
        auth_ha1(user, domain, pw, ha1);
        sqlite3_bind_text(ins, 1, user, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 2, domain, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 3, pw, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 4, ha1, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(ins) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT;", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        fprintf(stderr, "subscriber db: %s\n", sqlite3_errmsg(db));
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

sqlite3 *auth_db_open(const char *path)
{
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* The password of user@realm from the subscriber table: 1 found, 0 not, -1 error. */
static int db_password(sqlite3 *db, const char *user, const char *realm, char *out, size_t outlen)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT password FROM subscriber WHERE username = ? AND domain = ?",
                           -1, &q, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(q, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, realm, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    int found = 0;
    if (rc == SQLITE_ROW) {
        snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(q, 0));
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = -1;
    }
    sqlite3_finalize(q);
    return found;
}

static int response_matches(const auth_request *req, const char *password)
{
    char ha1[33], expect[33];
    auth_ha1(req->user, req->realm, password, ha1);
    auth_response(ha1, req->nonce, req->method, req->uri, expect);
    return strcmp(expect, req->response) == 0;
}

int auth_check(kvi *k, kvi_conn *cache, sqlite3 *db, const auth_request *req, int64_t lifetime_s,
               auth_counters *counters)
{
    char key[160], password[128];
    size_t klen = (size_t)snprintf(key, sizeof key, "passwd_%s", req->user);
    counters->requests++;

    if (cache != NULL) {
        kvi_value v = KVI_VALUE_INIT;
        kvi_status st = kvi_conn_fetch(cache, key, klen, &v);
        if (st == KVI_OK) {
            counters->cache_hits++;
            snprintf(password, sizeof password, "%.*s", (int)v.len, v.data);
            kvi_value_free(&v);
            int ok = response_matches(req, password);
            counters->failures += !ok;
            return ok;
        }
        if (st != KVI_NOT_FOUND) {
            /* A cache that is down must not stop authentication: fall back to the DB. */
            fprintf(stderr, "cache fetch: %s: %s\n", kvi_strerror(st),
                    kvi_errmsg(k));
        }
    }

    counters->db_queries++;
    int found = db_password(db, req->user, req->realm, password, sizeof password);
    if (found < 0) {
        fprintf(stderr, "subscriber db: %s\n", sqlite3_errmsg(db));
        return -1;
    }
    if (found == 0 || !response_matches(req, password)) {
        counters->failures++;
        return 0;
    }
    if (cache != NULL) {
        kvi_status st = kvi_conn_store(cache, key, klen, password, strlen(password), lifetime_s);
        if (st != KVI_OK)
            fprintf(stderr, "cache store: %s: %s\n", kvi_strerror(st),
                    kvi_errmsg(k));
    }
    return 1;
}
