"""Test helpers for the chromecast module: a network namespace of the test's own with a veth
pair (10.77.0.1 the devices' side, 10.77.0.2 the module's side; mDNS never leaves it), a live
HLS stream (GStreamer test pattern, hlssink2) served over HTTP in it, Chromecast doubles
(tests/doubles/cast_device.py), the module as a process, an orchestrator endpoint that records
what the module reports (and checks its token), and waiting with a deadline.

Needs root (unshare --net); see enter_netns()."""

import functools
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

BUILD = os.environ["CA_BUILD_ROOT"]
SOURCE = os.environ["CA_SOURCE_ROOT"]
MODULE_DIR = os.path.join(BUILD, "modules", "chromecast")
sys.path.insert(0, MODULE_DIR)

from callassistant.v1 import module_pb2, module_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

DOUBLE = os.path.join(SOURCE, "tests", "doubles", "cast_device.py")
DEV_ADDR, MOD_ADDR = "10.77.0.1", "10.77.0.2"
TOKEN_KEY = "x-call-assistant-module-token"


def enter_netns():
    """Re-run this test program in a new network namespace (once), and set it up there."""
    if os.environ.get("CA_CAST_NETNS") != "1":
        if os.geteuid() != 0:
            print("1..0 # SKIP needs root for a network namespace")  # never silently: meson shows it
            sys.exit(77)
        env = dict(os.environ, CA_CAST_NETNS="1")
        os.execvpe("unshare", ["unshare", "--net", "--", sys.executable, *sys.argv], env)
    for cmd in (["ip", "link", "set", "lo", "up"],
                ["ip", "link", "add", "cadev", "type", "veth", "peer", "name", "camod"],
                ["ip", "addr", "add", f"{DEV_ADDR}/24", "dev", "cadev"],
                ["ip", "addr", "add", f"{MOD_ADDR}/24", "dev", "camod"],
                ["ip", "link", "set", "cadev", "up", "multicast", "on"],
                ["ip", "link", "set", "camod", "up", "multicast", "on"]):
        subprocess.run(cmd, check=True)


def wait_until(predicate, timeout, what):
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


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class HlsSource:
    """A live HLS stream of a GStreamer test pattern, served on MOD_ADDR (the converter's side)."""

    def __init__(self, host=MOD_ADDR):
        self.dir = tempfile.mkdtemp(prefix="ca-hls-")
        self.gst = subprocess.Popen(
            ["gst-launch-1.0", "-q", "videotestsrc", "is-live=true", "pattern=ball", "!",
             "video/x-raw,width=320,height=240,framerate=10/1", "!", "x264enc", "tune=zerolatency",
             "speed-preset=ultrafast", "key-int-max=10", "!", "h264parse", "!", "hlssink2",
             f"location={self.dir}/seg%05d.ts", f"playlist-location={self.dir}/live.m3u8",
             "target-duration=1", "max-files=6", "playlist-length=3"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        handler = functools.partial(_QuietHandler, directory=self.dir)
        self.httpd = http.server.ThreadingHTTPServer((host, 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://{host}:{self.httpd.server_address[1]}/live.m3u8"
        wait_until(lambda: os.path.exists(os.path.join(self.dir, "live.m3u8")) or self.gst.poll() is not None,
                   20, "the first HLS playlist")
        if self.gst.poll() is not None:
            raise AssertionError(f"gst-launch-1.0 failed: {self.gst.stderr.read().decode()}")

    def close(self):
        self.httpd.shutdown()
        self.gst.terminate()
        self.gst.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class CastDouble:
    """tests/doubles/cast_device.py as a process; state() reads its state file."""

    def __init__(self, name, uuid, port=8009, address=DEV_ADDR, mdns=True):
        self.args = [sys.executable, DOUBLE, "--address", address, "--port", str(port), "--name", name,
                     "--uuid", uuid]
        if not mdns:
            self.args.append("--no-mdns")
        self.dir = tempfile.mkdtemp(prefix="ca-castdev-")
        self.state_file = os.path.join(self.dir, "state.json")
        self.proc = None
        self.start()

    def start(self):
        if os.path.exists(self.state_file):
            os.unlink(self.state_file)
        self.log = open(os.path.join(self.dir, "log"), "a")
        self.proc = subprocess.Popen(self.args + ["--state-file", self.state_file], stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening"):
            raise AssertionError(f"cast double did not start: {self.output()}")

    def output(self):
        with open(os.path.join(self.dir, "log")) as f:
            return f.read()

    def state(self):
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError):
            return {}

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.log.close()

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc.stdout.close()
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Recorder(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """The module-facing half of OrchestratorService, recording reports (token checked)."""

    def __init__(self, token):
        self.token = token
        self.states, self.events = [], []
        self.unauthenticated = 0
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.address = f"127.0.0.1:{self.port}"

    def _check(self, context):
        if dict(context.invocation_metadata()).get(TOKEN_KEY) != self.token:
            with self.lock:
                self.unauthenticated += 1
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")

    def ReportState(self, request, context):
        self._check(context)
        with self.lock:
            self.states.append(request)
        return orchestrator_pb2.ReportStateResponse()

    def ReportEvent(self, request, context):
        self._check(context)
        with self.lock:
            self.events.append(request)
        return orchestrator_pb2.ReportEventResponse()

    def events_of(self, kind):
        with self.lock:
            return [e for e in self.events if e.kind == kind]

    def close(self):
        self.server.stop(0)


class ModuleProcess:
    """modules/chromecast (the build folder's copy) as a process, and a client with the token."""

    def __init__(self, token, orchestrator):
        self.dir = tempfile.mkdtemp(prefix="ca-castmod-")
        token_file = os.path.join(self.dir, "module-token")
        with open(token_file, "w") as f:
            f.write(token + "\n")
        self.port = free_port()
        env = dict(os.environ, GRPC_PORT=str(self.port), CALL_ASSISTANT_MODULE_ID="chromecast",
                   CALL_ASSISTANT_TOKEN_FILE=token_file, CALL_ASSISTANT_ORCHESTRATOR=orchestrator or "")
        env.pop("JOURNAL_STREAM", None)
        self.log_path = os.path.join(self.dir, "log")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(["/usr/bin/python3", "chromecast_module.py", "--debug"], cwd=MODULE_DIR,
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        grpc.channel_ready_future(self.channel).result(timeout=20)
        self.stub = module_pb2_grpc.ModuleServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.token = token

    def call(self, method, request, token=None, timeout=30):
        md = ((TOKEN_KEY, self.token if token is None else token),) if token != "" else ()
        return getattr(self.stub, method)(request, metadata=md, timeout=timeout)

    def entities(self):
        return {e.id: e for e in self.call("ListEntities", module_pb2.ListEntitiesRequest()).entities}

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def close(self):
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the module did not stop on SIGTERM\n" + self.output())
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


def health_check(mod):
    return mod.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
