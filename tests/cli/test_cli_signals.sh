#!/usr/bin/env bash
# test_cli_signals.sh KVI -- no acknowledged write is lost by `kvi shell`
# (issue 11 item 3), and a command kept waiting for the default store says
# who holds it and gives up:
#   1. batch shell: SIGTERM, SIGHUP and SIGINT after a store was acknowledged
#      save the default store (exit 128+signal), the next run sees the key;
#   2. the lock: a second kvi waiting for a shell's lock names it (kvi shell,
#      its pid) and gives up after KVI_LOCK_TIMEOUT with KVI_E_LOCKED (19);
#      SIGTERM ends the wait at once;
#   3. interactive shell on a terminal (tmux): Ctrl-C cancels the line being
#      typed and prompts again, the shell stays; SIGHUP (the terminal gone)
#      saves the store; history is kept.
set -u
KVI=${1:?usage: test_cli_signals.sh PATH_TO_KVI}
. "$(dirname "$0")/../support/testlib.sh"
t_init cli-signals

# wait_for FILE TEXT [SECONDS]: until FILE contains TEXT (default 10 s).
wait_for() {
    local i
    for i in $(seq $((${3:-10} * 20))); do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# A batch shell reading from a FIFO that stays open: $SH_PID, $SH_IN (fd 7).
start_batch_shell() {
    rm -f "$T/fifo"
    mkfifo "$T/fifo"
    # (the FIFO is opened by the background process, not by this shell)
    "$KVI" shell <"$T/fifo" >"$T/sh.out" 2>"$T/sh.err" &
    SH_PID=$!
    T_PIDS+=("$SH_PID")
    exec 7>"$T/fifo"
}

# ---- 1. batch shell: signals save ----------------------------------------------------------
for sig in TERM HUP INT; do
    start_batch_shell
    printf 'store local k%s v%s\nfetch local k%s\n' $sig $sig $sig >&7
    check "batch shell acknowledged the store before SIG$sig" wait_for "$T/sh.out" "v$sig"
    kill -$sig "$SH_PID"
    wait "$SH_PID"
    src=$?
    exec 7>&-
    want=$((128 + $(kill -l $sig)))
    check "SIG$sig ends the shell with $want (got $src)" [ "$src" = "$want" ]
    check "SIG$sig says the store was saved: $(cat "$T/sh.err")" grep -q "the default store was saved" "$T/sh.err"
    run fetch local k$sig
    expect "store acknowledged before SIG$sig survives" 0 "v$sig"
done

# ---- 2. the lock ---------------------------------------------------------------------------
start_batch_shell
printf 'store local held 1\nfetch local held\n' >&7
check "holder shell runs" wait_for "$T/sh.out" 1
start=$(date +%s)
KVI_LOCK_TIMEOUT=3 run store local waiting 1
elapsed=$(($(date +%s) - start))
expect "a command waiting for the lock gives up with KVI_E_LOCKED" 19 '' '*'
expect_err_has "it says it waits and for how long" "giving up after 3 s (KVI_LOCK_TIMEOUT)"
expect_err_has "it names the holder and its pid" "kvi shell (pid $SH_PID)"
check_between "it gave up after about 3 s, not never" "$elapsed" 2 20
# A bad KVI_LOCK_TIMEOUT is a clear error, before anything is written.
for bad in x -1 1.5 +2 86401 ' 3'; do
    KVI_LOCK_TIMEOUT=$bad run store local badwait 1
    expect "KVI_LOCK_TIMEOUT='$bad' is refused" 3 '' \
        'kvi: invalid argument: KVI_LOCK_TIMEOUT must be a whole number of seconds, 0 to 86400\n'
done
# SIGTERM ends the wait at once (nothing written: the store is not open).
t_spawn "$KVI" store local waiting 2 2>"$T/w.err"
w=$T_LAST_PID
# Signal only once it is really waiting (it says so after 2 s): a fixed sleep
# raced the start-up of a sanitizer build, whose SIGTERM then met no handler.
check "the second command reports that it waits" wait_for "$T/w.err" "waiting for the default store" 30
kill -TERM "$w"
wait "$w"
wrc=$?
check "SIGTERM ends the wait with KVI_E_LOCKED (got $wrc)" [ "$wrc" = 19 ]
check "... and says so: $(cat "$T/w.err")" grep -q "interrupted while waiting" "$T/w.err"
kill -TERM "$SH_PID"
wait "$SH_PID"
exec 7>&-
run fetch local waiting
expect "nothing was stored by the commands that gave up" 1 '' '*'

# ---- 3. interactive shell on a terminal ----------------------------------------------------
if ! command -v tmux >/dev/null 2>&1; then
    t_skip "tmux not found on PATH (Debian package tmux): the interactive checks need a terminal ($checks batch checks ran, $fails failed)"
fi
TM=(tmux -L "kvi-test-$$" -f /dev/null)
cleanup_tmux() { "${TM[@]}" kill-server 2>/dev/null; t_cleanup; }
trap cleanup_tmux EXIT
"${TM[@]}" new-session -d -s kvi -x 150 -y 40 \
    "exec env XDG_STATE_HOME='$XDG_STATE_HOME' TERM=xterm '$KVI' shell 2>&1"
pane() { "${TM[@]}" capture-pane -p -t kvi -S -100 >"$T/pane" 2>/dev/null; }
# pane_lines TEXT: how many lines of the terminal contain TEXT now.
pane_lines() { pane; grep -cF -- "$1" "$T/pane"; }
# until_pane TEXT [SEEN]: within 10 s the terminal shows TEXT on more than
# SEEN lines (default 0).  Take SEEN with pane_lines before the keys whose
# answer is awaited: text already on the pane (the typed command line
# itself, an earlier answer) must not count as the answer.
until_pane() {
    local i
    for i in $(seq 200); do
        [ "$(pane_lines "$1")" -gt "${2:-0}" ] && return 0
        sleep 0.05
    done
    return 1
}
# until_pane_line LINE: the terminal shows a line that is exactly LINE (an
# answer, not the command that asked for it) within 10 s.
until_pane_line() {
    local i
    for i in $(seq 200); do
        pane
        grep -qxF -- "$1" "$T/pane" && return 0
        sleep 0.05
    done
    return 1
}
KPID=$("${TM[@]}" display-message -p -t kvi '#{pane_pid}')
check "interactive shell prompts" until_pane 'kvi>'
"${TM[@]}" send-keys -t kvi 'store local tty1 one' Enter
"${TM[@]}" send-keys -t kvi 'fetch local tty1' Enter
check "interactive store + fetch" until_pane_line 'one'
"${TM[@]}" send-keys -t kvi 'store local tty2 typed-not-entered'
check "the partial line shows" until_pane 'typed-not-entered'
seen=$(pane_lines '^C')
prompts=$(pane_lines 'kvi>')
"${TM[@]}" send-keys -t kvi C-c
check "Ctrl-C shows ^C" until_pane '^C' "$seen"
check "Ctrl-C gives a fresh prompt" until_pane 'kvi>' "$prompts"
check "Ctrl-C leaves the shell running" kill -0 "$KPID"
seen=$(pane_lines 'key not found')
"${TM[@]}" send-keys -t kvi 'fetch local tty2' Enter
check "the cancelled line was not run" until_pane 'key not found' "$seen"
seen=$(pane_lines 'key not found')
"${TM[@]}" send-keys -t kvi 'store local tty3 three' Enter
"${TM[@]}" send-keys -t kvi 'counter local none' Enter
check "shell answers after Ctrl-C" until_pane 'key not found' "$seen"
sleep 0.3
"${TM[@]}" send-keys -t kvi C-c
sleep 0.2
kill -HUP "$KPID"
for i in $(seq 100); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.05; done
check "SIGHUP ends the interactive shell" bash -c "! kill -0 $KPID 2>/dev/null"
"${TM[@]}" kill-server 2>/dev/null
run fetch local tty1
expect "interactive store survives SIGHUP" 0 'one'
run fetch local tty3
expect "store just before Ctrl-C and SIGHUP survives" 0 'three'
run fetch local tty2
expect "the cancelled store never happened" 1 '' '*'
if [ -f "$STATE/history" ]; then
    # (libedit writes a blank as \040)
    check "history kept: $(tail -3 "$STATE/history")" \
        grep -q -e 'fetch local tty2' -e 'fetch\\040local\\040tty2' "$STATE/history"
fi
t_done
