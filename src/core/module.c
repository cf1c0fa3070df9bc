/*
 * module.c -- network engines live in shared modules (kvi_redis.so, ...) so
 * that libkvi has no third-party runtime dependency; each is loaded on the
 * first use of its scheme.
 */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/module.h"

#ifndef KVI_INSTALL_MODULE_DIR
#define KVI_INSTALL_MODULE_DIR "/usr/local/lib/kvi"
#endif
#ifndef KVI_BUILD_MODULE_DIR
#define KVI_BUILD_MODULE_DIR ""
#endif

/* What to install for each engine we ship. */
static const char *install_hint(const char *scheme)
{
    if (strcmp(scheme, "redis") == 0)
        return "build kvi with libhiredis-dev installed (apt-get install libhiredis-dev)";
    if (strcmp(scheme, "memcached") == 0)
        return "build kvi with libmemcached-dev installed (apt-get install libmemcached-dev)";
    return "no engine of that name ships with kvi; check the URL's scheme";
}

/* True when this libkvi was loaded from the build tree (tests, demos): its
 * own modules then come first, so an older installed copy cannot shadow
 * them. */
static int running_from_build_tree(void)
{
#ifdef KVI_BUILD_ROOT
    Dl_info info;
    size_t n = strlen(KVI_BUILD_ROOT);
    return n > 0 && dladdr((void *)&running_from_build_tree, &info) != 0 &&
           info.dli_fname != NULL && strncmp(info.dli_fname, KVI_BUILD_ROOT, n) == 0 &&
           info.dli_fname[n] == '/';
#else
    return 0;
#endif
}

/* Where an installed tree keeps its modules: "<directory of this
 * libkvi.so>/kvi" ($libdir/kvi next to $libdir/libkvi.so), wherever the tree
 * was installed or moved to.  When this code is not in a shared libkvi (a
 * program linked with the static library) the configured prefix's
 * directory. */
static void installed_module_dir(char *buf, size_t len)
{
    Dl_info info;
    snprintf(buf, len, "%s", KVI_INSTALL_MODULE_DIR);
    if (dladdr((void *)&installed_module_dir, &info) == 0 || info.dli_fname == NULL)
        return;
    const char *slash = strrchr(info.dli_fname, '/');
    if (slash == NULL || strncmp(slash + 1, "libkvi.so", 9) != 0)
        return;
    char dir[PATH_MAX], real[PATH_MAX];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - info.dli_fname), info.dli_fname);
    /* "/p/bin/../lib" (found through kvi's RUNPATH) reads better as "/p/lib". */
    snprintf(buf, len, "%s/kvi", realpath(dir, real) != NULL ? real : dir);
}

kvi_status kvi__module_load(kvi *k, const char *path, const char *scheme,
                            const struct kvi_engine **engine, void **handle)
{
    char dirs[2048];
    if (path == NULL) {
        /* secure_getenv: a setuid program must not load code named by
         * its caller's environment. */
        const char *env = secure_getenv("KVI_MODULE_PATH");
        const char *first = running_from_build_tree() ? KVI_BUILD_MODULE_DIR : "";
        char inst[1024];
        installed_module_dir(inst, sizeof inst);
        if (env != NULL && env[0] != '\0')
            snprintf(dirs, sizeof dirs, "%s", env); /* overrides, as documented */
        else
            snprintf(dirs, sizeof dirs, "%s%s%s", first, first[0] ? ":" : "", inst);
    } else {
        snprintf(dirs, sizeof dirs, "%s", path);
    }
    char file[128];
    snprintf(file, sizeof file, "kvi_%s.so", scheme);

    const char *p = dirs;
    while (*p != '\0') {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 0) {
            char full[4096];
            snprintf(full, sizeof full, "%.*s/%s", (int)n, p, file);
            if (access(full, F_OK) == 0) {
                void *h = dlopen(full, RTLD_NOW | RTLD_LOCAL);
                if (h == NULL)
                    return kvi__error(k, KVI_E_MODULE_MISSING,
                                      "engine '%s' is not available: cannot load %s: %s", scheme,
                                      full, dlerror());
                const struct kvi_engine *(*get)(void);
                *(void **)(&get) = dlsym(h, "kvi_module_engine");
                const struct kvi_engine *e = get ? get() : NULL;
                if (e == NULL) {
                    dlclose(h);
                    return kvi__error(k, KVI_E_MODULE_MISSING,
                                      "engine '%s' is not available: %s exports no engine",
                                      scheme, full);
                }
                *engine = e;
                *handle = h;
                return KVI_OK;
            }
        }
        p += n;
        if (*p == ':')
            p++;
    }
    return kvi__error(k, KVI_E_MODULE_MISSING,
                      "engine '%s' is not available: %s not found in %s; %s", scheme, file, dirs,
                      install_hint(scheme));
}

void kvi__module_unload(void *handle)
{
    if (handle != NULL)
        dlclose(handle);
}
