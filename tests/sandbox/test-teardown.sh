#!/bin/bash
# Integration test of the sandbox's teardown: a run interrupted with SIGINT, and one whose
# owner is killed with SIGKILL, leave no mount, no process and no directory behind, and a
# new run right after works. Prints "N passed, N failed".
#
# Other runs may use the machine's sandbox base at the same time (other checkouts, tools/run):
# they wait for the lock, or hold it while ours waits. So everything here counts only the runs
# this test started, by their pid (a run's directory is $BASE/sbx-<time>-<pid>).
set -u -o pipefail
set -m   # job control: background jobs keep default SIGINT handling

sandbox=$(readlink -f "$1")
export CA_SANDBOX_BASE=${CA_SANDBOX_BASE:-/var/tmp/call-assistant-sandbox}
passed=0 failed=0
ours=()   # pids of the ca-sandbox runs started here

ok()   { echo "ok - $*"; passed=$((passed + 1)); }
fail() { echo "not ok - $*"; failed=$((failed + 1)); }

# What runs ours left: mounts, directories, processes.
our_dirs() {
    local p d n=0
    for p in "${ours[@]}"; do
        for d in "$CA_SANDBOX_BASE"/sbx-*-"$p"; do [[ -e $d ]] && n=$((n + 1)); done
    done
    echo "$n"
}
our_mounts() {
    local p n=0
    for p in "${ours[@]}"; do
        n=$((n + $(findmnt -rn -o TARGET | grep -c -e "$CA_SANDBOX_BASE/sbx-[0-9]*-$p/" -e "/nspawn/propagate/ca-sbx-$p\$")))
    done
    echo "$n"
}
our_procs() {
    local n=0 q c p
    for q in /proc/[0-9]*; do
        c=$( { tr '\0' ' ' < "$q/cmdline"; } 2>/dev/null) || continue
        for p in "${ours[@]}"; do
            [[ $c == *"$CA_SANDBOX_BASE/sbx-"*"-$p/"* || $c == *"$CA_SANDBOX_BASE/sbx-"*"-$p "* ]] && n=$((n + 1))
        done
    done
    echo "$n"
}
# The machine's mount table without any sandbox's own mounts (others may come and go meanwhile).
other_mounts() { findmnt -rn -o TARGET | grep -v -e "$CA_SANDBOX_BASE/sbx-" -e "/run/systemd/nspawn/" | sort; }

# wait_for DEADLINE_S CMD...: run CMD until it succeeds, up to DEADLINE_S seconds.
wait_for() {
    local end=$((SECONDS + $1)); shift
    until "$@"; do
        ((SECONDS < end)) || return 1
        sleep 0.05
    done
}
booted() { compgen -G "$CA_SANDBOX_BASE/sbx-*-$1/child" > /dev/null; }
clean()  { [[ $(our_mounts) == 0 && $(our_dirs) == 0 && $(our_procs) == 0 ]]; }
state()  { echo "mounts=$(our_mounts) dirs=$(our_dirs) procs=$(our_procs)"; }

before=$(other_mounts)

# 1. SIGINT while the command runs. (The wait may include waiting for another run's lock.)
"$sandbox" run -- sleep 300 &
pid=$!
ours+=("$pid")
if wait_for 900 booted "$pid"; then ok "sandbox booted"; else fail "sandbox did not boot"; fi
kill -INT "$pid"
wait "$pid"; rc=$?
[[ $rc == 130 ]] && ok "SIGINT: exit status 130" || fail "SIGINT: exit status $rc, expected 130"
clean && ok "SIGINT: nothing left behind" || fail "SIGINT: $(state)"

# 2. SIGKILL of the owner: the guardian tears down.
"$sandbox" run -- sleep 300 &
pid=$!
ours+=("$pid")
wait_for 900 booted "$pid" && ok "sandbox booted again" || fail "sandbox did not boot again"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
if wait_for 60 clean; then ok "SIGKILL: guardian left nothing behind"
else fail "SIGKILL: $(state)"; fi

# 3. A run right after works and passes its command's status through.
"$sandbox" run -- bash -c '"$CA_SANDBOX_EXEC" exec systemctl is-system-running' > /dev/null &
pid=$!
ours+=("$pid")
wait "$pid"; rc=$?
[[ $rc == 0 ]] && ok "run right after: systemd running" || fail "run right after: status $rc"
# On a loaded machine the launcher may exec systemd-nspawn late: that is a slow start, not a
# failed one (it was taken for "systemd-nspawn exited during boot" on the first boot after
# other runs).
CA_SANDBOX_TEST_SPAWN_DELAY=0.5 "$sandbox" run -- true &
pid=$!
ours+=("$pid")
wait "$pid"; rc=$?
[[ $rc == 0 ]] && ok "slow launcher (0.5 s before exec): booted" || fail "slow launcher: status $rc"
"$sandbox" run -- false &
pid=$!
ours+=("$pid")
wait "$pid"; rc=$?
[[ $rc == 1 ]] && ok "command status passed through" || fail "command status $rc, expected 1"
clean && ok "nothing left after normal runs" || fail "after normal runs: $(state)"
after=$(other_mounts)
[[ $before == "$after" ]] && ok "mount table unchanged (outside sandboxes)" ||
    fail "mount table changed: $(diff <(echo "$before") <(echo "$after") | tr '\n' ' ')"

echo "$passed passed, $failed failed"
((failed == 0))
