"""Helpers for the cross-language tests: free ports, module processes that are
always reaped, readiness with a deadline, and a runner with meson's exit codes.

Environment (set by tests/xlang/meson.build):
  CA_BUILD_ROOT   the meson build tree
  XLANG_STUBS     folder holding the generated callassistant/ and grpc_health/
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

EXIT_SKIP = 77  # meson: the test was skipped

BUILD_ROOT = os.environ.get("CA_BUILD_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))

_stubs = os.environ.get("XLANG_STUBS") or os.path.join(BUILD_ROOT, "tests", "fixtures")
if _stubs not in sys.path:
    sys.path.insert(0, _stubs)

import grpc  # noqa: E402  (after sys.path is set up)


def free_port():
    """A port nobody listens on right now: bind port 0 and let the kernel
    choose.  The tiny race until the module binds it is acceptable in tests;
    the module refuses to share a port (SO_REUSEPORT off), so a clash fails
    loudly instead of silently."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOKEN_KEY = "x-call-assistant-module-token"


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Adds the module's token to every call, as the orchestrator does."""

    def __init__(self, token):
        self.token = token

    def intercept_unary_unary(self, continuation, details, request):
        md = list(details.metadata or []) + [(TOKEN_KEY, self.token)]
        details = details._replace(metadata=md) if hasattr(details, "_replace") else _Details(details, md)
        return continuation(details, request)


class _Details(grpc.ClientCallDetails):
    def __init__(self, d, metadata):
        self.method, self.timeout, self.metadata = d.method, d.timeout, metadata
        self.credentials = d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)


def with_token(channel, token):
    """A channel that sends the module token with every unary call."""
    return grpc.intercept_channel(channel, _TokenInterceptor(token))


class ModuleProcess:
    """A module started as a child process; stop() always reaps it (by pid).

    It gets a token ($CALL_ASSISTANT_TOKEN_FILE, a private temporary file) like a module
    the orchestrator starts; self.token is the value to send.
    Output goes to a temporary file, printed on failure to help debugging."""

    def __init__(self, argv, cwd, env_extra=None, module_id="xlang-test"):
        self.port = free_port()
        self.token = os.urandom(16).hex()
        self._token_dir = tempfile.TemporaryDirectory()
        token_file = os.path.join(self._token_dir.name, "module-token")
        with open(os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(self.token)
        env = dict(os.environ)
        for k in ("CALL_ASSISTANT_ORCHESTRATOR", "CREDENTIALS_DIRECTORY"):
            env.pop(k, None)
        env.update({"GRPC_PORT": str(self.port),
                    "CALL_ASSISTANT_MODULE_ID": module_id,
                    "CALL_ASSISTANT_TOKEN_FILE": token_file,
                    "PYTHONDONTWRITEBYTECODE": "1"})
        env.update(env_extra or {})
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.target = f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout=15.0):
        """Wait until the gRPC port answers, failing early if the process
        dies.  Returns a connected channel."""
        deadline = time.monotonic() + timeout
        channel = grpc.insecure_channel(self.target)
        while True:
            if self.proc.poll() is not None:
                channel.close()
                raise RuntimeError(f"module exited with {self.proc.returncode} before "
                                   f"listening:\n{self.output()}")
            left = deadline - time.monotonic()
            if left <= 0:
                channel.close()
                raise TimeoutError(f"module not listening on {self.target} after "
                                   f"{timeout}s:\n{self.output()}")
            try:
                grpc.channel_ready_future(channel).result(timeout=min(0.5, left))
                return channel
            except grpc.FutureTimeoutError:
                continue

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, grace=5.0):
        """SIGTERM, then SIGKILL after grace seconds.  Returns the exit code
        (negative: killed by that signal)."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._token_dir.cleanup()
        return self.proc.returncode


def run_tests(module_name):
    """Run a module's unittest cases; print "N passed, N failed" last and
    exit non-zero on failure."""
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[module_name])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    if failed:
        sys.exit(1)
    if result.testsRun and skipped == result.testsRun:
        sys.exit(EXIT_SKIP)
    sys.exit(0)


def skip_whole_test(reason):
    print(f"SKIP: {reason}")
    sys.exit(EXIT_SKIP)
