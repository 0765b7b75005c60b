#!/usr/bin/python3
"""The orchestrator benchmark (run by bench/run inside the systemd sandbox).

In one run, for N = 10, 50, 100 (the C example module, docs/examples/camera):
  (a) time from starting call-assistant to N modules READY;
  (b) systemd's floor: the same N units (same properties) started straight through
      StartTransientUnit until each port answers (bench-floor);
and prints both and their ratio. Then, with 100 modules health-checked every second:
the orchestrator's RSS and CPU use, and the time from kill -9 of a module to the orchestrator
noticing it (an event on WatchEvents). Targets: ratio <= 1.5, RSS <= 10 MB, CPU <= 1% of a
core, crash noticed <= 50 ms.
"""

import atexit
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

BUILD = os.environ["CA_BUILD_ROOT"]
sys.path.insert(0, os.path.join(BUILD, "tests", "integration", "pystubs"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))

import grpc  # noqa: E402
from callassistant.v1 import orchestrator_pb2 as opb  # noqa: E402
from callassistant.v1 import orchestrator_pb2_grpc as ogrpc  # noqa: E402

CAMERA_DIR = os.path.join(BUILD, "docs", "examples", "camera")
CAMERA = os.path.join(CAMERA_DIR, "camera-module")
SANDBOX_EXEC = os.environ["CA_SANDBOX_EXEC"]
CREDENTIAL = os.path.join(os.environ["CA_SANDBOX_SHARE"], "bench-credential")
TICKS = os.sysconf("SC_CLK_TCK")


def inside(*argv):
    return subprocess.run([SANDBOX_EXEC, "exec", *argv], capture_output=True, text=True, timeout=120)


def floor(n):
    env = dict(os.environ)
    # Module units get their token on stdin (StandardInputFile=); so do these.
    env["BENCH_TOKEN"] = CREDENTIAL
    out = subprocess.run([os.path.join(BUILD, "bench", "bench-floor"), str(n), "52000", CAMERA, CAMERA_DIR, BUILD],
                         capture_output=True, text=True, timeout=300, env=env)
    if out.returncode != 0:
        raise SystemExit(f"bench-floor failed: {out.stderr}")
    # Let the stop jobs finish before the next measurement.
    wait_no_units("bench-floor-")
    return float(out.stdout.split("seconds=")[1])


