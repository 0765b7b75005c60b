"""Test harness for the orchestrator's integration tests (run inside tests/sandbox/ca-sandbox).

It generates module folders, runs the real call-assistant daemon against the sandbox's
systemd, talks to its control socket and module endpoint over gRPC (grpcio), runs systemctl
and journalctl inside the sandbox, and waits for events with deadlines.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BUILD = os.environ["CA_BUILD_ROOT"]
SOURCE = os.environ["CA_SOURCE_ROOT"]
sys.path.insert(0, os.path.join(BUILD, "tests", "integration", "pystubs"))

import grpc  # noqa: E402
from callassistant.v1 import orchestrator_pb2 as opb  # noqa: E402
from callassistant.v1 import orchestrator_pb2_grpc as ogrpc  # noqa: E402

ORCHESTRATOR = os.path.join(BUILD, "call-assistant")
CTL = os.path.join(BUILD, "call-assistantctl")
FIXTURE = os.path.join(BUILD, "tests", "fixtures", "fixture-module")
SANDBOX_EXEC = os.environ.get("CA_SANDBOX_EXEC")
STATUS = {v.number: v.name.replace("MODULE_STATUS_", "")
          for v in opb.ModuleStatus.DESCRIPTOR.values}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inside(*argv, check=False, timeout=30):
    """Run a command inside the sandbox; returns CompletedProcess (text)."""
    return subprocess.run([SANDBOX_EXEC, "exec", *argv], capture_output=True, text=True,
                          timeout=timeout, check=check)


def wait_until(predicate, timeout, what):
    """Poll predicate (cheap, local) until true or the deadline; raise with what."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


class Events:
    """Every event of the orchestrator's WatchEvents, collected by a thread."""

    def __init__(self, stub, registered=False):
        """registered: return once the stream is registered (its first event, the modules'
        initial state, has come), so that no later change can be missed."""
        self.events, self.lock = [], threading.Lock()
        self.first = threading.Event()
        self.stream = stub.WatchEvents(opb.WatchEventsRequest(initial_state=registered), timeout=600)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if registered and not self.first.wait(10):
            self.close()
            raise AssertionError("WatchEvents sent nothing within 10 s")

    def _run(self):
        try:
            for ev in self.stream:
                with self.lock:
                    self.events.append(ev)
                self.first.set()
        except grpc.RpcError:
            pass

    def all(self):
        with self.lock:
            return list(self.events)

    def close(self):
        self.stream.cancel()


