#!/bin/bash
# sip_installed: the by-hand walkthrough of docs/kamailio.md on what
# `cmake --install` puts in a prefix: kamailio.cfg, kvi_routing.lua, the
# sipp scenarios, harness.sh and the systemd drop-in example under
# share/kvi/kamailio/, the Lua module under lib/lua/5.1/, the kvi command.
# Kamailio runs the installed configuration and script with the installed
# Lua module, password cache, credits and journal on shared local
# collections: 10 users (+1 with a wrong password) register (200 / 401),
# the installed `kvi` lists the cached passwords and shows the workers'
# counts (stats), seeds a credit, one call
# is made and billed per started second, the CDR line is logged.
set -u
. "${KVI_SOURCE_DIR:?}/integrations/kamailio/harness.sh"
kh_require kvi
kh_require_shm
kh_init
P=$KH_DIR/prefix
cmake --install "$KH_BUILD" --prefix "$P" >"$KH_DIR/install.log" 2>&1 || { cat "$KH_DIR/install.log"; kh_die "cmake --install failed"; }
S=$P/share/kvi/kamailio
failed=0
for f in kamailio.cfg kvi_routing.lua harness.sh kvi.conf.systemd sipp/register.xml sipp/uac_call.xml sipp/uas_call.xml; do
    cmp -s "$S/$f" "$KVI_SOURCE_DIR/integrations/kamailio/$f" || { echo "$S/$f: not installed or not the source's"; failed=1; }
done
[ -e "$P/lib/lua/5.1/kvi.so" ] || kh_die "no $P/lib/lua/5.1/kvi.so"
KVI=$P/bin/kvi
KH_SRC=$S # from here on the harness runs the installed files

# The database and the user file, as the walkthrough makes them.
bash -c ". '$S/harness.sh'; KH_DIR='$KH_DIR' kh_make_db '$KH_DIR/subscriber.db' 10 1" || kh_die "kh_make_db failed"
head -n 2 "$KH_DIR/users.csv"

kh_shm_url auth; AUTH=$KH_SHM_URL
KH_SHM_SIZE=4m kh_shm_url credit; CREDIT=local:billing://${KH_SHM_URL#local://}
KH_SHM_SIZE=1m kh_shm_url journal; JOURNAL=local:journal://${KH_SHM_URL#local://}
kh_kam_start p1 KVI_KAM_CHILDREN=4 "LUA_CPATH=$P/lib/lua/5.1/?.so;;" "KVI_SIP_URLS=$AUTH $CREDIT $JOURNAL" \
    KVI_SIP_BILLING=local:billing KVI_SIP_JOURNAL=local:journal

kh_sipp_register p1 reg "$KH_DIR/users.csv" 10 || failed=1
kh_check_register "$KH_DIR/users.csv" "$KH_DIR/sipp-reg/calls.log" || failed=1
n=$("$KVI" -u "${AUTH%%&*}" keys local 'passwd_*' | wc -l)
echo "the installed kvi sees $n cached passwords"
[ "$n" = 10 ] || { echo "want 10"; failed=1; }
# Step 4's stats, as the walkthrough shows them: every worker's operations
# (11 fetches that missed, 10 stores, the keys listing above).
"$KVI" -u "${AUTH%%&*}" stats local >"$KH_DIR/stats.txt" 2>&1 || failed=1
for line in "ops 22" "misses 11" "hits 0" "errors 0" "hit_ratio 0.0000" "shared yes"; do
    awk -v w="$line" '$1 " " $2 == w { found = 1 } END { exit !found }' "$KH_DIR/stats.txt" ||
        { echo "kvi stats: no '$line' in: $(cat "$KH_DIR/stats.txt")"; failed=1; }
done

"$KVI" -u "${CREDIT%%&*}" store local:billing credit_u0001 100 || kh_die "cannot seed the credit"
kh_uas_start uas
printf 'SEQUENTIAL\nu0001\n' >"$KH_DIR/calls.csv"
kh_sipp p1 call -sf "$S/sipp/uac_call.xml" -inf "$KH_DIR/calls.csv" -key uas "127.0.0.1:${KH_PORT[uas]}" -m 1 ||
    { echo "the call did not complete"; tail -n 20 "$KH_DIR/sipp-call/sipp.out"; failed=1; }
sleep 0.3 # the BYE's dialog:end runs after sipp's 200
cdr=$(grep 'kvi-cdr ' "$KH_DIR/p1/kamailio.log" | sed 's/.*kvi-cdr //')
credit=$("$KVI" -u "${CREDIT%%&*}" counter local:billing credit_u0001)
echo "CDR: $cdr"
echo "credit: 100 -> $credit"
secs=$(sed -n 's/.* secs=\([0-9]*\) .*/\1/p' <<<"$cdr")
[ -n "$secs" ] && [ "$secs" -ge 1 ] && [ "$credit" = $((100 - secs)) ] ||
    { echo "want one CDR with secs >= 1 and the credit 100 - secs"; failed=1; }
[ $failed = 0 ] || kh_die "sip_installed (logs: run with KH_KEEP=1)"
echo "sip_installed: OK"
