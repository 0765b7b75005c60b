"""Reusable plumbing for a call-assistant module written in Python (grpcio).

Nothing in here knows about Chromecasts: copy this file into a new module and
write only the ModuleService part (see chromecast_module.py).  It provides:

  * ModuleEnv.from_environ()  the environment contract the orchestrator sets
                              (GRPC_PORT, CALL_ASSISTANT_MODULE_ID,
                              CALL_ASSISTANT_ORCHESTRATOR, CREDENTIALS_DIRECTORY)
  * setup_logging()           stderr logging that journald tags and levels
  * HealthServicer            the standard grpc.health.v1.Health service
  * OrchestratorClient        ReportState/ReportEvent calls (entity events, flow
                              signals and ends), with the module token sent as
                              metadata on every call
  * ModuleServer              a grpcio server on 127.0.0.1:$GRPC_PORT that
                              refuses ModuleService calls without the module's
                              token and stops gracefully on SIGTERM, SIGINT or
                              request

The generated stubs (callassistant.v1, grpc_health.v1) are built by meson into
this folder; see docs/writing-a-module.md.
"""

import hmac
import logging
import os
import signal
import sys
import threading
from concurrent import futures

import grpc

from callassistant.v1 import module_pb2
from callassistant.v1 import orchestrator_pb2
from callassistant.v1 import orchestrator_pb2_grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

log = logging.getLogger("module")

TOKEN_METADATA_KEY = "x-call-assistant-module-token"
TOKEN_CREDENTIAL_NAME = "module-token"


class FlowRequestRefused(Exception):
    """The orchestrator refused a flow request: code is the grpc.StatusCode, details its reason."""

    def __init__(self, code, details):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class EnvironmentError_(Exception):
    """The environment the orchestrator gave us is unusable."""


# --------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------

class _JournalPrefixFormatter(logging.Formatter):
    """Prefix each line with its syslog priority ("<3>error").  journald reads
    the prefix from a service's stderr and files the line at that level."""

    _PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                 logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record):
        prio = self._PRIORITY.get(record.levelno, 6)
        return "".join(f"<{prio}>{line}\n" for line in
                       super().format(record).splitlines()).rstrip("\n")


