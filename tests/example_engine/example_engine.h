/* example_engine.h -- the example engine of docs/engines/writing.md. */
#ifndef KVI_EXAMPLE_ENGINE_H
#define KVI_EXAMPLE_ENGINE_H

#include "kvi/engine.h"

/* The engine object; register it with kvi_register_engine(k,
 * &kvi_example_engine), then define ids with URLs example:// or
 * example:GROUP://?buckets=N. */
extern const struct kvi_engine kvi_example_engine;

#endif
