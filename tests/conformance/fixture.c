/* fixture.c -- the run configuration and the per-test fixture of
 * kvi-conformance (see conformance.h). */
#include "conformance.h"

#include <poll.h>

struct conf_config conf_g;

#ifdef KVI_CONFORMANCE_ENGINE
#include "kvi/engine.h"

/* An engine object the program registers itself, as an application may
 * (kvi_register_engine): the example engine of tests/example_engine. */
extern const struct kvi_engine KVI_CONFORMANCE_ENGINE;
#endif

kvi_status conf_define_engine(kvi *k)
{
#ifdef KVI_CONFORMANCE_ENGINE
    kvi_status rs = kvi_register_engine(k, &KVI_CONFORMANCE_ENGINE);
    if (rs != KVI_OK)
        return rs;
#endif
    if (conf_g.url_file != NULL)
        return kvi_load_config(k, conf_g.url_file);
    return kvi_add_url(k, conf_g.url);
}

kvi_status conf_nb_end(fx *f, int r, kvi_wait *w, kvi_value *out, int64_t *iv)
{
    if (r < 0)
        fail_msg("kvi_start_*: -1 (misuse or out of memory)");
    while (r == 0) {
        struct pollfd p = {w->fd, (short)((w->events & KVI_WAIT_READ ? POLLIN : 0) |
                                          (w->events & KVI_WAIT_WRITE ? POLLOUT : 0)),
                           0};
        int64_t left = w->deadline_ms != 0 ? w->deadline_ms - kvi_test_mono_ms() : 1000;
        (void)poll(&p, w->fd >= 0 ? 1 : 0, left > 0 ? (int)left : 0);
        r = kvi_batch_resume(f->nb, w);
    }
    kvi_status st = kvi_batch_status(f->nb, 0);
    if (out != NULL)
        kvi_value_free(out); /* as the single call: an earlier value is released */
    if (out != NULL && st == KVI_OK && kvi_batch_take_value(f->nb, 0, out) != KVI_OK)
        fail_msg("kvi_batch_take_value failed");
    if (iv != NULL)
        *iv = st == KVI_OK || st == KVI_OUT_OF_BOUNDS ? kvi_batch_integer(f->nb, 0) : 0;
    return st;
}

int conf_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(kvi_new(&f->k), KVI_OK);
    kvi_test_clock_set(&f->clock, kvi_test_wall_ms());
    if (conf_g.virtual_time)
        kvi_set_clock(f->k, kvi_test_clock_fn, &f->clock);
    kvi_status st = conf_define_engine(f->k);
    if (st != KVI_OK)
        fail_msg("cannot define %s: %s (%s)", conf_g.id, kvi_status_name(st), kvi_errmsg(f->k));
    st = kvi_conn_get(f->k, conf_g.id, &f->c);
    if (st != KVI_OK)
        fail_msg("kvi_conn_get(%s): %s (%s)", conf_g.id, kvi_status_name(st), kvi_errmsg(f->k));
    f->caps = kvi_conn_caps(f->c);
    f->id = conf_g.id;
    if (conf_g.nonblocking)
        assert_int_equal(kvi_batch_new(f->k, &f->nb), KVI_OK);
    int n = snprintf(f->prefix, sizeof f->prefix, "kvi-conf:%s:%u:", conf_g.run, ++conf_g.test_no);
    f->prefix_len = (size_t)n;
    *state = f;
    return 0;
}

int conf_teardown(void **state)
{
    fx *f = F;
    if (f == NULL)
        return 0;
    for (size_t i = 0; i < f->nkeys; i++)
        (void)kvi_conn_remove(f->c, f->keys[i].b, f->keys[i].n);
    free(f->keys);
    kvi_batch_free(f->nb);
    kvi_free(f->k);
    free(f);
    *state = NULL;
    return 0;
}
