#!/usr/bin/python3
"""chromecast: Chromecast devices as call-assistant cast targets (Python, Debian's
python3-grpcio, python3-pychromecast and python3-zeroconf).

Every device of the configuration (by address) and, with discovery on, every device found over
mDNS is a cast_target entity (media_in "hls"). A flow that targets one casts the converter's
HLS stream with the Default Media Receiver (ConnectEntity), and stops it (DisconnectEntity);
ConfigureEntity sets the volume. Device status (idle, casting, busy with another app,
unavailable with the reason) is the entity's state; a device that goes away is marked
unavailable, reconnected to when it returns, and a flow it showed is reported ended.

Copy module_runtime.py to start another Python module; see docs/writing-a-module.md.
"""

import json
import logging
import sys
import threading
import time

import grpc

import cast_config
from cast_devices import CastError, DeviceManager
from module_runtime import (EnvironmentError_, HealthServicer, ModuleEnv, ModuleServer, OrchestratorClient,
                            setup_logging)
from callassistant.v1 import module_pb2, module_pb2_grpc, orchestrator_pb2
from grpc_health.v1 import health_pb2_grpc

log = logging.getLogger("chromecast")

NAME = "chromecast"
VERSION = "2.0.0"
ENTITY_TYPE = "cast_target"
PLAY_TIMEOUT_S = 15.0

# JSON Schema of the configuration: the orchestrator validates against it before it calls
# ApplyConfig; the module checks again (cast_config) and is the final judge.
CONFIG_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "devices": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "host"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
                    "host": {"type": "string", "minLength": 1, "maxLength": 253},
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 8009},
                },
            },
        },
        "discovery": {"type": "boolean", "default": False},
        "mdns_interfaces": {"type": "array", "items": {"type": "string", "maxLength": 64}},
        "retry_interval_ms": {"type": "integer", "minimum": 100, "maximum": 600000, "default": 5000},
    },
}
ENTITY_SCHEMA = {"type": "object", "additionalProperties": False,
                 "properties": {"volume": {"type": "number", "minimum": 0, "maximum": 1}}}


def pointer(path):
    """cast_config's "devices[1].port" as a JSON pointer, "/devices/1/port"."""
    out = path.replace("[", ".").replace("]", "")
    return "/" + "/".join(p for p in out.split(".") if p) if out else "/"


def refuse(context, errors):
    """INVALID_ARGUMENT listing every problem as "<json-pointer>: <message>; ..."."""
    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                  "; ".join(f"{pointer(e.path)}: {e.message}" for e in errors))


