/*
 * libevent.h -- runs kvi's non-blocking batches (docs/async.md) on a
 * libevent event_base.  Library libkvi_event (optional: built when
 * libevent-dev is there), header-only use of kvi.h otherwise.
 *
 *     kvi_event_batch_run(base, b, 500, on_done, ud);   // returns at once
 *     event_base_dispatch(base);                         // on_done(ud, b) runs in the loop
 */
#ifndef KVI_ADAPTERS_LIBEVENT_H
#define KVI_ADAPTERS_LIBEVENT_H

#include <event2/event.h>

#include "kvi/kvi.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Starts batch b (kvi_batch_start with timeout_ms) and lets base drive it:
 * the batch's descriptor and deadline become one event of base, re-armed
 * after every step.  done(ud, b) is called once when the batch has ended
 * -- from within this call when it ends at once, else from base's loop.
 * Returns 0, or -1 (b NULL or already pending, out of memory: done is not
 * called).  The batch must stay alive until done; kvi_batch_cancel(b)
 * ends it (done is called) but the adapter's event is released only at
 * the next step of base's loop, so do not free base before that.
 */
int kvi_event_batch_run(struct event_base *base, kvi_batch *b, uint32_t timeout_ms,
                        kvi_batch_done_fn done, void *ud);

#ifdef __cplusplus
}
#endif

#endif /* KVI_ADAPTERS_LIBEVENT_H */
