#!/usr/bin/python3
"""The go2rtc module's go2rtc backend, with real media: the module (run directly, with its
token) drives go2rtc's HTTP API — the real go2rtc when `go2rtc` is on PATH (the module then
runs it as its child), else tests/doubles/go2rtc_api_double.py, written from go2rtc's
documentation. The camera is tests/doubles/onvif_camera_double.py on loopback (RTSP only),
and a real WebRTC peer decodes the video. Everything listens on 127.0.0.1."""

import json
import os
import shutil
import subprocess
import sys
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("CA_SOURCE_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ["CA_BUILD_ROOT"]
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
sys.path.insert(0, os.path.join(SOURCE, "tests", "xlang"))
sys.path.insert(0, os.path.join(BUILD, "tests", "integration", "pystubs"))

import grpc  # noqa: E402
from callassistant.v1 import module_pb2 as mpb, module_pb2_grpc as mgrpc  # noqa: E402
from webrtc_receiver import Receiver  # noqa: E402
from xlang_util import ModuleProcess, free_port, run_tests  # noqa: E402
from media_util import start_camera, stop_process  # noqa: E402

PYTHON = "/usr/bin/python3"
API_DOUBLE = os.path.join(SOURCE, "tests", "doubles", "go2rtc_api_double.py")
MODULE_DIR = os.path.join(BUILD, "modules", "go2rtc")


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Go2rtcBackend(unittest.TestCase):
    def setUp(self):
        self.rtsp_port = start_camera(self)
        self.real = shutil.which("go2rtc")
        if self.real:
            self.api_port = free_port()
            config = {"go2rtc_binary": self.real, "go2rtc_url": f"http://127.0.0.1:{self.api_port}"}
        else:
            self.api = subprocess.Popen([PYTHON, API_DOUBLE, "--listen", "127.0.0.1:0"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
            self.addCleanup(stop_process, self.api)
            line = self.api.stdout.readline().split()
            self.assertEqual(line[0], "READY")
            self.api_port = int(line[1])
            config = {"go2rtc_url": f"http://127.0.0.1:{self.api_port}"}
        config["metrics_interval_s"] = 1
        self.mod = ModuleProcess([os.path.join(MODULE_DIR, "go2rtc-module")], cwd=MODULE_DIR)
        self.addCleanup(self.mod.stop)
        self.channel = self.mod.wait_ready()
        self.addCleanup(self.channel.close)
        self.md = [("x-call-assistant-module-token", self.mod.token)]
        self.stub = mgrpc.ModuleServiceStub(self.channel)
        self.stub.ApplyConfig(mpb.ApplyConfigRequest(config_json=json.dumps(config)), metadata=self.md, timeout=10)

    def entity(self, eid):
        for e in self.stub.ListEntities(mpb.ListEntitiesRequest(), metadata=self.md, timeout=5).entities:
            if e.id == eid:
                return e
        return None

    def streams(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/api/streams", timeout=5) as r:
            return json.load(r)

    def test_webrtc_hls_and_go2rtc_down(self):
        s, md = self.stub, self.md
        conv = s.CreateEntity(mpb.CreateEntityRequest(type="converter", name="porch", config_json="{}"),
                              metadata=md, timeout=10)
        self.assertEqual(conv.attributes["backend"], "go2rtc")
        link = mpb.MediaLink(media="rtsp", url=f"rtsp://127.0.0.1:{self.rtsp_port}/main")

        rx = Receiver()
        self.addCleanup(rx.close)
        answer = s.ConnectEntity(mpb.ConnectEntityRequest(
            id=conv.id, flow_id="f1", input=link, output_media="webrtc",
            peer=mpb.MediaLink(media="webrtc", sdp=rx.offer(), sdp_type="offer")), metadata=md, timeout=30)
        self.assertEqual(answer.output.sdp_type, "answer")
        self.assertIn("a=candidate:", answer.output.sdp)
        rx.set_answer(answer.output.sdp)
        wait_until(lambda: rx.stats()[0] >= 20, 30, "decoded frames through go2rtc")
        self.assertEqual(rx.stats()[1:], (320, 240))
        self.assertIn(conv.id, self.streams())
        wait_until(lambda: self.entity(conv.id).state == "active", 15, "the converter active")

        # go2rtc makes no offers: a flow that needs one is refused clearly.
        with self.assertRaises(grpc.RpcError) as e:
            s.ConnectEntity(mpb.ConnectEntityRequest(id=conv.id, flow_id="f2", input=link, output_media="webrtc"),
                            metadata=md, timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

        hls = s.ConnectEntity(mpb.ConnectEntityRequest(id=conv.id, flow_id="f3", input=link, output_media="hls"),
                              metadata=md, timeout=10)
        self.assertEqual(hls.output.url, f"http://127.0.0.1:{self.api_port}/api/stream.m3u8?src={conv.id}")

        # Destroying the converter removes its go2rtc stream.
        s.DestroyEntity(mpb.DestroyEntityRequest(id=conv.id), metadata=md, timeout=10)
        wait_until(lambda: conv.id not in self.streams(), 10, "the stream deleted from go2rtc")

        if self.real:
            return
        # go2rtc goes away: a new flow fails with UNAVAILABLE, the converter shows degraded.
        conv2 = s.CreateEntity(mpb.CreateEntityRequest(type="converter", name="door", config_json="{}"),
                               metadata=md, timeout=10)
        s.ConnectEntity(mpb.ConnectEntityRequest(id=conv2.id, flow_id="h", input=link, output_media="hls"),
                        metadata=md, timeout=10)
        stop_process(self.api)
        with self.assertRaises(grpc.RpcError) as e:
            s.ConnectEntity(mpb.ConnectEntityRequest(
                id=conv2.id, flow_id="f4", input=link, output_media="webrtc",
                peer=mpb.MediaLink(media="webrtc", sdp=rx.offer(), sdp_type="offer")), metadata=md, timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        wait_until(lambda: self.entity(conv2.id).state == "degraded", 10, "the converter degraded")


if __name__ == "__main__":
    run_tests(__name__)