class ChromecastModule(module_pb2_grpc.ModuleServiceServicer):
    def __init__(self, env, orchestrator, health, server):
        self.env = env
        self.orchestrator = orchestrator
        self.health = health
        self.server = server
        self.lock = threading.Lock()  # grpcio and pychromecast call us from their threads
        self.config = None            # None until configured
        self.entities = {}            # id -> module_pb2.Entity (as last reported)
        self.entity_config = {}       # id -> the entity's configuration ({"volume": ...})
        self.state = module_pb2.MODULE_STATE_STARTING
        self.state_message = ""
        self.devices = DeviceManager(self.on_device)

    def set_state(self, state, message=""):
        self.state, self.state_message = state, message
        self.health.set_all(HealthServicer.NOT_SERVING if state == module_pb2.MODULE_STATE_ERROR
                            else HealthServicer.SERVING)
        self.orchestrator.report_state(state, message)

    # -- devices -> entities and flow ends ------------------------------------------------

    def on_device(self, device, entity_id, ended):
        kind = None
        with self.lock:
            old = self.entities.get(entity_id)
            if device is None:
                if old is not None:
                    del self.entities[entity_id]
                    self.entity_config.pop(entity_id, None)
                    kind, entity = orchestrator_pb2.Event.KIND_ENTITY_REMOVED, old
            else:
                entity = module_pb2.Entity(
                    id=entity_id, type=ENTITY_TYPE, name=device.friendly_name or entity_id,
                    config_json=json.dumps(self.entity_config.get(entity_id, {})),
                    state=device.state(), attributes=device.attributes())
                if old is None or old != entity:
                    self.entities[entity_id] = entity
                    kind = (orchestrator_pb2.Event.KIND_ENTITY_ADDED if old is None
                            else orchestrator_pb2.Event.KIND_ENTITY_CHANGED)
        if kind is not None:
            self.orchestrator.report_event(orchestrator_pb2.Event(
                kind=kind, module=self.env.module_id, timestamp_usec=int(time.time() * 1e6), entity=entity))
        if ended:
            flow_id, eid, reason = ended
            log.info("flow %s on %s ended: %s", flow_id, eid, reason)
            self.orchestrator.report_event(orchestrator_pb2.Event(
                kind=orchestrator_pb2.Event.KIND_FLOW_ENDED, module=self.env.module_id,
                timestamp_usec=int(time.time() * 1e6), flow_id=flow_id,
                entity=module_pb2.Entity(id=eid, type=ENTITY_TYPE), reason=reason))

    # -- ModuleService --------------------------------------------------------------------

    def RegisterModule(self, request, context):
        with self.lock:
            return module_pb2.RegisterModuleResponse(
                name=NAME, version=VERSION, description="Chromecast devices as cast targets",
                entity_types=[module_pb2.EntityType(
                    name=ENTITY_TYPE, description="A Chromecast that shows an HLS stream (Default Media Receiver)",
                    capabilities=["cast", "volume"], config_schema=json.dumps(ENTITY_SCHEMA),
                    media_in=["hls"])],
                config_schema=json.dumps(CONFIG_SCHEMA), config_required=True,
                state=self.state, state_message=self.state_message)

    def ApplyConfig(self, request, context):
        try:
            raw = json.loads(request.config_json or "{}")
        except json.JSONDecodeError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"/: not JSON ({e.msg})")
        config, errors = cast_config.validate_module_config(raw)
        if errors:
            refuse(context, errors)  # the previous configuration stays in force
        try:
            self.devices.apply(config)
        except OSError as e:  # zeroconf cannot bind the interfaces
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"/mdns_interfaces: cannot start mDNS: {e}")
        with self.lock:
            self.config = config
        log.info("configured: %d device(s), discovery %s", len(config["devices"]),
                 "on" if config["discovery"] else "off")
        if self.state != module_pb2.MODULE_STATE_READY:
            self.set_state(module_pb2.MODULE_STATE_READY)
        return module_pb2.ApplyConfigResponse(state=self.state)

    def _require_ready(self, context):
        if self.state != module_pb2.MODULE_STATE_READY:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "module is not READY (configure it first)")

    def _device(self, entity_id, context):
        device = self.devices.get(entity_id)
        if device is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no entity {entity_id!r}")
        return device

    def CreateEntity(self, request, context):
        self._require_ready(context)
        if request.type != ENTITY_TYPE:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown entity type {request.type!r}")
        context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                      "cast_target entities come from the configuration (devices) and mDNS discovery")

    def ConfigureEntity(self, request, context):
        self._require_ready(context)
        device = self._device(request.id, context)
        try:
            raw = json.loads(request.config_json or "{}")
        except json.JSONDecodeError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"/: not JSON ({e.msg})")
        config, errors = cast_config.validate_entity_config(raw)
        if errors:
            refuse(context, errors)
        if "volume" in config:
            try:
                device.set_volume(config["volume"])
            except CastError as e:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        with self.lock:
            self.entity_config[request.id] = config
        self.on_device(device, request.id, None)
        with self.lock:
            return self.entities[request.id]

    def DestroyEntity(self, request, context):
        self._require_ready(context)
        self._device(request.id, context)
        context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                      "cast_target entities are removed through the configuration (devices, discovery)")

    def ListEntities(self, request, context):
        with self.lock:
            return module_pb2.ListEntitiesResponse(
                entities=[e for e in self.entities.values() if not request.type or e.type == request.type])

    def ConnectEntity(self, request, context):
        self._require_ready(context)
        device = self._device(request.id, context)
        if not request.flow_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "flow_id: required")
        if request.output_media:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"output_media: a cast_target is a target and gives no media (asked for "
                          f"{request.output_media!r})")
        link = request.input
        if link.media != "hls" or not link.url.startswith(("http://", "https://")) or len(link.url) > 8192:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          'input: a cast_target takes an HLS stream (media "hls" with an http(s) URL)')
        # Another flow on the same device is replaced: a device shows one stream.
        current = device.flow_id
        if current is not None and current != request.flow_id:
            device.stop_flow(current)
            self.on_device(device, device.entity_id, (current, device.entity_id,
                                                      f"replaced by flow {request.flow_id}"))
        try:
            device.play(request.flow_id, link.url, PLAY_TIMEOUT_S)
        except CastError as e:
            context.abort(grpc.StatusCode.UNAVAILABLE if e.unavailable else grpc.StatusCode.FAILED_PRECONDITION,
                          str(e))
        with self.lock:
            entity = self.entities.get(request.id)
        return module_pb2.ConnectEntityResponse(entity=entity)

    def DisconnectEntity(self, request, context):
        device = self._device(request.id, context)
        if device.stop_flow(request.flow_id):
            log.info("stopped casting flow %s on %s", request.flow_id, request.id)
        return module_pb2.DisconnectEntityResponse()

    def Shutdown(self, request, context):
        log.info("shutdown requested by the orchestrator")
        self.server.request_stop()
        return module_pb2.ShutdownResponse()


def main():
    setup_logging(logging.DEBUG if "--debug" in sys.argv else logging.INFO)
    if "--debug" not in sys.argv:
        logging.getLogger("pychromecast").setLevel(logging.WARNING)
        logging.getLogger("zeroconf").setLevel(logging.WARNING)
    try:
        env = ModuleEnv.from_environ(default_module_id=NAME)
    except EnvironmentError_ as e:
        log.error("%s", e)
        return 2
    if env.token is None:
        log.warning("no module token ($CALL_ASSISTANT_TOKEN_FILE or $CREDENTIALS_DIRECTORY/module-token): "
                    "every ModuleService call is refused")
    server = ModuleServer(env.port, env.token)
    health = HealthServicer(services=("", "callassistant.v1.ModuleService"))
    orchestrator = OrchestratorClient(env)
    module = ChromecastModule(env, orchestrator, health, server)
    module_pb2_grpc.add_ModuleServiceServicer_to_server(module, server.server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server.server)
    server.install_signal_handlers()
    try:
        server.start()
    except OSError as e:
        log.error("%s", e)
        return 1
    module.set_state(module_pb2.MODULE_STATE_WAITING_FOR_CONFIG, "waiting for the device list")
    server.wait()
    module.devices.close()
    orchestrator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
