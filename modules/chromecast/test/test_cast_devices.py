#!/usr/bin/python3
"""The chromecast module on real pychromecast/zeroconf against Chromecast doubles
(tests/doubles/cast_device.py), in a network namespace this test makes (veth pair; mDNS never
reaches the host's network), driven through ModuleService like the orchestrator does:
discovery over mDNS and by address, casting a live HLS stream (the double fetches it and decodes
a segment), volume, stop, device status, a device killed and back, and flows ended by the device."""

import json
import os
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import castnet  # noqa: E402

castnet.enter_netns()

import grpc  # noqa: E402
from castnet import (CastDouble, HlsSource, ModuleProcess, Recorder, health_check, module_pb2,  # noqa: E402
                     orchestrator_pb2, wait_until)

TOKEN = "cast-test-" + uuid.uuid4().hex
Kind = orchestrator_pb2.Event


class CastDevices(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hls = HlsSource()
        cls.rec = Recorder(TOKEN)
        cls.living_uuid = str(uuid.uuid4())
        cls.living = CastDouble("Living Room", cls.living_uuid)
        cls.hall = CastDouble("Hall", str(uuid.uuid4()), port=8010, mdns=False)
        cls.mod = ModuleProcess(TOKEN, cls.rec.address)

    @classmethod
    def tearDownClass(cls):
        rc = cls.mod.close()
        for c in (cls.living, cls.hall, cls.hls, cls.rec):
            c.close()
        assert rc == 0, f"module exit status {rc}"

    def configure(self):
        self.mod.call("ApplyConfig", module_pb2.ApplyConfigRequest(config_json=json.dumps({
            "discovery": True, "mdns_interfaces": [castnet.MOD_ADDR], "retry_interval_ms": 300,
            "devices": [{"name": "hall", "host": castnet.DEV_ADDR, "port": 8010}]})))

    def entity(self, eid, state=None, timeout=20):
        return wait_until(lambda: (lambda e: e if e and (state is None or e.state == state) else None)(
            self.mod.entities().get(eid)), timeout, f"entity {eid} {state or ''}\n{self.mod.output()[-3000:]}")

    def test_1_token_config_and_discovery(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.mod.call("RegisterModule", module_pb2.RegisterModuleRequest(), token="wrong")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        reg = self.mod.call("RegisterModule", module_pb2.RegisterModuleRequest(module_id="chromecast"))
        self.assertEqual(list(reg.entity_types[0].media_in), ["hls"])
        with self.assertRaises(grpc.RpcError) as cm:
            self.mod.call("ApplyConfig", module_pb2.ApplyConfigRequest(config_json=json.dumps(
                {"mdns_interfaces": ["eth0"], "retry_interval_ms": 5})))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(cm.exception.details(),
                         "/mdns_interfaces/0: must be an IP address of a local interface; "
                         "/retry_interval_ms: must be an integer in 100..600000")
        self.configure()
        living = self.entity("living-room", "idle")
        self.assertEqual(living.type, "cast_target")
        self.assertEqual(living.attributes["source"], "mdns")
        self.assertEqual(living.attributes["uuid"], self.living_uuid)
        self.assertEqual(living.attributes["host"], castnet.DEV_ADDR)
        hall = self.entity("hall", "idle")
        self.assertEqual(hall.attributes["source"], "configured")
        added = {e.entity.id for e in self.rec.events_of(Kind.KIND_ENTITY_ADDED)}
        self.assertLessEqual({"living-room", "hall"}, added)
        self.assertEqual(self.rec.unauthenticated, 0)

    def test_2_cast_volume_stop(self):
        self.entity("living-room", "idle")
        bad = dict(id="living-room", flow_id="f-bad", input=module_pb2.MediaLink(media="webrtc", sdp="v=0"))
        with self.assertRaises(grpc.RpcError) as cm:
            self.mod.call("ConnectEntity", module_pb2.ConnectEntityRequest(**bad))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        resp = self.mod.call("ConnectEntity", module_pb2.ConnectEntityRequest(
            id="living-room", flow_id="flow-1", input=module_pb2.MediaLink(media="hls", url=self.hls.url)))
        self.assertFalse(resp.HasField("output"))
        self.assertEqual(resp.entity.state, "casting")
        # The device runs the Default Media Receiver, got the URL, fetched it and decoded video.
        st = wait_until(lambda: (lambda s: s if s.get("hls", {}).get("decoded") else None)(self.living.state()),
                        30, f"the double to decode the stream: {self.living.state()}")
        self.assertEqual(st["app"]["appId"], "CC1AD845")
        self.assertEqual(st["media"]["contentId"], self.hls.url)
        self.assertGreaterEqual(st["hls"]["segments"], 1)
        self.assertEqual(st["hls"]["frame"], "320x240")

        e = self.mod.call("ConfigureEntity", module_pb2.ConfigureEntityRequest(id="living-room",
                                                                               config_json='{"volume": 0.3}'))
        self.assertEqual(json.loads(e.config_json), {"volume": 0.3})
        wait_until(lambda: abs(self.living.state()["volume"]["level"] - 0.3) < 1e-6, 10, "volume 0.3")
        with self.assertRaises(grpc.RpcError) as cm:
            self.mod.call("ConfigureEntity", module_pb2.ConfigureEntityRequest(id="living-room",
                                                                               config_json='{"volume": 2}'))
        self.assertEqual(cm.exception.details(), "/volume: must be a number in 0.0..1.0")

        self.mod.call("DisconnectEntity", module_pb2.DisconnectEntityRequest(id="living-room", flow_id="flow-1"))
        wait_until(lambda: self.living.state()["app"] is None, 10, "the receiver app to stop")
        self.entity("living-room", "idle")
        self.mod.call("DisconnectEntity", module_pb2.DisconnectEntityRequest(id="living-room", flow_id="flow-1"))
        self.assertFalse([e for e in self.rec.events_of(Kind.KIND_FLOW_ENDED) if e.flow_id == "flow-1"])

    def test_3_device_killed_and_back(self):
        self.entity("living-room", "idle")
        self.mod.call("ConnectEntity", module_pb2.ConnectEntityRequest(
            id="living-room", flow_id="flow-2", input=module_pb2.MediaLink(media="hls", url=self.hls.url)))
        self.living.kill()
        ended = wait_until(lambda: [e for e in self.rec.events_of(Kind.KIND_FLOW_ENDED) if e.flow_id == "flow-2"],
                           20, "FLOW_ENDED after the device died")
        self.assertEqual(ended[0].entity.id, "living-room")
        self.assertIn("went away", ended[0].reason)
        gone = self.entity("living-room", "unavailable")
        self.assertRegex(gone.attributes["reason"], "connect")
        # The module keeps serving, and casting to a device that is away is refused clearly.
        self.assertEqual(health_check(self.mod), 1)
        with self.assertRaises(grpc.RpcError) as cm:
            self.mod.call("ConnectEntity", module_pb2.ConnectEntityRequest(
                id="living-room", flow_id="flow-3", input=module_pb2.MediaLink(media="hls", url=self.hls.url)))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.living.start()
        back = self.entity("living-room", "idle", timeout=30)
        self.assertEqual(back.attributes["uuid"], self.living_uuid)
        resp = self.mod.call("ConnectEntity", module_pb2.ConnectEntityRequest(
            id="living-room", flow_id="flow-4", input=module_pb2.MediaLink(media="hls", url=self.hls.url)))
        self.assertEqual(resp.entity.state, "casting")
        self.mod.call("DisconnectEntity", module_pb2.DisconnectEntityRequest(id="living-room", flow_id="flow-4"))

    def test_4_another_sender_ends_the_flow(self):
        self.entity("hall", "idle")
        self.mod.call("ConnectEntity", module_pb2.ConnectEntityRequest(
            id="hall", flow_id="flow-5", input=module_pb2.MediaLink(media="hls", url=self.hls.url)))
        # Someone stops the receiver from another sender (the TV's remote, a phone).
        import pychromecast
        other = pychromecast.get_chromecast_from_host((castnet.DEV_ADDR, 8010, None, "", "hall"), tries=3,
                                                      retry_wait=0.3, timeout=5)
        other.wait(timeout=10)
        other.quit_app()
        ended = wait_until(lambda: [e for e in self.rec.events_of(Kind.KIND_FLOW_ENDED) if e.flow_id == "flow-5"],
                           20, "FLOW_ENDED after another sender stopped the app")
        self.assertIn("another app took over", ended[0].reason)
        other.disconnect(timeout=5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
