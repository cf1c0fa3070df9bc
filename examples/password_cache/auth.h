/*
 * auth.h -- SIP digest authentication with a password cache in front of the
 * subscriber database, as OpenSIPS's script does it with cache_fetch /
 * cache_store.  The decision logic lives here, apart from the simulated
 * traffic in password_cache.c, so that a SIP front end can call it.
 */
#ifndef KVI_EXAMPLE_AUTH_H
#define KVI_EXAMPLE_AUTH_H

#include <sqlite3.h>
#include <stdint.h>

#include <kvi/kvi.h>

/* A subscriber database: SQLite table subscriber(username, domain,
 * password, ha1).  auth_db_create makes one with `users` users named
 * user0001... in `domain` (password "pw-<name>"). */
int auth_db_create(const char *path, const char *domain, int users);
sqlite3 *auth_db_open(const char *path);

/* RFC 2617 digest (MD5, no qop): hex HA1 = MD5(user:realm:password),
 * HA2 = MD5(method:uri), response = MD5(HA1:nonce:HA2).  out holds 33
 * bytes.  Uses OpenSSL's libcrypto. */
void auth_ha1(const char *user, const char *realm, const char *password, char out[33]);
void auth_response(const char *ha1, const char *nonce, const char *method, const char *uri,
                   char out[33]);

typedef struct auth_counters {
    uint64_t requests;   /* authentications attempted */
    uint64_t cache_hits; /* password found in the cache */
    uint64_t db_queries; /* subscriber table lookups */
    uint64_t failures;   /* wrong response or unknown user */
} auth_counters;

typedef struct auth_request {
    const char *user;
    const char *realm;
    const char *nonce;
    const char *method;
    const char *uri;
    const char *response; /* hex digest sent by the client */
} auth_request;

/*
 * Checks one digest response.  With cache != NULL: fetch "passwd_<user>";
 * on a miss read the password from db and, when the response is right,
 * store it in the cache for lifetime_s seconds.  cache == NULL means no
 * cache: every request queries the database.  Returns 1 when the response
 * is right, 0 when not, -1 on a cache or database error (message on stderr).
 */
int auth_check(kvi *k, kvi_conn *cache, sqlite3 *db, const auth_request *req, int64_t lifetime_s,
               auth_counters *counters);

#endif
