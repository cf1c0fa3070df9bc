#!/usr/bin/env bash
# test_cli_state.sh KVI -- where `kvi` keeps its default store and what it
# says when it cannot: XDG_STATE_HOME (relative ones ignored, as the XDG
# spec says) or $HOME/.local/state; a path with bytes a URL must escape; a
# state directory that cannot be made or is too long; a lock file that
# cannot be opened; KVI_LOCK_TIMEOUT; a corrupt state file; a final save
# that fails (exit 11, the library's log line on stderr); the forms of -u,
# -c and -- on the command line.
set -u

KVI=${1:?usage: test_cli_state.sh PATH_TO_KVI}
. "$(dirname "$0")/../support/testlib.sh"
t_init cli-state
cd "$T" || exit 1

# ---- where the store lives ------------------------------------------------------------------

# A relative XDG_STATE_HOME is ignored: $HOME/.local/state/kvi is used.
mkdir -p "$T/home"
HOME=$T/home XDG_STATE_HOME=relative/dir "$KVI" store local a 1 >"$T/out" 2>"$T/err"
rc=$?
expect "relative XDG_STATE_HOME: stored" 0 ""
check "relative XDG_STATE_HOME: the store is under HOME" test -f "$T/home/.local/state/kvi/local.kvis"
check "relative XDG_STATE_HOME: nothing made under the relative path" test ! -e "$T/relative"
HOME=$T/home XDG_STATE_HOME= "$KVI" fetch local a >"$T/out" 2>"$T/err"
rc=$?
expect "empty XDG_STATE_HOME: HOME's store" 0 "1"

# A directory name with a space, '&', '%' and '?' (escaped in the URL).
odd="$T/odd dir&x=%41?y"
XDG_STATE_HOME=$odd "$KVI" store local k 'v w' >"$T/out" 2>"$T/err"
rc=$?
expect "odd state dir: stored" 0 ""
XDG_STATE_HOME=$odd "$KVI" fetch local k >"$T/out" 2>"$T/err"
rc=$?
expect "odd state dir: fetched" 0 "v w"
check "odd state dir: the file is where the name says" test -f "$odd/kvi/local.kvis"

# A state directory below a regular file cannot be made: I/O error (11).
: >"$T/afile"
XDG_STATE_HOME=$T/afile/sub "$KVI" store local a 1 >"$T/out" 2>"$T/err"
rc=$?
expect "state dir below a file" 11 "" '*'
expect_err_has "state dir below a file" "cannot create directory $T/afile"

# A path longer than the system takes.
long=/$(printf 'd%.0s' $(seq 5000))
XDG_STATE_HOME=$long "$KVI" fetch local a >"$T/out" 2>"$T/err"
rc=$?
expect "state dir too long" 11 "" '*'
expect_err_has "state dir too long" "state directory path too long"

# The lock file cannot be opened (a directory has its name).
mkdir -p "$T/locked/kvi/cli.lock"
XDG_STATE_HOME=$T/locked "$KVI" fetch local a >"$T/out" 2>"$T/err"
rc=$?
expect "lock file is a directory" 11 "" '*'
expect_err_has "lock file is a directory" "cannot open $T/locked/kvi/cli.lock"

# ---- KVI_LOCK_TIMEOUT -----------------------------------------------------------------------

for bad in abc -1 1.5 86401 99999999999999999999; do
    KVI_LOCK_TIMEOUT=$bad "$KVI" fetch local a >"$T/out" 2>"$T/err"
    rc=$?
    expect "KVI_LOCK_TIMEOUT=$bad" 3 "" '*'
    expect_err_has "KVI_LOCK_TIMEOUT=$bad" "KVI_LOCK_TIMEOUT must be a whole number of seconds"
done
t_need_program flock util-linux
"$KVI" store local held 1 >/dev/null 2>&1
# This shell holds the lock (flock is per open file), kvi must not wait.
exec 8>>"$STATE/cli.lock"
check "the test holds the lock" flock -n 8
KVI_LOCK_TIMEOUT=0 "$KVI" fetch local held >"$T/out" 2>"$T/err" 8>&-
rc=$?
expect "KVI_LOCK_TIMEOUT=0 while held" 19 "" '*'
expect_err_has "KVI_LOCK_TIMEOUT=0 while held" "gave up after 0 s"
exec 8>&-

# ---- a damaged or unsavable store -----------------------------------------------------------

export XDG_STATE_HOME=$T/damaged
"$KVI" store local a 1 >/dev/null 2>&1
printf 'KVILOCAL but not really' >"$XDG_STATE_HOME/kvi/local.kvis"
run fetch local a
expect "corrupt state file" 20 "" '*'
expect_err_has "corrupt state file" "move the file away to start with an empty store"

# The final save fails: the temporary file's name (local.kvis.tmp.PID) is
# taken by a directory.  The command's own result stands, the library's
# log line is on stderr and the exit status says the data was not saved.
export XDG_STATE_HOME=$T/nosave
"$KVI" store local a 1 >/dev/null 2>&1
bash -c 'mkdir "$1/kvi/local.kvis.tmp.$$" && exec "$2" store local a 2' _ "$XDG_STATE_HOME" "$KVI" \
    >"$T/out" 2>"$T/err"
rc=$?
expect "final save fails" 11 "" '*'
expect_err_has "final save fails" "kvi: local: final save failed"
run fetch local a
expect "final save failed: the old value stays" 0 "1"

# Standard input that cannot be read (a directory) is an I/O error (11),
# and nothing is stored.
export XDG_STATE_HOME=$T/stdin
"$KVI" store local k - <"$T" >"$T/out" 2>"$T/err"
rc=$?
expect "VALUE - from a directory" 11 "" '*'
expect_err_has "VALUE - from a directory" "reading standard input"
run fetch local k
expect "nothing stored from a bad standard input" 1 "" '*'

# ---- option forms ---------------------------------------------------------------------------

export XDG_STATE_HOME=$T/forms
printf 'local:fromfile://\n' >"$T/ids.conf"
for form in "-ulocal:u://" "--url=local:u://" "--url local:u://" "-u local:u://"; do
    # shellcheck disable=SC2086
    run $form store local:u k v
    expect "$form" 0 ""
done
for form in "-c$T/ids.conf" "--config=$T/ids.conf" "--config $T/ids.conf"; do
    # shellcheck disable=SC2086
    run $form store local:fromfile k v
    expect "$form" 0 ""
done
run --url
expect "--url without a value" 2 "" '*'
expect_err_has "--url without a value" 'kvi: option needs a value "--url"'
# Several ids: stats and engines list each, in order, in one JSON object.
run -u local:a:// -u local:b:// --json stats
check "stats --json of two ids" grep -Eq '^\{"status":"ok","stats":\{"local:a":\{"ops":0,[^{}]*\},"local:b":\{"ops":0,[^{}]*\}\}\}$' "$T/out"
run -u local:a:// -u local:b:// --json engines
check "engines --json of two ids" grep -Eq '^\{"status":"ok","engines":\[\{"id":"local:a",[^]]*\]\},\{"id":"local:b",' "$T/out"
run -- fetch local nothere
expect "-- ends the options" 1 "" 'kvi: key not found\n'
run -- --json fetch local a
expect "after --, --json is a command" 2 "" '*'
expect_err_has "after --, --json is a command" 'kvi: unknown command "--json"'

t_done