class Orchestrator:
    """One call-assistant process with its own modules dir, state dir and sockets."""

    def __init__(self, tag, modules, config_extra=""):
        # Module folders must be visible inside the container: the build tree is.
        self.root = tempfile.mkdtemp(prefix=f"it-{tag}-", dir=os.path.join(BUILD, "tests", "integration"))
        os.chmod(self.root, 0o755)  # modules run as an unprivileged (dynamic) user
        self.modules_dir = os.path.join(self.root, "modules")
        os.makedirs(self.modules_dir)
        for m in modules:
            self.add_module(**m)
        self.state_dir = os.path.join(self.root, "state")
        self.runtime_dir = os.path.join(os.environ["CA_SANDBOX_SHARE"], os.path.basename(self.root))
        self.control = os.path.join(self.root, "control.sock")
        # Modules reach the orchestrator on a unix socket in its (root-owned) runtime dir.
        self.listen = f"unix:{self.runtime_dir}/modules.sock"
        self.config = os.path.join(self.root, "config.yaml")
        with open(self.config, "w") as f:
            f.write("health:\n  interval_ms: 300\n  timeout_ms: 300\n  failure_threshold: 2\n"
                    "registration_timeout_ms: 3000\n"
                    "units:\n  restart_sec_ms: 100\n  start_limit_burst: 3\n  stop_timeout_sec: 2\n"
                    # the fixture program and the SDK library live in the build tree
                    f"  read_only_paths: [\"{BUILD}\", \"{SOURCE}\"]\n"
                    # the dashboard on a free port, with the pages of this tree and the
                    # sandbox's journal
                    + ("" if "\nweb:" in "\n" + config_extra else
                       "web:\n  listen: 127.0.0.1:0\n"
                       f"  assets_dir: \"{SOURCE}/services/web/assets\"\n"
                       f"  journal_directory: \"{os.environ.get('CA_SANDBOX_JOURNAL', '')}\"\n")
                    + config_extra)
        self.proc = None
        self.log_path = os.path.join(self.root, "orchestrator.log")
        self.channel = None

    def add_module(self, dir, name=None, mode="normal", deps=(), raw=None, command=None, network=None):
        path = os.path.join(self.modules_dir, dir)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "module.yaml"), "w") as f:
            if raw is not None:
                f.write(raw)
                return
            f.write(f'name: "{name or dir}"\nversion: "1.0"\ndescription: "test module {dir}"\n'
                    f'command: "{command or FIXTURE + " --mode=" + mode}"\n'
                    f"dependencies: [{', '.join(deps)}]\n")
            if network:
                # e.g. "{peers: lan, bind: [udp]}", as a module.yaml says it
                f.write(f"network: {network}\n")

    def start(self):
        self.log = open(self.log_path, "a")
        if os.path.exists(self.control):
            os.unlink(self.control)  # left by a killed orchestrator
        self.proc = subprocess.Popen(
            [ORCHESTRATOR, "--config", self.config, "--modules-dir", self.modules_dir,
             "--state-dir", self.state_dir, "--runtime-dir", self.runtime_dir,
             "--control-socket", self.control, "--listen", self.listen],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: os.path.exists(self.control) or self.proc.poll() is not None, 10,
                   "the control socket")
        if self.proc.poll() is not None:
            raise AssertionError(f"orchestrator exited with {self.proc.returncode}:\n{self.output()}")
        # A channel of its own: with gRPC's global subchannel pool, a new channel to the same
        # socket would share the subchannel of the killed orchestrator and wait out its
        # reconnect back-off (seconds, growing), though the new one answers at once.
        self.channel = grpc.insecure_channel(f"unix:{self.control}",
                                             options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            grpc.channel_ready_future(self.channel).result(timeout=10)
        except grpc.FutureTimeoutError:
            # Say where it is stuck: its threads' stacks.
            stacks = subprocess.run(["gdb", "-p", str(self.proc.pid), "-batch", "-ex", "thread apply all bt"],
                                    capture_output=True, text=True, timeout=60).stdout
            stacks += subprocess.run(f"ls -l /proc/{self.proc.pid}/fd; ls -l {self.control}; ss -xlp | grep -F "
                                     f"{os.path.basename(self.root)}", shell=True, capture_output=True,
                                     text=True).stdout
            raise AssertionError(f"the control socket does not answer:\n{self.output()}\n--- stacks ---\n"
                                 f"{stacks}") from None
        self.stub = ogrpc.OrchestratorServiceStub(self.channel)
        return self

    def output(self):
        if not os.path.exists(self.log_path):
            return ""  # never started by us (e.g. run as a unit inside the sandbox)
        with open(self.log_path) as f:
            return f.read()

    def modules(self):
        return {m.name: m for m in self.stub.ListModules(opb.ListModulesRequest(), timeout=5).modules}

    def module(self, name):
        return self.stub.GetModule(opb.GetModuleRequest(name=name), timeout=5)

    def wait_state(self, name, state, timeout=15):
        """Wait for a module's state through the event stream (WatchEvents), with a deadline."""
        events = self.stub.WatchEvents(opb.WatchEventsRequest(module=name, initial_state=True),
                                       timeout=timeout)
        try:
            for ev in events:
                if STATUS[ev.module_info.status] == state:
                    return ev.module_info
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        finally:
            events.cancel()
        info = self.module(name)
        raise AssertionError(f"{name}: state {STATUS[info.status]} ({info.status_message}), "
                             f"expected {state} within {timeout}s\n--- orchestrator log ---\n{self.output()}")

    def kill(self, sig):
        os.kill(self.proc.pid, sig)
        self.proc.wait(timeout=30)
        if self.channel:
            self.channel.close()
            self.channel = None

    def stop(self, timeout=30):
        if self.channel:
            self.channel.close()
            self.channel = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("orchestrator did not exit after SIGTERM\n" + self.output())
        return self.proc.returncode if self.proc else None

    def cleanup(self):
        try:
            self.stop()
            # Under the sanitizer build, any report from the daemon fails the test.
            out = self.output()
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if marker in out:
                    raise AssertionError(f"sanitizer report from the orchestrator:\n{out}")
        finally:
            # Whatever the test left running: stop and forget the units of these modules.
            for d in os.listdir(self.modules_dir):
                unit = f"call-assistant-module@{d}.service"
                inside("systemctl", "stop", unit)
                inside("systemctl", "reset-failed", unit)
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.runtime_dir, ignore_errors=True)


def main():
    """Run the tests of the calling module; print 'N passed, N failed'."""
    import __main__
    suite = unittest.defaultTestLoader.loadTestsFromModule(__main__)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    sys.exit(0 if result.wasSuccessful() else 1)
