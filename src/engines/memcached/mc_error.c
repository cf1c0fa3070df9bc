/*
 * mc_error.c -- the one place libmemcached's codes become kvi_status, and
 * the detail messages of failed calls.
 */
#include <string.h>

#include "mc_engine.h"

kvi_status kvi__mc_map(memcached_return_t rc)
{
    switch (rc) {
    case MEMCACHED_SUCCESS:
    case MEMCACHED_STORED:
    case MEMCACHED_DELETED:
    case MEMCACHED_END:
        return KVI_OK;
    case MEMCACHED_NOTFOUND:
        return KVI_NOT_FOUND;
    case MEMCACHED_TIMEOUT:
    case MEMCACHED_IN_PROGRESS:
        return KVI_E_TIMEOUT;
    case MEMCACHED_HOST_LOOKUP_FAILURE:
    case MEMCACHED_CONNECTION_FAILURE:
    case MEMCACHED_CONNECTION_BIND_FAILURE:
    case MEMCACHED_ERROR: /* also CONNECTION_SOCKET_CREATE_FAILURE */
    case MEMCACHED_SERVER_MARKED_DEAD:
    case MEMCACHED_SERVER_TEMPORARILY_DISABLED:
    case MEMCACHED_NO_SERVERS:
    case MEMCACHED_FAIL_UNIX_SOCKET:
        return KVI_E_CONNECT;
    case MEMCACHED_WRITE_FAILURE:
    case MEMCACHED_READ_FAILURE:
    case MEMCACHED_UNKNOWN_READ_FAILURE:
    case MEMCACHED_PARTIAL_READ:
    case MEMCACHED_ERRNO:
        return KVI_E_IO;
    case MEMCACHED_PROTOCOL_ERROR:
    case MEMCACHED_CLIENT_ERROR:
    case MEMCACHED_UNKNOWN_STAT_KEY:
    case MEMCACHED_INVALID_HOST_PROTOCOL:
        return KVI_E_PROTOCOL;
    case MEMCACHED_E2BIG:
    case MEMCACHED_KEY_TOO_BIG:
    case MEMCACHED_BAD_KEY_PROVIDED:
    case MEMCACHED_NO_KEY_PROVIDED:
    case MEMCACHED_INVALID_ARGUMENTS:
    case MEMCACHED_PARSE_ERROR:
    case MEMCACHED_PARSE_USER_ERROR:
        return KVI_E_INVALID;
    case MEMCACHED_MEMORY_ALLOCATION_FAILURE:
        return KVI_E_NOMEM;
    case MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE:
        return KVI_E_STORE_FULL;
    case MEMCACHED_AUTH_PROBLEM:
    case MEMCACHED_AUTH_FAILURE:
    case MEMCACHED_AUTH_CONTINUE:
        return KVI_E_AUTH;
    case MEMCACHED_NOT_SUPPORTED:
    case MEMCACHED_DEPRECATED:
        return KVI_E_UNSUPPORTED;
    default:
        return KVI_E_BACKEND;
    }
}

/* Copies libmemcached's message without its handle address prefix
 * "(0x...) " and source location suffix " -> file:line". */
static const char *mc_clean_message(const char *msg, char *buf, size_t size)
{
    if (msg == NULL)
        return NULL;
    if (msg[0] == '(' && msg[1] == '0' && msg[2] == 'x') {
        const char *close = strstr(msg, ") ");
        if (close != NULL)
            msg = close + 2;
    }
    size_t n = 0;
    for (const char *p = msg; *p != '\0' && n + 1 < size; p++) {
        if (strncmp(p, " -> ", 4) == 0)
            break;
        if (p[0] == ' ' && p[1] == ' ')
            continue;
        buf[n++] = *p;
    }
    buf[n] = '\0';
    return buf;
}

/* An authentication failure, said as one (libmemcached's own words are
 * "AUTHENTICATION FAILURE" or, for a server without SASL, a read failure).
 * The user name may show, the password never does. */
static kvi_status mc_auth_error(kvi_conn *c, const struct mc_conn *m, memcached_return_t rc,
                                const char *op)
{
    if (m->sasl_user == NULL)
        return kvi_engine_error_in(c, KVI_E_AUTH, op,
                                   "authentication required: the server uses SASL; give "
                                   "user:password in the URL");
    if (rc == MEMCACHED_UNKNOWN_READ_FAILURE)
        return kvi_engine_error_in(c, KVI_E_AUTH, op,
                                   "authentication failed: the server does not do SASL (a "
                                   "memcached without -S refuses the SASL handshake); remove "
                                   "user:password from the URL or start the server with -S");
    return kvi_engine_error_in(c, KVI_E_AUTH, op,
                               "authentication failed: the server refused user '%s' with the "
                               "password given",
                               m->sasl_user);
}

/* Turns a failed libmemcached call into a kvi status with a detail message.
 * libmemcached's messages name hosts, never the SASL password. */
kvi_status kvi__mc_fail(kvi_conn *c, memcached_st *mc, memcached_return_t rc, const char *op)
{
    const struct mc_lease *l = mc != NULL ? memcached_get_user_data(mc) : NULL;
    if (l != NULL && atomic_load(&l->expired)) {
        const struct mc_conn *mt = kvi_conn_priv(c);
        return kvi_engine_error_in(c, KVI_E_TIMEOUT, op,
                                   "no complete reply within %u ms (the server answers too "
                                   "slowly or not at all)",
                                   (unsigned)mt->call_ms);
    }
    /* FAILURE / SOME_ERRORS say little; the handle's last error says why. */
    if ((rc == MEMCACHED_FAILURE || rc == MEMCACHED_SOME_ERRORS) && mc != NULL &&
        memcached_last_error(mc) != MEMCACHED_SUCCESS)
        rc = memcached_last_error(mc);
    const struct mc_conn *m = kvi_conn_priv(c);
    if (mc != NULL && kvi__mc_map(memcached_last_error(mc)) == KVI_E_AUTH)
        rc = memcached_last_error(mc);
    kvi_status st = kvi__mc_map(rc);
    if (st == KVI_E_AUTH || (m->sasl_user != NULL && rc == MEMCACHED_UNKNOWN_READ_FAILURE))
        return mc_auth_error(c, m, rc, op);
    if (st == KVI_OK || st == KVI_NOT_FOUND)
        st = KVI_E_BACKEND; /* an unexpected reply for this call */
    char buf[256];
    const char *msg = NULL;
    if (mc != NULL && memcached_last_error(mc) == rc)
        msg = mc_clean_message(memcached_last_error_message(mc), buf, sizeof buf);
    if ((msg == NULL || msg[0] == '\0') && rc == MEMCACHED_PROTOCOL_ERROR)
        msg = "a server's reply is not a valid memcached binary protocol reply";
    if (msg == NULL || msg[0] == '\0')
        msg = memcached_strerror(mc, rc);
    if (rc == MEMCACHED_E2BIG)
        return kvi_engine_error_in(c, st, op,
                                   "value too large for the server's item size limit "
                                   "(memcached -I; 1 MiB values need -I 2m): %s",
                                   msg);
    return kvi_engine_error_in(c, st, op, "%s", msg);
}