def setup_logging(level=logging.INFO):
    """Log to stderr.  The orchestrator (journald, when run as a systemd unit)
    tags every line with the module name and adds timestamps, so we add
    neither; a terminal gets a plain "LEVEL: message" line instead."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalPrefixFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# --------------------------------------------------------------------------
# Environment contract
# --------------------------------------------------------------------------

class ModuleEnv:
    """What the orchestrator tells a module through its environment."""

    def __init__(self, port, module_id, orchestrator, token):
        self.port = port                  # int: listen on 127.0.0.1:port
        self.module_id = module_id        # str: our id in the orchestrator
        self.orchestrator = orchestrator  # "host:port" or None (standalone)
        self.token = token                # str or None (standalone)

    @classmethod
    def from_environ(cls, default_module_id, environ=os.environ):
        raw_port = environ.get("GRPC_PORT", "")
        try:
            port = int(raw_port)
        except ValueError:
            raise EnvironmentError_(f"GRPC_PORT must be a port number, got {raw_port!r}") from None
        if not 1 <= port <= 65535:
            raise EnvironmentError_(f"GRPC_PORT out of range: {port}")

        module_id = environ.get("CALL_ASSISTANT_MODULE_ID") or default_module_id
        orchestrator = environ.get("CALL_ASSISTANT_ORCHESTRATOR") or None
        token = cls._read_token(environ)

        if orchestrator and token is None:
            log.warning("no %s credential: running standalone, no state reports",
                        TOKEN_CREDENTIAL_NAME)
            orchestrator = None
        return cls(port, module_id, orchestrator, token)

    @staticmethod
    def _read_token(environ):
        """The module's secret: the file $CALL_ASSISTANT_TOKEN_FILE, else
        $CREDENTIALS_DIRECTORY/module-token (systemd's LoadCredential=); never
        the environment itself, which other local users can read."""
        path = environ.get("CALL_ASSISTANT_TOKEN_FILE")
        if not path:
            creddir = environ.get("CREDENTIALS_DIRECTORY")
            if not creddir:
                return None
            path = os.path.join(creddir, TOKEN_CREDENTIAL_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("cannot read %s: %s, ignoring", path, e)
            return None
        return token or None


def token_matches(expected, metadata):
    """Constant-time check of the x-call-assistant-module-token metadata."""
    if not expected:
        return False
    got = [v for k, v in (metadata or ()) if k == TOKEN_METADATA_KEY]
    if len(got) != 1 or not isinstance(got[0], str):
        return False
    return hmac.compare_digest(got[0].encode(), expected.encode())


class TokenInterceptor(grpc.ServerInterceptor):
    """Only the orchestrator may call a module: every ModuleService call must carry the
    module's own token (health checks need none: they say nothing secret)."""

    PROTECTED = "/callassistant.v1.ModuleService/"

    def __init__(self, token):
        self._token = token

        def deny(_request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          f"missing or wrong {TOKEN_METADATA_KEY}" if token
                          else "this module has no token: it accepts no calls")
        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(self.PROTECTED) and \
                not token_matches(self._token, handler_call_details.invocation_metadata):
            return self._deny
        return continuation(handler_call_details)


# --------------------------------------------------------------------------
# grpc.health.v1.Health
# --------------------------------------------------------------------------

class HealthServicer(health_pb2_grpc.HealthServicer):
    """The standard health service.  Status "" is the whole server; a module
    may also publish per-service statuses ("callassistant.v1.ModuleService")."""

    SERVING = health_pb2.HealthCheckResponse.SERVING
    NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
    SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

    def __init__(self, services=("",)):
        self._cond = threading.Condition()
        self._status = {name: self.NOT_SERVING for name in services}

    def set(self, service, status):
        with self._cond:
            self._status[service] = status
            self._cond.notify_all()

    def set_all(self, status):
        with self._cond:
            for name in self._status:
                self._status[name] = status
            self._cond.notify_all()

    def Check(self, request, context):
        with self._cond:
            status = self._status.get(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    def Watch(self, request, context):
        # Send the current status, then every change, until the client leaves
        # or the server stops.  Unknown services get SERVICE_UNKNOWN (spec).
        last = None
        while context.is_active():
            with self._cond:
                status = self._status.get(request.service, self.SERVICE_UNKNOWN)
                if status == last:
                    self._cond.wait(timeout=1.0)
                    continue
            last = status
            yield health_pb2.HealthCheckResponse(status=status)


# --------------------------------------------------------------------------
# Talking to the orchestrator
# --------------------------------------------------------------------------

class OrchestratorClient:
    """Calls OrchestratorService on the orchestrator's module-facing endpoint.

    Reports are best effort: a module must keep serving when the orchestrator
    is briefly away (it re-reads our state with RegisterModule and health
    checks), so failures are logged and swallowed."""

    def __init__(self, env, timeout=5.0):
        self._env = env
        self._timeout = timeout
        self._channel = None
        self._stub = None
        if env.orchestrator:
            self._channel = grpc.insecure_channel(env.orchestrator)
            self._stub = orchestrator_pb2_grpc.OrchestratorServiceStub(self._channel)

    @property
    def connected(self):
        return self._stub is not None

    def _metadata(self):
        return ((TOKEN_METADATA_KEY, self._env.token),)

    def _call(self, method, request):
        if self._stub is None:
            return None
        try:
            return getattr(self._stub, method)(request, timeout=self._timeout,
                                               metadata=self._metadata())
        except grpc.RpcError as e:
            log.warning("%s to %s failed: %s: %s, ignoring", method,
                        self._env.orchestrator, e.code().name, e.details())
            return None

    def report_state(self, state, message=""):
        """state: a module_pb2.ModuleState value."""
        log.info("state %s%s", module_pb2.ModuleState.Name(state),
                 f" ({message})" if message else "")
        # No module id in the request: the token says who we are.
        return self._call("ReportState", orchestrator_pb2.ReportStateRequest(
            state=state, message=message))

    def report_event(self, event):
        """event: an orchestrator_pb2.Event (entity events, KIND_FLOW_SIGNAL, KIND_FLOW_ENDED)."""
        return self._call("ReportEvent", event)

    def request_flow(self, entity_id, source_module, source_entity, request_id, offer_sdp):
        """KIND_FLOW_REQUEST (docs/protocol.md, "Flows a module requests"): a flow from
        source_module/source_entity into our entity entity_id, answering a remote party's
        WebRTC offer. The converter's answer comes back as ConnectEntity with request_id.
        Returns the new flow's id; raises FlowRequestRefused with the orchestrator's reason,
        or ConnectionError when there is no orchestrator to ask. Not best effort: the caller
        must know whether its call will be answered."""
        if self._stub is None:
            raise ConnectionError("no orchestrator to ask for a flow")
        event = orchestrator_pb2.Event(
            kind=orchestrator_pb2.Event.KIND_FLOW_REQUEST, module=self._env.module_id,
            entity=module_pb2.Entity(id=entity_id),
            flow_source=orchestrator_pb2.EntityRef(module=source_module, id=source_entity),
            request_id=request_id,
            link=module_pb2.MediaLink(media="webrtc", sdp_type="offer", sdp=offer_sdp))
        try:
            return self._stub.ReportEvent(event, timeout=20.0, metadata=self._metadata()).flow_id
        except grpc.RpcError as e:
            raise FlowRequestRefused(e.code(), e.details()) from None

    def close(self):
        if self._channel is not None:
            self._channel.close()
            self._channel = self._stub = None


# --------------------------------------------------------------------------
# Server lifecycle
# --------------------------------------------------------------------------

class ModuleServer:
    """A grpcio server on 127.0.0.1:PORT with a graceful stop.

    stop is requested by SIGTERM/SIGINT (systemd's stop), or by
    request_stop() (the Shutdown RPC); wait() returns once it has stopped."""

    def __init__(self, port, token, max_workers=8, grace=5.0):
        self.port = port
        self.grace = grace
        self._stop_requested = threading.Event()
        # SO_REUSEPORT is grpcio's default: without turning it off, a second
        # process could bind the same port and silently share our traffic.
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                  interceptors=[TokenInterceptor(token)],
                                  options=[("grpc.so_reuseport", 0)])

    def start(self):
        address = f"127.0.0.1:{self.port}"
        try:
            bound = self.server.add_insecure_port(address)
        except RuntimeError as e:  # newer grpcio raises, older returns 0
            raise OSError(f"cannot listen on {address}: {e}") from None
        if bound == 0:
            raise OSError(f"cannot listen on {address} (port in use?)")
        self.server.start()
        log.info("listening on %s", address)

    def install_signal_handlers(self):
        def on_signal(signum, _frame):
            log.info("received %s, stopping", signal.Signals(signum).name)
            self.request_stop()
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def request_stop(self):
        self._stop_requested.set()

    @property
    def stopping(self):
        return self._stop_requested.is_set()

    def wait(self):
        """Block until a stop is requested, then stop with a grace period for
        in-flight calls (including the Shutdown call that asked for it)."""
        # Wake up now and then so signal handlers run promptly.
        while not self._stop_requested.wait(timeout=1.0):
            pass
        self.server.stop(self.grace).wait()
        log.info("stopped")
