/* version.h -- kvi's version, at compile time and at run time. */
#ifndef KVI_VERSION_H
#define KVI_VERSION_H

#define KVI_VERSION_MAJOR 0
#define KVI_VERSION_MINOR 1
#define KVI_VERSION_PATCH 0
/* The version is written once, in the three numbers above: the string is
 * made from them, and CMake reads them from this file (CMakeLists.txt). */
#define KVI_VERSION_STR_(x) #x
#define KVI_VERSION_XSTR_(x) KVI_VERSION_STR_(x)
#define KVI_VERSION_STRING                                                   \
    KVI_VERSION_XSTR_(KVI_VERSION_MAJOR)                                     \
    "." KVI_VERSION_XSTR_(KVI_VERSION_MINOR) "." KVI_VERSION_XSTR_(KVI_VERSION_PATCH)
/* One number that grows with every release: 0xMMmmpp. */
#define KVI_VERSION_NUM \
    ((KVI_VERSION_MAJOR << 16) | (KVI_VERSION_MINOR << 8) | KVI_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the library linked at run time ("0.1.0"); static. */
const char *kvi_version(void)
#if defined(KVI_BUILDING) && defined(__GNUC__)
    __attribute__((visibility("default")))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif /* KVI_VERSION_H */
