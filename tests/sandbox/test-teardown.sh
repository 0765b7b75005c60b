#!/bin/bash
# Integration test of the sandbox's teardown: a run interrupted with SIGINT, and one whose
# owner is killed with SIGKILL, leave no mount, no process and no directory behind, and a
# new run right after works. Prints "N passed, N failed".
set -u -o pipefail
set -m   # job control: background jobs keep default SIGINT handling

sandbox=$(readlink -f "$1")
export CA_SANDBOX_BASE=${CA_SANDBOX_BASE:-/var/tmp/call-assistant-sandbox}
passed=0 failed=0

ok()   { echo "ok - $*"; passed=$((passed + 1)); }
fail() { echo "not ok - $*"; failed=$((failed + 1)); }

mounts()   { findmnt -rn -o TARGET | grep -c "$CA_SANDBOX_BASE" ; }
sbx_dirs() { find "$CA_SANDBOX_BASE" -maxdepth 1 -name 'sbx-*' 2>/dev/null | wc -l; }
sbx_procs() {
    local n=0 p
    for p in /proc/[0-9]*; do
        tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q -e "$CA_SANDBOX_BASE/sbx-" -e "ca-sandbox guard" && n=$((n + 1))
    done
    echo "$n"
}

# wait_for DEADLINE_S CMD...: run CMD until it succeeds, up to DEADLINE_S seconds.
wait_for() {
    local end=$((SECONDS + $1)); shift
    until "$@"; do
        ((SECONDS < end)) || return 1
        sleep 0.05
    done
}
booted() { compgen -G "$CA_SANDBOX_BASE/sbx-*/child" > /dev/null; }
clean()  { [[ $(mounts) == 0 && $(sbx_dirs) == 0 && $(sbx_procs) == 0 ]]; }

"$sandbox" cleanup
before_mounts=$(findmnt -rn | wc -l)
clean && ok "clean before" || fail "leftovers before the test: mounts=$(mounts) dirs=$(sbx_dirs) procs=$(sbx_procs)"

# 1. SIGINT while the command runs.
"$sandbox" run -- sleep 300 &
pid=$!
if wait_for 60 booted; then ok "sandbox booted"; else fail "sandbox did not boot"; fi
kill -INT "$pid"
wait "$pid"; rc=$?
[[ $rc == 130 ]] && ok "SIGINT: exit status 130" || fail "SIGINT: exit status $rc, expected 130"
clean && ok "SIGINT: nothing left behind" || fail "SIGINT: mounts=$(mounts) dirs=$(sbx_dirs) procs=$(sbx_procs)"

# 2. SIGKILL of the owner: the guardian tears down.
"$sandbox" run -- sleep 300 &
pid=$!
wait_for 60 booted && ok "sandbox booted again" || fail "sandbox did not boot again"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
if wait_for 60 clean; then ok "SIGKILL: guardian left nothing behind"
else fail "SIGKILL: mounts=$(mounts) dirs=$(sbx_dirs) procs=$(sbx_procs)"; fi

# 3. A run right after works and passes its command's status through.
"$sandbox" run -- bash -c '"$CA_SANDBOX_EXEC" exec systemctl is-system-running' > /dev/null; rc=$?
[[ $rc == 0 ]] && ok "run right after: systemd running" || fail "run right after: status $rc"
"$sandbox" run -- false; rc=$?
[[ $rc == 1 ]] && ok "command status passed through" || fail "command status $rc, expected 1"
clean && ok "nothing left after normal runs" || fail "after normal runs: mounts=$(mounts) dirs=$(sbx_dirs) procs=$(sbx_procs)"
after_mounts=$(findmnt -rn | wc -l)
[[ $before_mounts == "$after_mounts" ]] && ok "mount table unchanged ($after_mounts)" || fail "mount table: $before_mounts before, $after_mounts after"

echo "$passed passed, $failed failed"
((failed == 0))
