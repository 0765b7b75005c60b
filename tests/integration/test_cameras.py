#!/usr/bin/python3
"""End to end with real media: the real orchestrator runs the onvif-discovery and go2rtc
modules in the sandbox; simulated ONVIF cameras (tests/doubles/onvif_camera_double.py, a
real RTSP stream of a GStreamer test pattern) live in a network namespace this test creates,
where WS-Discovery multicast goes and nowhere else. Discovery finds the cameras (one with
digest authentication), a converter is created for one and connected through the module
contract, and a real WebRTC peer (webrtcbin) decodes its video. The camera is killed and
comes back; bad cameras are reported per camera; HLS is served; secrets stay secret."""

import json
import os
import time
import unittest
import urllib.request

import grpc

from camnet import CameraNet
from orchestrator_harness import BUILD, Events, Orchestrator, free_port, inside, main, opb
from orchestrator_harness import wait_until as _wait_until
from webrtc_receiver import Receiver
from callassistant.config.v1 import config_pb2 as cpb
from callassistant.config.v1 import config_pb2_grpc as cgrpc
from callassistant.v1 import module_pb2 as mpb
from callassistant.v1 import module_pb2_grpc as mgrpc

PASSWORD = "s3cret-" + os.urandom(6).hex()
UUID_A = "0a0a0a0a-1111-4111-8111-00000000000a"
UUID_B = "0b0b0b0b-2222-4222-8222-00000000000b"
CAM_A, CAM_B = f"onvif-{UUID_A}", f"onvif-{UUID_B}"
ONVIF = os.path.join(BUILD, "modules", "onvif-discovery", "onvif-discovery-module")
GO2RTC = os.path.join(BUILD, "modules", "go2rtc", "go2rtc-module")


def journal(module):
    """A module's journal, by its unit name as an operator types it."""
    return inside("journalctl", "-u", f"call-assistant-module@{module}.service", "-o", "cat",
                  "--no-pager").stdout


def diagnostics():
    out = []
    for module in ("onvif-discovery", "go2rtc"):
        out.append(f"--- journal of {module} (tail) ---\n" + "\n".join(journal(module).splitlines()[-40:]))
    return "\n".join(out)


