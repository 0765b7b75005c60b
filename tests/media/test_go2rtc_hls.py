#!/usr/bin/python3
"""The go2rtc module's built-in HLS output, as a player sees it: the URL ConnectEntity gives
out plays at once (a Chromecast that gets a 404 for the playlist gives up) and keeps playing
when the configuration is applied again, and a camera that
sends nothing makes ConnectEntity fail with UNAVAILABLE instead of handing out a URL that
never plays. The module is run directly (with its token); the camera is
tests/doubles/onvif_camera_double.py on loopback (RTSP only). Everything listens on 127.0.0.1."""

import json
import os
import sys
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("CA_SOURCE_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ["CA_BUILD_ROOT"]
sys.path.insert(0, os.path.join(SOURCE, "tests", "xlang"))
sys.path.insert(0, os.path.join(BUILD, "tests", "integration", "pystubs"))

import grpc  # noqa: E402
from callassistant.v1 import module_pb2 as mpb, module_pb2_grpc as mgrpc  # noqa: E402
from xlang_util import ModuleProcess, free_port, run_tests  # noqa: E402
from media_util import start_camera  # noqa: E402

MODULE_DIR = os.path.join(BUILD, "modules", "go2rtc")


class BuiltinHls(unittest.TestCase):
    def setUp(self):
        self.rtsp_port = start_camera(self)
        self.mod = ModuleProcess([os.path.join(MODULE_DIR, "go2rtc-module")], cwd=MODULE_DIR)
        self.addCleanup(self.mod.stop)
        channel = self.mod.wait_ready()
        self.addCleanup(channel.close)
        self.md = [("x-call-assistant-module-token", self.mod.token)]
        self.stub = mgrpc.ModuleServiceStub(channel)
        self.config = {"hls_port": 0, "stall_timeout_ms": 1000, "retry_min_ms": 200, "retry_max_ms": 500}
        self.stub.ApplyConfig(mpb.ApplyConfigRequest(config_json=json.dumps(self.config)), metadata=self.md,
                              timeout=10)

    def connect_hls(self, flow_id, url):
        conv = self.stub.CreateEntity(mpb.CreateEntityRequest(type="converter", name=flow_id, config_json="{}"),
                                      metadata=self.md, timeout=10)
        return conv, self.stub.ConnectEntity(mpb.ConnectEntityRequest(
            id=conv.id, flow_id=flow_id, input=mpb.MediaLink(media="rtsp", url=url), output_media="hls"),
            metadata=self.md, timeout=30)

    def test_url_plays_when_given_out(self):
        conv, resp = self.connect_hls("f1", f"rtsp://127.0.0.1:{self.rtsp_port}/main")
        self.assertRegex(resp.output.url, rf"^http://127\.0\.0\.1:\d+/{conv.id}/index\.m3u8$")
        # At once, no waiting: the playlist is there and lists a segment that is there too.
        with urllib.request.urlopen(resp.output.url, timeout=5) as r:
            playlist = r.read().decode()
        self.assertTrue(playlist.startswith("#EXTM3U"), playlist)
        segment = [ln for ln in playlist.splitlines() if ln.endswith(".ts")][0]
        with urllib.request.urlopen(resp.output.url.rsplit("/", 1)[0] + "/" + segment, timeout=5) as r:
            self.assertEqual(r.read(1), b"\x47")  # MPEG-TS sync byte

        # The configuration applied again (the orchestrator does so whenever it registers the
        # module again, after its own restart too), and another setting changed: it still plays.
        for config in ({}, {"metrics_interval_s": 2}):
            self.stub.ApplyConfig(mpb.ApplyConfigRequest(config_json=json.dumps(dict(self.config, **config))),
                                  metadata=self.md, timeout=10)
            with urllib.request.urlopen(resp.output.url, timeout=5) as r:
                self.assertTrue(r.read().decode().startswith("#EXTM3U"))

        # A second output of the same converter (another flow) is given the same stream at once.
        again = self.stub.ConnectEntity(mpb.ConnectEntityRequest(
            id=conv.id, flow_id="f2", input=mpb.MediaLink(media="rtsp", url=f"rtsp://127.0.0.1:{self.rtsp_port}/main"),
            output_media="hls"), metadata=self.md, timeout=5)
        self.assertEqual(again.output.url, resp.output.url)

    def test_no_video_no_url(self):
        # Nothing listens on that port: no segment comes, and no URL is given out.
        started = time.monotonic()
        with self.assertRaises(grpc.RpcError) as e:
            self.connect_hls("f3", f"rtsp://127.0.0.1:{free_port()}/main")
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE, e.exception.details())
        self.assertIn("no HLS segment within 6000 ms", e.exception.details())
        self.assertIn("reconnecting", e.exception.details())  # why: the converter's reason
        self.assertLess(time.monotonic() - started, 15)
        # Nothing of the refused output stays running: the converter let the camera go.
        conv = [x for x in self.stub.ListEntities(mpb.ListEntitiesRequest(), metadata=self.md, timeout=5).entities]
        self.assertEqual([x.state for x in conv], ["idle"])


if __name__ == "__main__":
    run_tests(__name__)
