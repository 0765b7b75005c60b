#!/usr/bin/python3
"""The operator's path, as an operator walks it, inside the sandbox (apt-e2e runs this under
tests/sandbox/ca-sandbox with the packages in WORK/v1 and the newer build in WORK/v2):

apt install call-assistant alone (without call-assistant-module-matrix) -> call-assistant.service
enabled and started -> every module it ships has its unit active -> the group call-assistant
exists, the control socket is 0660 root:call-assistant, a member of the group may use
call-assistantctl and another user is refused with a clear message -> apt install
call-assistant-module-matrix: the orchestrator starts it, the others keep running -> every
module's own lines in `journalctl -u` -> call-assistantctl list / config set -> upgrade to a
newer build and `systemctl restart`: module PIDs and ports unchanged -> a broken edit of
/etc/call-assistant/call-assistant.yaml, then reload and restart: refused with the file's
line, every module still running -> fixed, started: modules adopted -> stop and start: ports
kept -> apt remove / purge call-assistant-module-matrix: its unit stopped and its state gone, the
others keep running -> apt remove -> apt purge: nothing of ours left.

Every command runs inside the container (systemctl, journalctl, apt-get, call-assistantctl),
as the administrator would. Prints "ok - STEP" / "not ok - STEP"; stops at the first failure
(later steps depend on earlier ones) after printing what the daemon logged.

    test_apt.py WORK
"""

import glob
import json
import os
import re
import stat
import subprocess
import sys
import time

WORK = sys.argv[1]
SANDBOX = os.environ["CA_SANDBOX_EXEC"]
UPPER = os.path.join(os.environ["CA_SANDBOX_DIR"], "upper")
BASE = ["call-assistant", "libcall-assistant-module1"]
MATRIX = "call-assistant-module-matrix"
PACKAGES = BASE + [MATRIX]
ADMIN_GROUP = "call-assistant"
MEMBER, STRANGER = "ca-apt-member", "ca-apt-stranger"
CONTROL_SOCKET = "/run/call-assistant/control.sock"
CHROMECAST_CONFIG = '{"devices": [], "discovery": false}'
SETTLED = ("READY", "WAITING_FOR_CONFIG")
CONFIG_FILE = "/etc/call-assistant/call-assistant.yaml"


class StepFailed(Exception):
    pass


def inside(*argv, timeout=120, input=None):
    """Run a command inside the container."""
    return subprocess.run([SANDBOX, "exec", "env", "DEBIAN_FRONTEND=noninteractive", "SYSTEMD_PAGER=",
                           "SYSTEMD_COLORS=0", *argv],
                          capture_output=True, text=True, timeout=timeout, input=input)