def wait_until(predicate, timeout, what):
    """The harness's wait_until, with the modules' journals when it times out."""
    try:
        return _wait_until(predicate, timeout, what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{diagnostics()}") from None


class Cameras(unittest.TestCase):
    def setUp(self):
        self.net = CameraNet(n_addresses=6)
        self.addCleanup(self.net.stop)
        n = self.net
        self.cam_a = n.camera(2, "--uuid", UUID_A, "--name", "porch", "--width", "320", "--height", "240",
                              "--announce")
        self.cam_b_args = ("--uuid", UUID_B, "--name", "door", "--user", "admin", "--password", PASSWORD,
                           "--width", "640", "--height", "360")
        self.cam_b = n.camera(3, *self.cam_b_args)
        # Bad cameras: each answers discovery, then misbehaves on ONVIF.
        n.camera(4, "--mode", "malformed-soap", "--model", "bad-xml")
        n.camera(5, "--mode", "silent-soap", "--model", "silent")
        n.camera(6, "--mode", "huge-soap", "--model", "huge")
        n.camera(7, "--mode", "malformed-probe")

        # The network the bundled manifests declare (modules/*/module.yaml), with the HLS port
        # this test configures.
        self.hls_port = free_port()
        self.o = Orchestrator("cams", [dict(dir="onvif-discovery", command=ONVIF,
                                            network="{peers: lan, multicast: true, bind: [udp]}"),
                                       dict(dir="go2rtc", command=GO2RTC,
                                            network=f'{{peers: lan, bind: [udp, "tcp:{self.hls_port}"]}}')])
        self.addCleanup(self.o.cleanup)
        self.o.start()
        self.events = Events(self.o.stub)
        self.addCleanup(self.events.close)
        self.cfg = cgrpc.ConfigServiceStub(self.o.channel)

    # ---- helpers ----

    def module_stub(self, name):
        info = self.o.module(name)
        with open(os.path.join(self.o.runtime_dir, "credentials", f"{name}.token")) as f:
            token = f.read().strip()
        ch = grpc.insecure_channel(f"127.0.0.1:{info.port}")
        self.addCleanup(ch.close)
        return mgrpc.ModuleServiceStub(ch), [("x-call-assistant-module-token", token)]

    def entities(self, module):
        listed = self.o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(module=module), timeout=10).entities
        return {e.entity.id: e.entity for e in listed}

    def wait_entity(self, stub, md, eid, state, timeout=30):
        def check():
            for e in stub.ListEntities(mpb.ListEntitiesRequest(), metadata=md, timeout=5).entities:
                if e.id == eid and e.state == state:
                    return e
            return None
        return wait_until(check, timeout, f"entity {eid} {state}")

    def frames_grow(self, rx, by, timeout=30):
        start = rx.stats()[0]
        wait_until(lambda: rx.stats()[0] >= start + by, timeout, f"{by} more decoded frames (had {start})")

    # ---- the test ----

    def test_discovery_webrtc_outage_hls_and_bad_cameras(self):
        o = self.o
        o.wait_state("onvif-discovery", "WAITING_FOR_CONFIG")
        o.wait_state("go2rtc", "READY")
        self.cfg.SetConfig(cpb.SetConfigRequest(module="onvif-discovery", config_json=json.dumps({
            "interface": self.net.host_if, "scan_interval_s": 2, "request_timeout_ms": 1500,
            "cameras": [{"host": "198.18.213.3", "username": "admin", "password": PASSWORD}],
            "manual": [{"id": "nowhere", "name": "404", "url": "rtsp://198.18.213.2:8554/nope"}]})), timeout=10)
        self.cfg.SetConfig(cpb.SetConfigRequest(module="go2rtc", config_json=json.dumps({
            "ice_addresses": ["127.0.0.1"], "stall_timeout_ms": 2000, "retry_min_ms": 300, "retry_max_ms": 1000,
            "metrics_interval_s": 1, "hls_port": self.hls_port})), timeout=10)
        o.wait_state("onvif-discovery", "READY")

        # Discovery finds both cameras; the one with digest auth answers with the credentials.
        def found():
            e = self.entities("onvif-discovery")
            return e if all(c in e and e[c].state == "available" for c in (CAM_A, CAM_B)) else None
        cams = wait_until(found, 30, "both cameras available")
        b = cams[CAM_B]
        self.assertEqual(b.type, "camera")
        self.assertEqual(b.attributes["manufacturer"], "call-assistant")
        self.assertEqual(b.attributes["model"], "double-cam")
        self.assertEqual(b.attributes["profiles"], "main (H264 640x360)")
        self.assertEqual(b.attributes["stream_uri"], "rtsp://198.18.213.3:8554/main")
        self.assertEqual(cams[CAM_A].attributes["profiles"], "main (H264 320x240)")
        self.assertEqual(cams["manual-nowhere"].attributes["stream_uri"], "rtsp://198.18.213.2:8554/nope")

        # Bad answers are reported per camera; the module stays READY.
        def bad_reported():
            e = self.entities("onvif-discovery")
            errors = {x.attributes.get("last_error", "") for x in e.values() if x.state == "unavailable"}
            want = ("malformed XML", "timed out", "answer bigger than")
            return errors if all(any(w in err for err in errors) for w in want) else None
        errors = wait_until(bad_reported, 30, "the bad cameras reported")
        self.assertEqual(o.module("onvif-discovery").status, opb.MODULE_STATUS_READY)
        wait_until(lambda: "Malformed WS-Discovery message from 198.18.213.7" in
                   journal("onvif-discovery"), 20,
                   "the malformed ProbeMatches logged")
        self.assertEqual(len([x for x in self.entities("onvif-discovery") if x.startswith("onvif-")]), 5, errors)

        # The camera gives its RTSP URL, credentials included, only in ConnectEntity's output.
        onvif, onvif_md = self.module_stub("onvif-discovery")
        link = onvif.ConnectEntity(mpb.ConnectEntityRequest(id=CAM_B, flow_id="f-b", output_media="rtsp"),
                                   metadata=onvif_md, timeout=10).output
        self.assertEqual(link.url, f"rtsp://admin:{PASSWORD}@198.18.213.3:8554/main")

        # A converter, and a real WebRTC peer: complete SDPs both ways, decoded frames.
        go2rtc, go2rtc_md = self.module_stub("go2rtc")
        conv = go2rtc.CreateEntity(mpb.CreateEntityRequest(type="converter", name="door", config_json="{}"),
                                   metadata=go2rtc_md, timeout=10)
        rx = Receiver()
        self.addCleanup(rx.close)
        offer = rx.offer()
        answer = go2rtc.ConnectEntity(mpb.ConnectEntityRequest(
            id=conv.id, flow_id="f-b", input=link, output_media="webrtc",
            peer=mpb.MediaLink(media="webrtc", sdp=offer, sdp_type="offer")), metadata=go2rtc_md, timeout=30)
        self.assertEqual(answer.output.sdp_type, "answer")
        self.assertIn("a=candidate:", answer.output.sdp)  # complete: ICE gathered, no trickle
        self.assertIn("a=sendonly", answer.output.sdp)
        rx.set_answer(answer.output.sdp)
        self.frames_grow(rx, 20)
        self.assertEqual(rx.stats()[1:], (640, 360))
        self.wait_entity(go2rtc, go2rtc_md, conv.id, "active")

        # Metrics per converter.
        def metrics():
            for ev in self.events.all():
                if ev.kind == opb.Event.KIND_METRICS and ev.entity.id == conv.id and ev.metrics["bitrate_kbps"] > 0:
                    return ev
            return None
        m = wait_until(metrics, 20, "converter metrics")
        self.assertEqual(m.module, "go2rtc")
        self.assertEqual(m.metrics["peers"], 1)
        self.assertGreater(m.metrics["frames"], 0)

        # HLS, served by the module.
        hls = go2rtc.ConnectEntity(mpb.ConnectEntityRequest(id=conv.id, flow_id="f-hls", input=link,
                                                            output_media="hls"), metadata=go2rtc_md, timeout=10)
        self.assertTrue(hls.output.url.startswith(f"http://127.0.0.1:{self.hls_port}/"), hls.output.url)

        def segment():
            try:
                playlist = urllib.request.urlopen(hls.output.url, timeout=5).read().decode()
            except OSError:
                return None
            names = [ln for ln in playlist.splitlines() if ln.endswith(".ts")]
            return names[0] if names else None
        seg = wait_until(segment, 30, "an HLS segment")
        data = urllib.request.urlopen(hls.output.url.rsplit("/", 1)[0] + "/" + seg, timeout=5).read()
        self.assertGreater(len(data), 188)
        self.assertEqual(data[0], 0x47)  # MPEG-TS sync byte
        with self.assertRaises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{self.hls_port}/../etc/passwd", timeout=5)

        # The camera dies: camera unavailable, converter degraded (not gone); it comes back:
        # the same peer gets frames again.
        self.net.kill(self.cam_b)
        self.wait_entity(go2rtc, go2rtc_md, conv.id, "degraded", timeout=20)
        self.wait_entity(onvif, onvif_md, CAM_B, "unavailable", timeout=20)
        self.cam_b = self.net.camera(3, *self.cam_b_args)
        self.wait_entity(go2rtc, go2rtc_md, conv.id, "active", timeout=30)
        self.frames_grow(rx, 20)
        self.wait_entity(onvif, onvif_md, CAM_B, "available", timeout=20)

        # An RTSP URL that 404s: the HLS output is refused (no URL that would never play), saying
        # why; nothing of it keeps running.
        link404 = onvif.ConnectEntity(mpb.ConnectEntityRequest(id="manual-nowhere", flow_id="f-404",
                                                               output_media="rtsp"),
                                      metadata=onvif_md, timeout=10).output
        conv404 = go2rtc.CreateEntity(mpb.CreateEntityRequest(type="converter", name="404", config_json="{}"),
                                      metadata=go2rtc_md, timeout=10)
        with self.assertRaises(grpc.RpcError) as e404:
            go2rtc.ConnectEntity(mpb.ConnectEntityRequest(id=conv404.id, flow_id="f-404", input=link404,
                                                          output_media="hls"), metadata=go2rtc_md, timeout=20)
        self.assertEqual(e404.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("the converter is degraded", e404.exception.details())
        self.assertIn("reconnecting", e404.exception.details())
        self.wait_entity(go2rtc, go2rtc_md, conv404.id, "idle", timeout=10)

        # A camera that says Bye is removed; its Hello brings it back.
        self.cam_a.terminate()
        self.cam_a.wait(10)
        wait_until(lambda: any(ev.kind == opb.Event.KIND_ENTITY_REMOVED and ev.entity.id == CAM_A
                               for ev in self.events.all()), 20, "camera A removed after its Bye")
        self.cam_a = self.net.camera(2, "--uuid", UUID_A, "--name", "porch", "--announce")
        wait_until(lambda: CAM_A in self.entities("onvif-discovery"), 20, "camera A back after its Hello")

        # Disconnecting the WebRTC flow keeps the converter; destroying it lets the camera go.
        go2rtc.DisconnectEntity(mpb.DisconnectEntityRequest(id=conv.id, flow_id="f-b"), metadata=go2rtc_md,
                                timeout=10)
        go2rtc.DestroyEntity(mpb.DestroyEntityRequest(id=conv.id), metadata=go2rtc_md, timeout=10)

        # Secrets: never in listings, events or the modules' journals.
        listing = str(self.o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(), timeout=10))
        self.assertNotIn(PASSWORD, listing)
        self.assertNotIn(PASSWORD, "".join(str(ev) for ev in self.events.all()))
        for module in ("onvif-discovery", "go2rtc"):
            self.assertNotIn(PASSWORD, journal(module))
        self.assertEqual(o.module("onvif-discovery").status, opb.MODULE_STATUS_READY)
        self.assertEqual(o.module("go2rtc").status, opb.MODULE_STATUS_READY)


if __name__ == "__main__":
    main()