def port_answers(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def supervisord(n, base=53000):
    """What people would use instead: supervisord (Debian's supervisor) starting the same N
    binaries, from its start until every port accepts a connection."""
    root = os.path.join(BUILD, "bench-supervisor")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    ports = []
    port = base
    conf = [f"[supervisord]\nnodaemon=true\nlogfile={root}/supervisord.log\npidfile={root}/supervisord.pid\n"]
    for i in range(n):
        while port_answers(port):
            port += 1
        ports.append(port)
        conf.append(f"[program:cam{i}]\ncommand={CAMERA}\ndirectory={CAMERA_DIR}\n"
                    f"environment=GRPC_PORT=\"{port}\"\nautostart=true\nstartsecs=0\n"
                    f"stdout_logfile=NONE\nstderr_logfile=NONE\n")
        port += 1
    with open(os.path.join(root, "supervisord.conf"), "w") as f:
        f.write("\n".join(conf))
    t0 = time.monotonic()
    proc = subprocess.Popen(["supervisord", "-c", os.path.join(root, "supervisord.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    atexit.register(lambda p=proc: p.poll() is None and p.kill())
    pending = set(ports)
    while pending:
        if time.monotonic() - t0 > 120 or proc.poll() is not None:
            raise SystemExit(f"supervisord: {len(pending)} ports never answered")
        pending = {p for p in pending if not port_answers(p)}
        time.sleep(0.002)
    t = time.monotonic() - t0
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    shutil.rmtree(root, ignore_errors=True)
    return t


def wait_no_units(prefix, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        units = inside("systemctl", "list-units", "--all", "--no-legend", "--plain", f"{prefix}*").stdout
        if not units.strip():
            return
        time.sleep(0.1)
    raise SystemExit(f"units {prefix}* did not go away")


def host_pid(sandbox_pid):
    """The host's pid of a process that has sandbox_pid in the sandbox's pid namespace."""
    ns = os.readlink(f"/proc/{os.environ['CA_SANDBOX_LEADER']}/ns/pid")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{d}/ns/pid") != ns:
                continue
            with open(f"/proc/{d}/status") as f:
                for line in f:
                    if line.startswith("NSpid:") and int(line.split()[-1]) == sandbox_pid:
                        return int(d)
        except (OSError, ValueError):
            continue
    raise SystemExit(f"no process with pid {sandbox_pid} in the sandbox")


class Orch:
    def __init__(self, n, health_ms):
        self.root = os.path.join(BUILD, "bench-tmp")
        shutil.rmtree(self.root, ignore_errors=True)
        modules = os.path.join(self.root, "modules")
        for i in range(n):
            d = os.path.join(modules, f"cam{i}")
            os.makedirs(d)
            with open(os.path.join(d, "module.yaml"), "w") as f:
                f.write(f'name: "cam{i}"\nversion: "1"\ndescription: "bench"\ncommand: "{CAMERA}"\n')
        os.chmod(self.root, 0o755)
        with open(os.path.join(self.root, "config.yaml"), "w") as f:
            f.write(f"health:\n  interval_ms: {health_ms}\n  timeout_ms: 500\n"
                    f"units:\n  read_only_paths: [\"{BUILD}\"]\n")
        self.control = os.path.join(self.root, "control.sock")
        self.n = n
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [os.path.join(BUILD, "call-assistant"), "--config", os.path.join(self.root, "config.yaml"),
             "--modules-dir", modules, "--state-dir", os.path.join(self.root, "state"),
             "--runtime-dir", os.path.join(os.environ["CA_SANDBOX_SHARE"], "bench"),
             "--control-socket", self.control],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        # If the benchmark fails half-way, its orchestrator must not outlive it.
        atexit.register(lambda p=self.proc: p.poll() is None and p.kill())
        while not os.path.exists(self.control):
            if self.proc.poll() is not None or time.monotonic() - self.t0 > 30:
                raise SystemExit("the orchestrator did not start")
            time.sleep(0.002)
        self.channel = grpc.insecure_channel(f"unix:{self.control}")
        self.stub = ogrpc.OrchestratorServiceStub(self.channel)

    def wait_all_ready(self):
        ready = set()
        events = self.stub.WatchEvents(opb.WatchEventsRequest(initial_state=True), timeout=300)
        for ev in events:
            if ev.kind == opb.Event.KIND_MODULE_CHANGED and ev.module_info.status == opb.MODULE_STATUS_READY:
                ready.add(ev.module)
                if len(ready) == self.n:
                    break
        events.cancel()
        return time.monotonic() - self.t0

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def memory_mb(self):
        """Resident memory from smaps_rollup: total, private (dirty or clean: this process's
        own), shared (pages of shared libraries also mapped by other processes), and PSS
        (shared pages divided among the processes mapping them)."""
        kb = {}
        with open(f"/proc/{self.proc.pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    kb[parts[0].rstrip(":")] = int(parts[1])
        return {"rss": kb["Rss"] / 1024, "pss": kb["Pss"] / 1024,
                "private": (kb["Private_Dirty"] + kb["Private_Clean"]) / 1024,
                "shared": (kb["Shared_Dirty"] + kb["Shared_Clean"]) / 1024}

    def crash_noticed_ms(self, name):
        info = self.stub.GetModule(opb.GetModuleRequest(name=name), timeout=5)
        pid = host_pid(info.main_pid)
        events = self.stub.WatchEvents(opb.WatchEventsRequest(module=name), timeout=30)
        # The stream is open once the server accepted it; give it a moment to be registered.
        time.sleep(0.2)
        t_kill = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        for ev in events:
            if ev.module_info.status != opb.MODULE_STATUS_READY or ev.module_info.main_pid != info.main_pid:
                noticed = time.monotonic()
                break
        events.cancel()
        return (noticed - t_kill) * 1000

    def stop(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=300)
        wait_no_units("call-assistant-module@cam")
        shutil.rmtree(self.root, ignore_errors=True)


def main():
    with open(CREDENTIAL, "w") as f:
        f.write("0" * 64)
    os.chmod(CREDENTIAL, 0o444)  # its folder is root-only; modules reopen /proc/self/fd/0
    print("call-assistant benchmark (C example module; orchestrator vs systemd's floor vs supervisord)")
    print("floor: the same units (same properties as module units: own dynamic user, token on stdin,")
    print("full hardening) started straight through StartTransientUnit until each port answers;")
    print("supervisord: Debian's supervisor starting the same binaries until each port answers.")
    print(f"{'N':>5} {'floor s':>9} {'supervisord s':>14} {'orchestrator s':>15} {'ratio':>7}")
    ratios, versus = {}, {}
    for n in (10, 50, 100):
        f = floor(n)
        sv = supervisord(n)
        o = Orch(n, health_ms=5000)
        t = o.wait_all_ready()
        o.stop()
        ratios[n] = t / f
        versus[n] = t / sv
        print(f"{n:>5} {f:>9.3f} {sv:>14.3f} {t:>15.3f} {t / f:>7.2f}", flush=True)

    # The memory baseline: the same orchestrator with one module.
    o = Orch(1, health_ms=1000)
    o.wait_all_ready()
    time.sleep(2)
    mem1 = o.memory_mb()
    o.stop()

    o = Orch(100, health_ms=1000)
    o.wait_all_ready()
    time.sleep(2)
    c0, w0 = o.cpu_seconds(), time.monotonic()
    time.sleep(10)
    cpu = (o.cpu_seconds() - c0) / (time.monotonic() - w0) * 100
    mem = o.memory_mb()
    rss = mem["rss"]
    threads = len(os.listdir(f"/proc/{o.proc.pid}/task"))
    crashes = []
    for i in range(5):
        crashes.append(o.crash_noticed_ms(f"cam{i}"))
    o.stop()
    print("orchestrator memory, health checks every second (MB; private = its own pages, shared = pages of")
    print("shared libraries, PSS = shared pages divided among the processes that map them):")
    print(f"{'modules':>9} {'RSS':>7} {'private':>8} {'shared':>7} {'PSS':>7}")
    for n, m in ((1, mem1), (100, mem)):
        print(f"{n:>9} {m['rss']:>7.1f} {m['private']:>8.1f} {m['shared']:>7.1f} {m['pss']:>7.1f}")
    per_module_kb = (mem['private'] - mem1['private']) * 1024 / 99
    print(f"each module adds {per_module_kb:.0f} kB private; "
          f"100 modules: {threads} threads, CPU {cpu:.2f}% of a core")
    print(f"kill -9 of a module to the orchestrator noticing: median {statistics.median(crashes):.1f} ms "
          f"(min {min(crashes):.1f}, max {max(crashes):.1f})")
    print("targets: ratio <= 1.2, faster than supervisord at N = 100, PSS <= 10 MB, <= 32 kB private per "
          "module, CPU <= 1%, crash noticed <= 50 ms")
    ok = (max(ratios.values()) <= 1.2 and versus[100] < 1 and mem["pss"] <= 10 and per_module_kb <= 32 and
          cpu <= 1 and statistics.median(crashes) <= 50)
    print("all targets met" if ok else "NOT all targets met")


if __name__ == "__main__":
    main()
