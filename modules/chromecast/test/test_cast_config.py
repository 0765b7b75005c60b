"""Unit tests of the chromecast module's configuration checks, the runtime's token check and
small helpers (python3 -m unittest; no network, no root)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.environ["CA_BUILD_ROOT"], "modules", "chromecast"))

import cast_config  # noqa: E402
from cast_devices import _safe_url, slug  # noqa: E402
from module_runtime import FlowRequestRefused, ModuleEnv, OrchestratorClient, token_matches  # noqa: E402


class ModuleConfig(unittest.TestCase):
    def test_good_and_defaults(self):
        cfg, errors = cast_config.validate_module_config({"devices": [{"name": "tv", "host": "tv.local"}]})
        self.assertEqual(errors, [])
        self.assertEqual(cfg, {"devices": [{"name": "tv", "host": "tv.local", "port": 8009}], "discovery": False,
                               "mdns_interfaces": [], "retry_interval_ms": 5000})

    def test_every_problem_by_path(self):
        _, errors = cast_config.validate_module_config({
            "devices": [{"name": "tv", "host": "a"}, {"name": "tv", "host": "300.1.1.1", "port": 0}, "x",
                        {"name": "tv", "host": "b"}],
            "discovery": "yes", "mdns_interfaces": ["eth0", "10.0.0.1"], "retry_interval_ms": 1.5, "prot": 1})
        self.assertEqual(sorted(str(e) for e in errors), sorted([
            "prot: unknown field", "devices[1].host: must be an IP address or a hostname",
            "devices[1].port: must be an integer in 1..65535", "devices[3].name: duplicate of devices[0].name",
            "devices[2]: must be an object", "discovery: must be true or false",
            "mdns_interfaces[0]: must be an IP address of a local interface",
            "retry_interval_ms: must be an integer in 100..600000"]))

    def test_entity_config(self):
        self.assertEqual(cast_config.validate_entity_config({"volume": 0.5}), ({"volume": 0.5}, []))
        self.assertEqual(cast_config.validate_entity_config({}), ({}, []))
        _, errors = cast_config.validate_entity_config({"volume": True, "device": "x"})
        self.assertEqual(sorted(str(e) for e in errors), ["device: unknown field", "volume: must be a number in 0.0..1.0"])


class Runtime(unittest.TestCase):
    def test_token_file_and_check(self):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t")
            with open(path, "w") as f:
                f.write("secret\n")
            env = ModuleEnv.from_environ("m", {"GRPC_PORT": "5000", "CALL_ASSISTANT_TOKEN_FILE": path})
            self.assertEqual(env.token, "secret")
            os.rename(path, os.path.join(d, "module-token"))
            env = ModuleEnv.from_environ("m", {"GRPC_PORT": "5000", "CREDENTIALS_DIRECTORY": d,
                                               "CALL_ASSISTANT_ORCHESTRATOR": "unix:/run/o.sock"})
            self.assertEqual(env.token, "secret")
            self.assertEqual(env.orchestrator, "unix:/run/o.sock")
        key = "x-call-assistant-module-token"
        self.assertTrue(token_matches("secret", [(key, "secret")]))
        self.assertFalse(token_matches("secret", [(key, "secre")]))
        self.assertFalse(token_matches("secret", [(key, "secret"), (key, "secret")]))
        self.assertFalse(token_matches("secret", []))
        self.assertFalse(token_matches(None, [(key, "")]))

    def test_helpers(self):
        self.assertEqual(slug("Living Room TV"), "living-room-tv")
        self.assertEqual(slug("!!!"), "chromecast")
        self.assertEqual(_safe_url("http://user:pw@host:8080/a/live.m3u8?token=x"), "http://host:8080/a/live.m3u8")


if __name__ == "__main__":
    unittest.main()


class FlowRequest(unittest.TestCase):
    """OrchestratorClient.request_flow against a grpcio OrchestratorService on loopback that
    records the request: the flow's id back, or the refusal as an exception."""

    def test_request_and_refusal(self):
        from concurrent import futures

        import grpc
        from callassistant.v1 import orchestrator_pb2, orchestrator_pb2_grpc

        seen = []

        class Orchestrator(orchestrator_pb2_grpc.OrchestratorServiceServicer):
            def ReportEvent(self, request, context):
                seen.append((request, dict(context.invocation_metadata())))
                if request.request_id != "call-1":
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requested flows")
                return orchestrator_pb2.ReportEventResponse(flow_id="flow-0123456789abcdef")

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(Orchestrator(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self.addCleanup(server.stop, None)
        client = OrchestratorClient(ModuleEnv(1, "chromecast", f"127.0.0.1:{port}", "tok"))
        self.addCleanup(client.close)

        self.assertEqual(client.request_flow("tv", "cams", "cam-1", "call-1", "v=0 OFFER"), "flow-0123456789abcdef")
        ev, md = seen[0]
        self.assertEqual(ev.kind, orchestrator_pb2.Event.KIND_FLOW_REQUEST)
        self.assertEqual((ev.entity.id, ev.flow_source.module, ev.flow_source.id, ev.request_id),
                         ("tv", "cams", "cam-1", "call-1"))
        self.assertEqual((ev.link.media, ev.link.sdp_type, ev.link.sdp), ("webrtc", "offer", "v=0 OFFER"))
        self.assertEqual(md.get("x-call-assistant-module-token"), "tok")
        with self.assertRaises(FlowRequestRefused) as e:
            client.request_flow("tv", "cams", "cam-1", "call-2", "v=0 OFFER")
        self.assertEqual(e.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(e.exception.details, "too many requested flows")
        with self.assertRaises(ConnectionError):
            OrchestratorClient(ModuleEnv(1, "chromecast", None, None)).request_flow("tv", "c", "c", "r", "v=0")
