"""A network namespace for simulated cameras, made by the test itself: a veth pair whose
host end (198.18.213.1/24, in the host's namespace that the sandbox shares) faces the
cameras' end (198.18.213.2.., inside the namespace). WS-Discovery multicast is sent only
there (the module's interface setting names the host end; TTL 1).

The namespace lives as long as a holder process (unshare --net sleep); cameras are run
inside it with nsenter, so they can be killed and started again. stop() ends every process
it started, by pid, and the veth pair goes with the namespace."""

import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("CA_SOURCE_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
DOUBLE = os.path.join(SOURCE, "tests", "doubles", "onvif_camera_double.py")
SUBNET = "198.18.213"
PYTHON = "/usr/bin/python3"


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


class CameraNet:
    def __init__(self, n_addresses=6):
        self.holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"],
                                       stdin=subprocess.DEVNULL)
        self.pid = self.holder.pid
        self.cameras = []
        self.host_if = f"cah{self.pid % 1000000}"
        mine = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self.pid}/ns/net") == mine:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the camera namespace did not come up")
            time.sleep(0.01)
        try:
            run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "cam0", "netns", str(self.pid))
            run("ip", "addr", "add", f"{SUBNET}.1/24", "dev", self.host_if)
            run("ip", "link", "set", self.host_if, "up")
            self.inside("ip", "link", "set", "lo", "up")
            for i in range(2, 2 + n_addresses):
                self.inside("ip", "addr", "add", f"{SUBNET}.{i}/24", "dev", "cam0")
            self.inside("ip", "link", "set", "cam0", "up")
        except Exception:
            self.stop()
            raise

    def inside(self, *cmd):
        return run("nsenter", "-t", str(self.pid), "-n", "--", *cmd)

    def camera(self, host, *args, wait=True):
        """Start a camera double on 198.18.213.<host>; returns its Popen (READY waited for)."""
        p = subprocess.Popen(["nsenter", "-t", str(self.pid), "-n", "--", PYTHON, DOUBLE,
                              "--ip", f"{SUBNET}.{host}", *args],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        self.cameras.append(p)
        if wait:
            line = p.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"camera double on .{host} did not start (exit {p.poll()})")
        return p

    def kill(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

    def stop(self):
        for p in self.cameras:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.cameras:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait()
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
