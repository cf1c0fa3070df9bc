#!/bin/bash
# sip_segment_owner: Kamailio runs as the `kamailio` user (-u/-g), the
# operator's `kvi` must run as that user too.  Needs root (to start
# Kamailio as another user); the user is KVI_SIP_USER (default kamailio,
# made by Debian's kamailio package).  Runs the files of a `cmake --install`
# prefix in its temp dir (readable by that user).
#   1. the operator's mistake: a root `kvi` made the segment first.  The
#      workers cannot open it; they log an error that names the owner (root)
#      and what to do, and the database answers every REGISTER (fail open);
#   2. the segment removed, the workers make it themselves on their next
#      try (KVI_SIP_RETRY_S): round 2 fills the cache, round 3 is served
#      from it (2 queries per user in all);
#   3. a root `kvi` is refused with a message naming the owner (kamailio);
#      `kvi` run as kamailio sees every cached password.
set -u
. "${KVI_SOURCE_DIR:?}/integrations/kamailio/harness.sh"
kh_require kvi
kh_require_shm
[ "$(id -u)" = 0 ] || kh_skip "needs root to start Kamailio as another user"
KUSER=${KVI_SIP_USER:-kamailio}
id "$KUSER" >/dev/null 2>&1 || kh_skip "no user $KUSER (Debian's kamailio package makes it)"
kh_init
NGOOD=40 NBAD=4 RETRY_S=2
kh_make_db "$KH_DIR/subscriber.db" $NGOOD $NBAD
as_user() { setpriv --reuid="$KUSER" --regid="$KUSER" --init-groups -- "$@"; }

# What the kamailio user runs (the script and the Lua module, loaded after
# Kamailio dropped root; kvi) must be readable by it, wherever the build
# tree is (a clone under /root is not): an installed prefix in the test's
# directory, as an operator would have.
chmod 0711 "$KH_DIR"
P=$KH_DIR/prefix
cmake --install "$KH_BUILD" --prefix "$P" >"$KH_DIR/install.log" 2>&1 || { cat "$KH_DIR/install.log"; kh_die "cmake --install failed"; }
chmod -R a+rX "$P"
KH_SRC=$P/share/kvi/kamailio
KVI=$P/bin/kvi
as_user test -r "$P/lib/lua/5.1/kvi.so" -a -x "$KVI" || kh_die "$P is not readable by $KUSER"

# Kamailio's files: its directory writable by it, the rest readable.
mkdir -p "$KH_DIR/p1"
chown "$KUSER:" "$KH_DIR/p1" "$KH_DIR/subscriber.db"
kh_shm_url owner
URL=$KH_SHM_URL
seg=/dev/shm/kvi.${URL#*shm=}
seg=${seg%%&*}
trap 'rm -f "$seg"; kh_cleanup' EXIT

failed=0
round() {
    kh_sipp_register p1 "$1" "$KH_DIR/users.csv" 200 || { echo "sipp $1: not every REGISTER answered"; failed=1; }
    kh_check_register "$KH_DIR/users.csv" "$KH_DIR/sipp-$1/calls.log" || failed=1
}

# 1. A root kvi makes the segment before Kamailio.
"$KVI" -u "$URL" ping local >/dev/null || kh_die "root kvi could not make the segment"
KH_KAM_ARGS="-u $KUSER -g $KUSER" kh_kam_start p1 KVI_SIP_CACHE=kvi KVI_SIP_ENGINE=local \
    KVI_SIP_RETRY_S=$RETRY_S "KVI_SIP_URLS=$URL" "LUA_CPATH=$P/lib/lua/5.1/?.so;;"
round r1
if grep -q "kvi: cannot define local (KVI_E_AUTH).*belongs to uid 0 (root).*run every program that opens it as its owner" \
    "$KH_DIR/p1/kamailio.log"; then
    echo "1: the workers said whose the segment is:"
    grep -m 1 "kvi: cannot define local" "$KH_DIR/p1/kamailio.log" | sed 's/.*kvi: /   kvi: /'
else
    echo "1: no worker logged an error naming the segment's owner:"
    grep "kvi: " "$KH_DIR/p1/kamailio.log" | head -n 3
    failed=1
fi

# 2. Removed; the workers make it as kamailio.
rm -f "$seg"
sleep $((RETRY_S + 1))
round r2
round r3
owner=$(stat -c %U "$seg" 2>/dev/null)
[ "$owner" = "$KUSER" ] || { echo "2: the segment belongs to '$owner', want $KUSER"; failed=1; }
kh_dbq p1 >"$KH_DIR/dbq.txt"
kh_check_dbq "$KH_DIR/dbq.txt" $NGOOD $NBAD 2 2 3 3 || failed=1

# 3. The operator's kvi: as root refused, naming the owner; as kamailio it
# sees the workers' cache.
if out=$("$KVI" -u "$URL" keys local 'passwd_*' 2>&1); then
    echo "3: a root kvi opened the kamailio user's segment"; failed=1
else
    case $out in
    *"belongs to uid $(id -u "$KUSER") ($KUSER)"*) echo "3: root kvi refused: ${out:0:160}..." ;;
    *) echo "3: root kvi refused without naming the owner: $out"; failed=1 ;;
    esac
fi
n=$(as_user "$KVI" -u "$URL" keys local 'passwd_*' | wc -l)
echo "3: kvi as $KUSER lists $n cached passwords"
[ "$n" = $NGOOD ] || { echo "3: want $NGOOD"; failed=1; }
[ $failed = 0 ] || kh_die "sip_segment_owner (logs: run with KH_KEEP=1)"
echo "sip_segment_owner: OK"
