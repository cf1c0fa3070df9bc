/* hello.c -- the smallest complete kvi program: store, fetch, count. */
#include <inttypes.h>
#include <stdio.h>

#include <kvi/kvi.h>

int main(void)
{
    kvi *k;
    if (kvi_new(&k) != KVI_OK)
        return 1;

    /* "local" is the embedded engine; it needs no configuration. */
    kvi_status st = kvi_store(k, "local", "passwd_alice", 12, "s3cret", 6, 7200);
    if (st != KVI_OK) {
        fprintf(stderr, "store: %s: %s\n", kvi_strerror(st), kvi_errmsg(k));
        kvi_free(k);
        return 1;
    }

    kvi_value v = KVI_VALUE_INIT;
    st = kvi_fetch(k, "local", "passwd_alice", 12, &v);
    if (st == KVI_OK)
        printf("passwd_alice = %.*s\n", (int)v.len, v.data);
    kvi_value_free(&v);

    /* Counters are atomic int64 and may go negative. */
    int64_t credit = 0;
    kvi_add(k, "local", "credit_alice", 12, 100, 0, &credit);
    st = kvi_sub(k, "local", "credit_alice", 12, 130, 0, &credit);
    printf("credit_alice = %" PRId64 " (%s)\n", credit, kvi_strerror(st));

    /* A missing key is a normal outcome, not an error. */
    st = kvi_fetch(k, "local", "nobody", 6, &v);
    printf("nobody: %s\n", st == KVI_NOT_FOUND ? "not found" : kvi_strerror(st));

    kvi_free(k);
    return 0;
}
