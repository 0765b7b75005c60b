#!/usr/bin/python3
"""Cross-language test: a Python grpcio client calls every RPC of the C SDK example module
(docs/examples/camera), including the standard health service, and checks the error codes."""

import json
import os
import sys
import unittest

from xlang_util import BUILD_ROOT, ModuleProcess, run_tests, with_token

import grpc  # noqa: E402
from callassistant.v1 import module_pb2 as mpb, module_pb2_grpc as mgrpc  # noqa: E402
from grpc_health.v1 import health_pb2 as hpb, health_pb2_grpc as hgrpc  # noqa: E402

CAMERA_DIR = os.path.join(BUILD_ROOT, "docs", "examples", "camera")


class PythonCallsC(unittest.TestCase):
    def setUp(self):
        self.mod = ModuleProcess([os.path.join(CAMERA_DIR, "camera-module")], cwd=CAMERA_DIR)
        self.addCleanup(self.mod.stop)
        self.raw_channel = self.mod.wait_ready()
        self.addCleanup(self.raw_channel.close)
        self.channel = with_token(self.raw_channel, self.mod.token)
        self.stub = mgrpc.ModuleServiceStub(self.channel)

    def code(self, fn):
        with self.assertRaises(grpc.RpcError) as e:
            fn()
        return e.exception.code(), e.exception.details()

    def test_every_rpc(self):
        s = self.stub
        reg = s.RegisterModule(mpb.RegisterModuleRequest(module_id="camera", protocol_version="v1"), timeout=5)
        self.assertEqual(reg.name, "camera")
        self.assertEqual(reg.state, mpb.MODULE_STATE_READY)
        self.assertFalse(reg.config_required)
        self.assertEqual([t.name for t in reg.entity_types], ["video_source"])
        self.assertIn("rtsp", reg.entity_types[0].capabilities)
        self.assertEqual(json.loads(reg.config_schema)["type"], "object")

        health = hgrpc.HealthStub(self.channel)
        self.assertEqual(health.Check(hpb.HealthCheckRequest(service=""), timeout=5).status,
                         hpb.HealthCheckResponse.SERVING)
        self.assertEqual(self.code(lambda: health.Check(hpb.HealthCheckRequest(service="nope"), timeout=5))[0],
                         grpc.StatusCode.NOT_FOUND)

        code, details = self.code(lambda: s.ApplyConfig(
            mpb.ApplyConfigRequest(config_json='{"default_transport": "carrier-pigeon"}'), timeout=5))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("/default_transport:", details)
        self.assertEqual(s.ApplyConfig(mpb.ApplyConfigRequest(config_json='{"default_transport": "udp"}'),
                                       timeout=5).state, mpb.MODULE_STATE_READY)

        code, details = self.code(lambda: s.CreateEntity(mpb.CreateEntityRequest(
            type="video_source", name="door", config_json='{"url": "http://x"}'), timeout=5))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("/url:", details)
        self.assertEqual(self.code(lambda: s.CreateEntity(mpb.CreateEntityRequest(type="toaster"), timeout=5))[0],
                         grpc.StatusCode.NOT_FOUND)
        e = s.CreateEntity(mpb.CreateEntityRequest(type="video_source", name="door",
                                                   config_json='{"url": "rtsp://192.0.2.1/stream"}'), timeout=5)
        self.assertEqual(e.type, "video_source")
        self.assertEqual(e.attributes["stream_url"], "rtsp://192.0.2.1/stream")
        self.assertEqual(e.attributes["transport"], "udp")  # the module's configured default

        e2 = s.ConfigureEntity(mpb.ConfigureEntityRequest(
            id=e.id, config_json='{"url": "rtsp://192.0.2.2/s", "transport": "tcp"}'), timeout=5)
        self.assertEqual(e2.attributes["stream_url"], "rtsp://192.0.2.2/s")
        self.assertEqual(self.code(lambda: s.ConfigureEntity(mpb.ConfigureEntityRequest(id="nope"), timeout=5))[0],
                         grpc.StatusCode.NOT_FOUND)

        listed = s.ListEntities(mpb.ListEntitiesRequest(), timeout=5)
        self.assertEqual([x.id for x in listed.entities], [e.id])
        self.assertEqual(len(s.ListEntities(mpb.ListEntitiesRequest(type="other"), timeout=5).entities), 0)
        s.DestroyEntity(mpb.DestroyEntityRequest(id=e.id), timeout=5)
        self.assertEqual(self.code(lambda: s.DestroyEntity(mpb.DestroyEntityRequest(id=e.id), timeout=5))[0],
                         grpc.StatusCode.NOT_FOUND)
        self.assertEqual(len(s.ListEntities(mpb.ListEntitiesRequest(), timeout=5).entities), 0)

        # Only the orchestrator (who has the module's token) may call; health checks stay open.
        bare = mgrpc.ModuleServiceStub(self.raw_channel)
        code, details = self.code(lambda: bare.ListEntities(mpb.ListEntitiesRequest(), timeout=5))
        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)
        code, details = self.code(lambda: bare.Shutdown(mpb.ShutdownRequest(), timeout=5,
                                                        metadata=[("x-call-assistant-module-token", "0" * 32)]))
        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(hgrpc.HealthStub(self.raw_channel).Check(hpb.HealthCheckRequest(), timeout=5).status,
                         hpb.HealthCheckResponse.SERVING)

        s.Shutdown(mpb.ShutdownRequest(deadline_ms=2000), timeout=5)
        self.assertEqual(self.mod.wait_exit(10), 0)  # a clean exit after Shutdown


if __name__ == "__main__":
    run_tests(__name__)
