/* module.h -- loading network engines as shared modules (module.c). */
#ifndef KVI_CORE_MODULE_H
#define KVI_CORE_MODULE_H

#include "core/internal.h"

/*
 * Finds kvi_<scheme>.so in path (':'-separated; NULL: $KVI_MODULE_PATH alone
 * when set, else the build tree's module directory when this libkvi runs
 * from the build tree, then the install directory), loads it
 * and returns its engine and dlopen handle.  KVI_E_MODULE_MISSING with a
 * message naming the engine, the file, the directories and what to install.
 */
kvi_status kvi__module_load(kvi *k, const char *path, const char *scheme,
                            const struct kvi_engine **engine, void **handle);

/* dlclose()s a handle from kvi__module_load; NULL is accepted. */
void kvi__module_unload(void *handle);

#endif
