#!/usr/bin/python3
"""Media benchmark of the go2rtc module's built-in backend (see bench/README.md), on loopback:
a camera double streaming a GStreamer test pattern as 1280x720 30 fps H.264 over RTSP, the
go2rtc module run directly (with its token), and webrtcbin peers.

1. Glass-to-glass setup: from CreateEntity (then ConnectEntity with the peer's offer) to the
   first decoded frame at the peer, 10 times, p50 and max; baseline in the same run: a plain
   RTSP client (rtspsrc -> avdec_h264) from its start to its first decoded frame.
2. CPU of the converter for one 720p H.264 stream (no transcoding) over 10 s, in % of one core;
   baselines in the same run: the module idle, and the camera double (which encodes).
3. 8 peers on one camera: setup, all receiving, per-peer frame rate and the module's CPU.
Not a test: it prints figures and whether the targets (CPU < 2 % of a core) were met."""

import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, ".."))
BUILD = os.environ.get("CA_BUILD_ROOT") or os.path.join(SOURCE, "build")
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
sys.path.insert(0, os.path.join(SOURCE, "tests", "xlang"))
sys.path.insert(0, os.path.join(BUILD, "tests", "integration", "pystubs"))

import gi  # noqa: E402

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

from callassistant.v1 import module_pb2 as mpb, module_pb2_grpc as mgrpc  # noqa: E402
from webrtc_receiver import Receiver  # noqa: E402
from xlang_util import ModuleProcess, free_port  # noqa: E402

CAMERA = os.path.join(SOURCE, "tests", "doubles", "onvif_camera_double.py")
MODULE_DIR = os.path.join(BUILD, "modules", "go2rtc")
HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def cpu_percent(pid, seconds):
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.005)


def rtsp_first_frame(url):
    """Baseline: a plain RTSP client's time to its first decoded frame."""
    t0 = time.monotonic()
    p = Gst.parse_launch(f"rtspsrc location={url} protocols=tcp latency=100 ! rtph264depay ! h264parse ! "
                         "avdec_h264 ! fakesink name=sink signal-handoffs=true")
    got = []
    p.get_by_name("sink").connect("handoff", lambda *a: got.append(time.monotonic()) if not got else None)
    p.set_state(Gst.State.PLAYING)
    wait(lambda: got, 20)
    p.set_state(Gst.State.NULL)
    return got[0] - t0


def main():
    Gst.init(None)
    rtsp_port = free_port()
    camera = subprocess.Popen([sys.executable, CAMERA, "--ip", "127.0.0.1", "--no-discovery", "--http-port",
                               str(free_port()), "--rtsp-port", str(rtsp_port), "--width", "1280", "--height",
                               "720", "--fps", "30", "--bitrate", "2000"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    mod = None
    try:
        assert camera.stdout.readline().strip() == "READY"
        url = f"rtsp://127.0.0.1:{rtsp_port}/main"
        mod = ModuleProcess([os.path.join(MODULE_DIR, "go2rtc-module")], cwd=MODULE_DIR)
        ch = mod.wait_ready()
        md = [("x-call-assistant-module-token", mod.token)]
        s = mgrpc.ModuleServiceStub(ch)
        s.ApplyConfig(mpb.ApplyConfigRequest(config_json=json.dumps({"ice_addresses": ["127.0.0.1"]})),
                      metadata=md, timeout=10)
        link = mpb.MediaLink(media="rtsp", url=url)

        def setup_once():
            rx = Receiver()
            offer = rx.offer()
            t0 = time.monotonic()
            conv = s.CreateEntity(mpb.CreateEntityRequest(type="converter", name="b", config_json="{}"),
                                  metadata=md, timeout=10)
            ans = s.ConnectEntity(mpb.ConnectEntityRequest(
                id=conv.id, flow_id="f", input=link, output_media="webrtc",
                peer=mpb.MediaLink(media="webrtc", sdp=offer, sdp_type="offer")), metadata=md, timeout=30)
            rx.set_answer(ans.output.sdp)
            wait(lambda: rx.first_frame_time, 20)
            return rx, conv, rx.first_frame_time - t0

        print("1. glass-to-glass setup (CreateEntity -> first decoded frame at the peer), 10 runs")
        base, setup = [], []
        for _ in range(10):
            base.append(rtsp_first_frame(url))
            rx, conv, dt = setup_once()
            setup.append(dt)
            rx.close()
            s.DestroyEntity(mpb.DestroyEntityRequest(id=conv.id), metadata=md, timeout=10)
        print(f"   baseline, plain RTSP client to first frame: p50 {statistics.median(base) * 1000:7.1f} ms,"
              f" max {max(base) * 1000:7.1f} ms")
        print(f"   through the converter (WebRTC):             p50 {statistics.median(setup) * 1000:7.1f} ms,"
              f" max {max(setup) * 1000:7.1f} ms")

        print("2. CPU for one 1280x720 30 fps H.264 stream (no transcoding), 10 s each")
        idle = cpu_percent(mod.proc.pid, 5)
        rx, conv, _ = setup_once()
        time.sleep(2)
        f0 = rx.stats()[0]
        one = cpu_percent(mod.proc.pid, 10)
        fps = (rx.stats()[0] - f0) / 10
        cam = cpu_percent(camera.pid, 5)
        print(f"   baseline, the module idle:          {idle:5.2f} % of a core")
        print(f"   the module with one stream + peer:  {one:5.2f} % of a core  (peer: {fps:.1f} fps decoded,"
              f" {rx.stats()[1]}x{rx.stats()[2]})")
        print(f"   for reference, the camera (encodes): {cam:5.2f} % of a core")
        rx.close()
        s.DestroyEntity(mpb.DestroyEntityRequest(id=conv.id), metadata=md, timeout=10)

        print("3. 8 peers on one camera (one converter, 8 WebRTC flows; peers count H.264 frames)")
        conv = s.CreateEntity(mpb.CreateEntityRequest(type="converter", name="8", config_json="{}"),
                              metadata=md, timeout=10)
        peers, t0 = [], time.monotonic()
        for i in range(8):
            rx = Receiver(decode=False)
            ans = s.ConnectEntity(mpb.ConnectEntityRequest(
                id=conv.id, flow_id=f"p{i}", input=link, output_media="webrtc",
                peer=mpb.MediaLink(media="webrtc", sdp=rx.offer(), sdp_type="offer")), metadata=md, timeout=30)
            rx.set_answer(ans.output.sdp)
            peers.append(rx)
        wait(lambda: all(p.first_frame_time for p in peers), 30)
        all_in = time.monotonic() - t0
        time.sleep(2)
        before = [p.stats()[0] for p in peers]
        eight = cpu_percent(mod.proc.pid, 10)
        rates = [(p.stats()[0] - b) / 10 for p, b in zip(peers, before)]
        print(f"   8 peers connected and receiving in {all_in:.2f} s; per-peer fps min {min(rates):.1f},"
              f" max {max(rates):.1f}")
        print(f"   the module with 8 peers: {eight:5.2f} % of a core ({eight / 8:.2f} % per peer)")
        for p in peers:
            p.close()
        target = one - idle < 2.0
        print(f"target: converter CPU per 720p stream < 2 % of a core: {'met' if target else 'NOT met'}"
              f" ({one - idle:.2f} % above idle)")
    finally:
        if mod:
            mod.stop()
        camera.terminate()
        camera.wait(10)


if __name__ == "__main__":
    main()
