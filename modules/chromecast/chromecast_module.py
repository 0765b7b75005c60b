#!/usr/bin/python3
"""chromecast: an example call-assistant module in Python (Debian's python3-grpcio).

It provides "cast_target" entities for the Chromecast devices listed in its configuration,
and stays WAITING_FOR_CONFIG until it has one. Talking to the devices themselves (casting a
WebRTC stream) is left out of this template; everything around it is real: configuration
validation with errors by field path, entity lifecycle, health, state reports to the
orchestrator, and a graceful stop on SIGTERM or the Shutdown RPC.

Copy this file and module_runtime.py to start a Python module; see docs/writing-a-module.md.
"""

import json
import logging
import sys
import threading

import grpc

import cast_config
from module_runtime import (EnvironmentError_, HealthServicer, ModuleEnv, ModuleServer, OrchestratorClient,
                            setup_logging)
from callassistant.v1 import module_pb2, module_pb2_grpc
from grpc_health.v1 import health_pb2_grpc

log = logging.getLogger("chromecast")

NAME = "chromecast"
VERSION = "1.0.0"
ENTITY_TYPE = "cast_target"

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
    },
}


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
        self.lock = threading.Lock()  # grpcio calls us from a thread pool
        self.config = None            # None until configured
        self.entities = {}            # id -> module_pb2.Entity
        self.next_id = 1
        self.state = module_pb2.MODULE_STATE_STARTING
        self.state_message = ""

    def set_state(self, state, message=""):
        self.state, self.state_message = state, message
        self.health.set_all(HealthServicer.NOT_SERVING if state == module_pb2.MODULE_STATE_ERROR
                            else HealthServicer.SERVING)
        self.orchestrator.report_state(state, message)

    # -- ModuleService --------------------------------------------------------------------

    def RegisterModule(self, request, context):
        with self.lock:
            return module_pb2.RegisterModuleResponse(
                name=NAME, version=VERSION, description="Chromecast devices as cast targets",
                entity_types=[module_pb2.EntityType(
                    name=ENTITY_TYPE, description="A Chromecast that can show a stream",
                    capabilities=["cast", "volume"],
                    config_schema=json.dumps({"type": "object", "required": ["device"],
                                              "properties": {"device": {"type": "string"},
                                                             "volume": {"type": "number", "minimum": 0,
                                                                        "maximum": 1}}}))],
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
        with self.lock:
            names = {d["name"] for d in config["devices"]}
            stale = [e.id for e in self.entities.values()
                     if json.loads(e.config_json)["device"] not in names]
            if stale:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"/devices: entities {', '.join(sorted(stale))} use devices this configuration "
                              "removes; destroy them first")
            self.config = config
            log.info("configured: %d device(s), discovery %s", len(config["devices"]),
                     "on" if config["discovery"] else "off")
            if self.state != module_pb2.MODULE_STATE_READY:
                self.set_state(module_pb2.MODULE_STATE_READY)
            return module_pb2.ApplyConfigResponse(state=self.state)

    def _entity_config(self, config_json, context):
        try:
            raw = json.loads(config_json or "{}")
        except json.JSONDecodeError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"/: not JSON ({e.msg})")
        names = {d["name"] for d in self.config["devices"]}
        config, errors = cast_config.validate_entity_config(raw, names)
        if errors:
            refuse(context, errors)
        return config

    def CreateEntity(self, request, context):
        with self.lock:
            if self.state != module_pb2.MODULE_STATE_READY:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "module is not READY (configure it first)")
            if request.type != ENTITY_TYPE:
                context.abort(grpc.StatusCode.NOT_FOUND, f"unknown entity type {request.type!r}")
            config = self._entity_config(request.config_json, context)
            device = next(d for d in self.config["devices"] if d["name"] == config["device"])
            entity = module_pb2.Entity(
                id=f"cast-{self.next_id}", type=ENTITY_TYPE, name=request.name or config["device"],
                config_json=json.dumps(config), state="idle",
                attributes={"host": device["host"], "port": str(device["port"])})
            self.next_id += 1
            self.entities[entity.id] = entity
            return entity

    def ConfigureEntity(self, request, context):
        with self.lock:
            entity = self.entities.get(request.id)
            if entity is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no entity {request.id!r}")
            config = self._entity_config(request.config_json, context)
            entity.config_json = json.dumps(config)
            return entity

    def DestroyEntity(self, request, context):
        with self.lock:
            if self.entities.pop(request.id, None) is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no entity {request.id!r}")
            return module_pb2.DestroyEntityResponse()

    def ListEntities(self, request, context):
        with self.lock:
            return module_pb2.ListEntitiesResponse(
                entities=[e for e in self.entities.values() if not request.type or e.type == request.type])

    def Shutdown(self, request, context):
        log.info("shutdown requested by the orchestrator")
        self.server.request_stop()
        return module_pb2.ShutdownResponse()


def main():
    setup_logging(logging.DEBUG if "--debug" in sys.argv else logging.INFO)
    try:
        env = ModuleEnv.from_environ(default_module_id=NAME)
    except EnvironmentError_ as e:
        log.error("%s", e)
        return 2
    server = ModuleServer(env.port)
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
    orchestrator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
