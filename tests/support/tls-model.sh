#!/bin/sh
# tls-model.sh LIB... -- fails when a shared object kvi builds reaches a
# thread-local through the dynamic TLS models (general- or local-dynamic,
# TLS descriptors): relocations *DTPMOD*, *TLSGD*, *TLSLD*, *TLSDESC*.
#
# Engine modules and the Lua module are dlopen()ed.  There, a dynamic-model
# thread-local lives in a block glibc mallocs per thread on first use, and
# AddressSanitizer's leak checker of GCC <= 13 / LLVM <= 16 can misread such
# a block and crash at exit ("Tracer caught signal 11", CI run of 853ca6b:
# the redis module's batch thread-locals).  kvi's thread-locals carry
# KVI__TLS_FAST (libkvi) or KVI_MODULE_TLS (modules): initial-exec, whose
# relocations are *TPOFF*.  At least one file must show one, so that a
# readelf that prints nothing cannot pass the check.
# Run as the unit test tls_model.
[ $# -gt 0 ] || { echo "usage: tls-model.sh LIB..."; exit 2; }
command -v readelf >/dev/null || { echo "FAILED: readelf (binutils) is not installed"; exit 1; }
bad=0 ie=0
for f in "$@"; do
    [ -f "$f" ] || { echo "FAILED: $f does not exist"; exit 1; }
    relocs=$(readelf -rW "$f") || { echo "FAILED: readelf -r $f"; exit 1; }
    dyn=$(printf '%s\n' "$relocs" | grep -E 'DTPMOD|TLSGD|TLSLD|TLSDESC')
    n_ie=$(printf '%s\n' "$relocs" | grep -c 'TPOFF')
    ie=$((ie + n_ie))
    if [ -n "$dyn" ]; then
        echo "FAILED: $f reaches thread-locals through dynamic TLS (mark them KVI_MODULE_TLS):"
        printf '%s\n' "$dyn" | sed 's/^/   /'
        bad=1
    else
        echo "ok: $f (initial-exec TLS relocations: $n_ie)"
    fi
done
[ "$ie" -gt 0 ] || { echo "FAILED: no initial-exec TLS relocation in any file (libkvi has some)"; exit 1; }
exit $bad
