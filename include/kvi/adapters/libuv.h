/*
 * libuv.h -- runs kvi's non-blocking batches (docs/async.md) on a libuv
 * loop.  Library libkvi_uv (optional: built when libuv1-dev is there).
 *
 *     kvi_uv_batch_run(loop, b, 500, on_done, ud);   // returns at once
 *     uv_run(loop, UV_RUN_DEFAULT);                   // on_done(ud, b) runs in the loop
 */
#ifndef KVI_ADAPTERS_LIBUV_H
#define KVI_ADAPTERS_LIBUV_H

#include <uv.h>

#include "kvi/kvi.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Starts batch b (kvi_batch_start with timeout_ms) and lets loop drive it:
 * a uv_poll_t on the batch's descriptor and a uv_timer_t for its deadline,
 * re-armed after every step.  done(ud, b) is called once when the batch
 * has ended -- from within this call when it ends at once, else from the
 * loop.  Returns 0, or -1 (b NULL or already pending, out of memory: done
 * is not called).  The batch must stay alive until done; kvi_batch_cancel
 * ends it (done is called) and the adapter's handles are closed by the
 * loop's next iteration.
 */
int kvi_uv_batch_run(uv_loop_t *loop, kvi_batch *b, uint32_t timeout_ms, kvi_batch_done_fn done,
                     void *ud);

#ifdef __cplusplus
}
#endif

#endif /* KVI_ADAPTERS_LIBUV_H */