def must(*argv, timeout=120):
    p = inside(*argv, timeout=timeout)
    if p.returncode != 0:
        raise StepFailed(f"`{' '.join(argv)}` exited with {p.returncode}:\n{p.stdout}{p.stderr}")
    return p.stdout


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StepFailed(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def is_active(unit):
    return inside("systemctl", "is-active", unit).stdout.strip()


def main_pid(unit):
    return int(inside("systemctl", "show", "-P", "MainPID", unit).stdout.strip() or 0)


def modules():
    p = inside("call-assistantctl", "list", "--json")
    if p.returncode != 0:
        return {}
    return {m["name"]: m for m in json.loads(p.stdout)}


def debs(version_dir, packages=PACKAGES):
    return [glob.glob(os.path.join(WORK, version_dir, f"{p}_*.deb"))[0] for p in packages]


def shipped_modules(package):
    """Names of the module folders PACKAGE ships (dpkg -L)."""
    return {l.split("/")[-2] for l in must("dpkg", "-L", package).splitlines()
            if l.endswith("/module.yaml") and "/call-assistant/modules/" in l}


class Operator:
    def __init__(self):
        self.units = {}       # module name -> unit
        self.snapshot = {}    # module name -> (pid, port)

    # ---- steps -------------------------------------------------------------------------

    def install(self):
        # The machine image forbids maintainer scripts to start services; a real system does not.
        must("rm", "-f", "/usr/sbin/policy-rc.d")
        # call-assistant alone: it must install and run without the matrix package (whose
        # nodejs >= 20 Debian 12 lacks; apt-e2e resolves it against Debian 12's archive too).
        must("apt-get", "install", "-y", "--no-install-recommends", *debs("v1", BASE), timeout=300)
        status = inside("dpkg-query", "-W", "-f=${Status}", MATRIX).stdout
        if "installed" in status and "not-installed" not in status:
            raise StepFailed(f"{MATRIX} is installed ({status}) though only call-assistant was asked for")
        return f"apt-get install ./call-assistant_*.deb ./libcall-assistant-module1_*.deb (without {MATRIX})"

    def service_enabled_and_started(self):
        enabled = inside("systemctl", "is-enabled", "call-assistant.service").stdout.strip()
        if enabled != "enabled":
            raise StepFailed(f"call-assistant.service is '{enabled}', expected enabled")
        wait_until(lambda: is_active("call-assistant.service") == "active", 30, "call-assistant.service active")
        return "call-assistant.service enabled and active (started by the package)"

    def bundled_modules_active(self):
        shipped = shipped_modules("call-assistant")
        if not shipped:
            raise StepFailed("the package ships no module")
        if "matrix" in shipped:
            raise StepFailed(f"call-assistant ships the matrix module, which belongs to {MATRIX}")
        listed = wait_until(lambda: (lambda m: m if len(m) == len(shipped) else None)(modules()), 30,
                            f"call-assistantctl list to show {len(shipped)} modules")
        for name, m in listed.items():
            self.units[name] = m["unit"]
            wait_until(lambda: is_active(m["unit"]) == "active", 30, f"{m['unit']} active")
            p = inside("systemctl", "status", m["unit"])
            if p.returncode != 0 or "active (running)" not in p.stdout:
                raise StepFailed(f"systemctl status {m['unit']} (status {p.returncode}):\n{p.stdout}")
            # Each module has its state directory (docs/writing-a-module.md).
            if inside("test", "-d", f"/var/lib/call-assistant-modules/{name}").returncode != 0:
                raise StepFailed(f"no state directory /var/lib/call-assistant-modules/{name}")
        if set(listed) != shipped:
            raise StepFailed(f"call-assistantctl list shows {sorted(listed)}, the package ships {sorted(shipped)}")
        return (f"call-assistant alone: systemctl status shows active (running) for "
                f"{', '.join(sorted(self.units.values()))}; each has its state directory")

    def admin_group_and_socket(self):
        group = inside("getent", "group", ADMIN_GROUP)
        if group.returncode != 0:
            raise StepFailed(f"no group {ADMIN_GROUP} after install (getent: {group.returncode})")
        gid = group.stdout.split(":")[2]
        if int(gid) >= 1000:
            raise StepFailed(f"group {ADMIN_GROUP} has gid {gid}: not a system group")
        mode = must("stat", "-c", "%a %U %G %F", CONTROL_SOCKET).strip()
        if mode != f"660 root {ADMIN_GROUP} socket":
            raise StepFailed(f"{CONTROL_SOCKET} is '{mode}', expected '660 root {ADMIN_GROUP} socket'")
        return f"group {ADMIN_GROUP} (gid {gid}) created at install; {CONTROL_SOCKET} is 0660 root:{ADMIN_GROUP}"

    def group_member_may_use_ctl(self):
        must("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "-G", ADMIN_GROUP, MEMBER)
        must("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", STRANGER)
        p = inside("runuser", "-u", MEMBER, "--", "call-assistantctl", "list")
        if p.returncode != 0 or not all(re.search(rf"^{re.escape(n)}\s", p.stdout, re.M) for n in self.units):
            raise StepFailed(f"call-assistantctl list as {MEMBER} (in {ADMIN_GROUP}) exited with {p.returncode}:\n"
                             f"{p.stdout}{p.stderr}")
        p = inside("runuser", "-u", STRANGER, "--", "call-assistantctl", "list")
        expected = ("Permission denied", CONTROL_SOCKET, f"group {ADMIN_GROUP}", f"usermod -aG {ADMIN_GROUP}")
        if p.returncode == 0 or p.stdout.strip() or not all(e in p.stderr for e in expected):
            raise StepFailed(f"call-assistantctl list as {STRANGER} (not in {ADMIN_GROUP}) exited with "
                             f"{p.returncode}, expected a refusal naming {expected}:\n{p.stdout}{p.stderr}")
        return (f"call-assistantctl list: works for a member of {ADMIN_GROUP}; another user is refused: "
                f"'{p.stderr.strip().splitlines()[0]}'")

    def install_matrix_package(self):
        before = self.take_snapshot()
        daemon = self.daemon_pid()
        must("apt-get", "install", "-y", "--no-install-recommends", *debs("v1", [MATRIX]), timeout=300)
        if shipped_modules(MATRIX) != {"matrix"}:
            raise StepFailed(f"{MATRIX} ships {sorted(shipped_modules(MATRIX))}, expected the matrix module")
        if self.daemon_pid() in (0, daemon):
            raise StepFailed(f"installing {MATRIX} did not restart call-assistant.service")
        listed = wait_until(lambda: (lambda m: m if "matrix" in m else None)(modules()), 30,
                            "call-assistantctl list to show matrix")
        self.units["matrix"] = listed["matrix"]["unit"]
        wait_until(lambda: is_active(self.units["matrix"]) == "active", 30, f"{self.units['matrix']} active")
        now = self.take_snapshot()
        for name, (pid, port) in before.items():
            if now[name] != (pid, port):
                raise StepFailed(f"{name}: (pid, port) {pid, port} before installing {MATRIX}, {now[name]} after")
        return (f"apt-get install ./{MATRIX}_*.deb: the orchestrator restarted and started matrix "
                f"({self.units['matrix']} active); the other modules kept their PIDs and ports")

    def journal_has_module_lines(self):
        for name, unit in self.units.items():
            pid = main_pid(unit)

            def own_lines():
                out = inside("journalctl", "-u", unit, "-o", "json", "--no-pager").stdout
                entries = [json.loads(l) for l in out.splitlines() if l.strip()]
                return [e for e in entries if e.get("_PID") == str(pid)]
            lines = wait_until(own_lines, 15, f"lines from {name} (pid {pid}) in journalctl -u {unit}")
            ident = {e.get("SYSLOG_IDENTIFIER") for e in lines}
            if ident != {name}:
                raise StepFailed(f"{unit}: journal lines tagged {ident}, expected {name}")
        return "journalctl -u <unit> shows each module's own lines, tagged with its name"

    def ctl_list(self):
        out = must("call-assistantctl", "list")
        for name in self.units:
            if not re.search(rf"^{re.escape(name)}\s", out, re.M):
                raise StepFailed(f"call-assistantctl list does not show {name}:\n{out}")
        settled = wait_until(lambda: (lambda m: m if m and all(x["state"] in SETTLED for x in m.values()) else None)(
            modules()), 60, f"every module {' or '.join(SETTLED)}")
        self.states = {n: m["state"] for n, m in settled.items()}
        return "call-assistantctl list: " + ", ".join(f"{n} {st}" for n, st in sorted(self.states.items()))

    def config_set(self):
        must("call-assistantctl", "config", "set", "chromecast", CHROMECAST_CONFIG)
        wait_until(lambda: modules().get("chromecast", {}).get("state") == "READY", 30, "chromecast READY")
        self.states["chromecast"] = "READY"
        self.snapshot = self.take_snapshot()
        return "call-assistantctl config set chromecast ...: READY"

    def take_snapshot(self):
        mods = modules()
        return {name: (main_pid(unit), mods[name]["port"]) for name, unit in self.units.items()}

    def daemon_pid(self):
        return main_pid("call-assistant.service")

    def same_modules(self, what):
        """Every module still runs as the same process, on the same port, in its state again."""
        wait_until(lambda: (lambda m: len(m) == len(self.units) and
                            all(m[n].get("state") == st for n, st in self.states.items()))(modules()), 30,
                   f"every module back in its state after {what}")
        now = self.take_snapshot()
        for name, (pid, port) in self.snapshot.items():
            if now[name] != (pid, port):
                raise StepFailed(f"{name}: (pid, port) {pid, port} before {what}, {now[name]} after")
            if is_active(self.units[name]) != "active":
                raise StepFailed(f"{self.units[name]} not active after {what}")

    def upgrade_keeps_modules(self):
        daemon = self.daemon_pid()
        must("apt-get", "install", "-y", "--no-install-recommends", *debs("v2"), timeout=300)
        for package in PACKAGES:
            version = must("dpkg-query", "-W", "-f=${Version}", package)
            if not version.endswith("+upgrade1"):
                raise StepFailed(f"{package} {version} installed, expected the newer build")
        wait_until(lambda: is_active("call-assistant.service") == "active" and self.daemon_pid() not in (0, daemon),
                   30, "the new daemon active")
        self.same_modules("the upgrade")
        log = inside("journalctl", "-u", "call-assistant", "--no-pager", "-o", "cat").stdout
        if "Stopping modules in reverse dependency order" in log:
            raise StepFailed("the upgrade stopped the modules:\n" + log[-2000:])
        return f"upgrade to {version}: daemon restarted, module PIDs and ports unchanged, states unchanged"

    def restart_keeps_modules(self):
        daemon = self.daemon_pid()
        must("systemctl", "restart", "call-assistant.service")
        if self.daemon_pid() in (0, daemon):
            raise StepFailed("systemctl restart did not start a new daemon")
        self.same_modules("systemctl restart")
        return "systemctl restart call-assistant: module PIDs and ports unchanged (adopted)"

    def broken_config_reload(self):
        self.good_config = must("cat", CONFIG_FILE)
        inside("sh", "-c", f"printf 'health:\\n  interval_ms: [5000\\n' >> {CONFIG_FILE}")
        daemon = self.daemon_pid()
        p = inside("systemctl", "reload", "call-assistant.service")
        if p.returncode == 0:
            raise StepFailed("systemctl reload accepted a broken file")
        status = inside("systemctl", "status", "--no-pager", "-n", "20", "call-assistant.service").stdout
        if not re.search(r"call-assistant\.yaml:\d+:\d+: error: ", status):
            raise StepFailed(f"no file:line:column error in systemctl status:\n{status}")
        if is_active("call-assistant.service") != "active" or self.daemon_pid() != daemon:
            raise StepFailed("the daemon did not stay up after a refused reload")
        self.same_modules("a refused reload")
        return "broken edit + systemctl reload: refused (file:line:column in systemctl status), all running"

    def broken_config_restart(self):
        p = inside("systemctl", "restart", "call-assistant.service")
        if p.returncode == 0:
            raise StepFailed("systemctl restart accepted a broken file")
        # Refused once, not restarted over and over (RestartPreventExitStatus=78).
        state = is_active("call-assistant.service")
        show = inside("systemctl", "show", "-P", "ExecMainStatus", "call-assistant.service").stdout.strip()
        if state != "failed" or show != "78":
            raise StepFailed(f"call-assistant.service is {state} (exit status {show}), expected failed with 78")
        status = inside("systemctl", "status", "--no-pager", "-n", "20", "call-assistant.service").stdout
        for needle in ("Configuration refused", "call-assistant.yaml:"):
            if needle not in status:
                raise StepFailed(f"'{needle}' not in systemctl status:\n{status}")
        for name, (pid, _) in self.snapshot.items():
            if main_pid(self.units[name]) != pid or is_active(self.units[name]) != "active":
                raise StepFailed(f"{name} did not keep running while the daemon refused its file")
        return "broken edit + systemctl restart: refused once with the file's line, every module still running"

    def fixed_config_start(self):
        inside("sh", "-c", f"cat > {CONFIG_FILE}", input=self.good_config)
        must("systemctl", "start", "call-assistant.service")
        self.same_modules("the fix and start")
        return "fixed file + systemctl start: the modules are adopted (same PIDs and ports)"

    def help_names_the_config(self):
        out = must("call-assistant", "--help")
        unit = must("systemctl", "cat", "call-assistant.service")
        if CONFIG_FILE not in out or f"--config {CONFIG_FILE}" not in unit:
            raise StepFailed(f"--help or the unit does not name {CONFIG_FILE}:\n{out}\n{unit}")
        return f"call-assistant --help and the unit name {CONFIG_FILE}"

    def stop_start_keeps_ports(self):
        must("systemctl", "stop", "call-assistant.service")
        for unit in self.units.values():
            state = is_active(unit)
            if state == "active":
                raise StepFailed(f"{unit} still active after systemctl stop call-assistant")
        must("systemctl", "start", "call-assistant.service")
        wait_until(lambda: (lambda m: len(m) == len(self.units) and
                            all(m[n].get("state") == st for n, st in self.states.items()))(modules()), 60,
                   "every module in its state again")
        after = self.take_snapshot()
        for name, (pid, port) in self.snapshot.items():
            if after[name][1] != port:
                raise StepFailed(f"{name}: port {port} before, {after[name][1]} after stop/start")
            if after[name][0] == pid:
                raise StepFailed(f"{name}: same pid {pid} after stop/start: it was not stopped")
        self.snapshot = after
        return ("systemctl stop/start call-assistant: modules stopped and started again, same ports, "
                "chromecast configured again (READY)")

    def remove_matrix_package(self):
        unit = self.units.pop("matrix")
        self.states.pop("matrix", None)
        self.snapshot.pop("matrix", None)
        must("apt-get", "remove", "-y", MATRIX, timeout=300)
        state = is_active(unit)
        if state in ("active", "activating", "deactivating"):
            raise StepFailed(f"{unit} is {state} after apt remove {MATRIX}")
        if "matrix" in modules():
            raise StepFailed(f"call-assistantctl list still shows matrix after apt remove {MATRIX}")
        self.same_modules(f"apt remove {MATRIX}")
        must("apt-get", "purge", "-y", MATRIX, timeout=300)
        if inside("test", "-e", "/var/lib/call-assistant-modules/matrix").returncode == 0:
            raise StepFailed(f"/var/lib/call-assistant-modules/matrix left after apt purge {MATRIX}")
        for name in self.units:
            if inside("test", "-d", f"/var/lib/call-assistant-modules/{name}").returncode != 0:
                raise StepFailed(f"apt purge {MATRIX} removed the state directory of {name}")
        return (f"apt remove {MATRIX}: its unit stopped, no longer listed, the others kept their PIDs and ports; "
                "purge removed its state directory only")

    def remove(self):
        must("apt-get", "remove", "-y", *PACKAGES, timeout=300)
        state = is_active("call-assistant.service")
        if state in ("active", "activating", "deactivating"):
            raise StepFailed(f"call-assistant.service is {state} after apt remove")
        # Loaded units other than "not-found" ones: the enablement symlink of
        # call-assistant.service stays until purge (a reinstall keeps it enabled), as Debian does.
        units = [l for l in must("systemctl", "list-units", "--all", "--plain", "--no-legend",
                                 "call-assistant*").splitlines() if l.strip() and " not-found " not in l]
        if units:
            raise StepFailed("units left after apt remove:\n" + "\n".join(units))
        if inside("test", "-e", "/run/call-assistant").returncode == 0:
            raise StepFailed("/run/call-assistant (module tokens) left after apt remove")
        for kept in ("/etc/call-assistant/call-assistant.yaml", "/var/lib/call-assistant/config"):
            if inside("test", "-e", kept).returncode != 0:
                raise StepFailed(f"{kept} is gone after apt remove (only purge removes it)")
        return ("apt remove: service and modules stopped, no unit left, tokens gone; "
                "configuration and state kept")

    def purge(self):
        must("apt-get", "purge", "-y", *PACKAGES, timeout=300)
        for p in PACKAGES:
            status = inside("dpkg-query", "-W", "-f=${Status}", p).stdout
            if "installed" in status and "not-installed" not in status:
                raise StepFailed(f"{p}: dpkg status '{status}' after purge")
        units = must("systemctl", "list-units", "--all", "--plain", "--no-legend", "call-assistant*")
        # (exits 1 when nothing matches)
        files = inside("systemctl", "list-unit-files", "--plain", "--no-legend", "call-assistant*").stdout
        if units.strip() or files.strip():
            raise StepFailed(f"units left after purge:\n{units}{files}")
        # systemd 252 itself keeps /run/systemd/units/log-extra-fields:UNIT of every unit that
        # had LogExtraFields= after the unit is gone (`systemd-run -p LogExtraFields=A=b true`
        # leaves one too): its own bookkeeping in tmpfs, not ours to delete.
        left = [f"(volatile) {l}" for l in must("find", "/run", "/tmp", "-ipath", "*call*assistant*").splitlines()
                if not l.startswith("/run/systemd/units/log-extra-fields:")]
        left += leftovers_in(UPPER)
        if left:
            raise StepFailed("left after apt purge:\n  " + "\n  ".join(left))
        return "apt purge: nothing of ours left (state, secrets, tokens, runtime files, units, config)"


def leftovers_in(upper):
    """Paths the container created that name us, other than logs (the journal and apt's and
    dpkg's logs keep what happened, as on any system)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(upper):
        rel = os.path.relpath(dirpath, upper)
        if rel == "var/log" or rel.startswith("var/log/"):
            dirnames[:] = []
            continue
        for n in dirnames + filenames:
            path = os.path.join(dirpath, n)
            if not re.search(r"call.?assistant", path[len(upper):], re.I):
                continue
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                continue  # an overlay whiteout: something removed
            found.append("/" + os.path.relpath(path, upper))
    return sorted(found)


def main():
    op = Operator()
    steps = [op.install, op.service_enabled_and_started, op.bundled_modules_active, op.admin_group_and_socket,
             op.group_member_may_use_ctl, op.install_matrix_package, op.journal_has_module_lines,
             op.ctl_list, op.config_set, op.upgrade_keeps_modules, op.restart_keeps_modules,
             op.broken_config_reload, op.broken_config_restart, op.fixed_config_start, op.help_names_the_config,
             op.stop_start_keeps_ports, op.remove_matrix_package, op.remove, op.purge]
    for step in steps:
        t0 = time.monotonic()
        try:
            what = step()
        except (StepFailed, subprocess.TimeoutExpired) as e:
            print(f"not ok - {step.__name__}: {e}")
            print("--- journalctl -u call-assistant -u call-assistant-module@* (last 80 lines) ---")
            print(inside("journalctl", "--no-pager", "-n", "80", "-u", "call-assistant",
                         "-u", "call-assistant-module@*").stdout)
            sys.stdout.flush()
            return 1
        print(f"ok - {what} ({time.monotonic() - t0:.1f} s)")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
