#!/usr/bin/python3
"""A test double of go2rtc's HTTP API, written from go2rtc's documentation (README, "Module:
API"): the endpoints the go2rtc module uses, with real media behind them.

  PUT    /api/streams?name=NAME&src=URL   add (or replace) a stream
  DELETE /api/streams?src=NAME            remove it
  GET    /api/streams                     {"NAME": {"producers": [...], "consumers": [...]}}
  POST   /api/webrtc?src=NAME             body: the peer's SDP offer; answer: the SDP answer
  GET    /api/stream.m3u8?src=NAME        an HLS playlist (a stub playlist: not used by tests)

POST /api/webrtc runs a GStreamer pipeline (rtspsrc -> rtph264depay -> rtph264pay ->
webrtcbin) answering the offer with ICE gathered (go2rtc's non-trickle mode); producers
report "bytes_recv" as the RTSP bytes received. ICE host candidates only on --ice-address.
Prints "READY" once it listens; SIGTERM stops it."""

import argparse
import json
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402


class Consumer:
    """One WebRTC consumer: an RTSP reader feeding a webrtcbin that answers the offer."""

    def __init__(self, api, name, src, offer_text, ice_address):
        self.api, self.name = api, name
        self.bytes = 0
        self.gathered = threading.Event()
        ok, msg = GstSdp.SDPMessage.new_from_text(offer_text)
        if ok != GstSdp.SDPResult.OK or msg.medias_len() == 0:
            raise ValueError("not an SDP offer")
        self.pipe = Gst.parse_launch(
            "rtspsrc name=src protocols=tcp latency=100 ! rtph264depay ! h264parse config-interval=-1 ! "
            "video/x-h264,stream-format=byte-stream,alignment=au ! "
            "rtph264pay config-interval=-1 aggregate-mode=zero-latency pt=96 ! "
            "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! "
            "webrtcbin name=webrtc bundle-policy=max-bundle")
        self.pipe.get_by_name("src").set_property("location", src)
        self.webrtc = self.pipe.get_by_name("webrtc")
        self.ice = self.webrtc.get_property("ice-agent")  # kept: see webrtc_receiver.py
        self.ice.set_property("ice-tcp", False)
        self.agent = self.ice.get_property("agent")
        addr = Nice.Address()
        addr.set_from_string(ice_address)
        self.agent.add_local_address(addr)
        # Like go2rtc: send-only video, H.264 as the camera gives it (known before the
        # camera's stream arrives, so that the answer is not "inactive").
        trans = self.webrtc.emit("get-transceiver", 0)
        trans.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        trans.set_property("codec-preferences", Gst.caps_from_string(
            "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000,"
            "packetization-mode=(string)1,profile-level-id=(string)42e01f"))
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        self.pipe.get_by_name("src").connect("pad-added", self._on_rtsp_pad)
        self.pipe.set_state(Gst.State.PLAYING)
        self.answered = threading.Event()
        self.offer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, msg)
        self.webrtc.emit("set-remote-description", self.offer,
                         Gst.Promise.new_with_change_func(self._on_remote_set, None, None))

    def _on_rtsp_pad(self, _, pad):
        def count(pad, info):
            self.bytes += info.get_buffer().get_size()
            return Gst.PadProbeReturn.OK
        pad.add_probe(Gst.PadProbeType.BUFFER, count)

    def _on_gathering(self, *_):
        if self.webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            self.gathered.set()

    def _on_remote_set(self, promise, _, __):
        promise.wait()
        self.webrtc.emit("create-answer", None, Gst.Promise.new_with_change_func(self._on_answer, None, None))

    def _on_answer(self, promise, _, __):
        promise.wait()
        reply = promise.get_reply()
        answer = reply.get_value("answer")
        p = Gst.Promise.new()
        self.webrtc.emit("set-local-description", answer, p)
        p.interrupt()
        self.answered.set()

    def answer(self, timeout=10):
        if not self.answered.wait(timeout) or not self.gathered.wait(timeout):
            raise TimeoutError("no answer")
        return self.webrtc.get_property("local-description").sdp.as_text()

    def close(self):
        self.pipe.set_state(Gst.State.NULL)


class Api:
    def __init__(self, ice_address):
        self.ice_address = ice_address
        self.streams = {}   # name -> src
        self.consumers = {}  # name -> [Consumer]
        self.lock = threading.Lock()

    def handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body=b"", ctype="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def parts(self):
                u = urllib.parse.urlsplit(self.path)
                return u.path, dict(urllib.parse.parse_qsl(u.query))

            def do_PUT(self):
                path, q = self.parts()
                if path != "/api/streams" or "src" not in q:
                    return self.reply(400, b"bad request", "text/plain")
                with api.lock:
                    api.streams[q.get("name", q["src"])] = q["src"]
                self.reply(200)

            def do_DELETE(self):
                path, q = self.parts()
                if path != "/api/streams":
                    return self.reply(404, b"", "text/plain")
                with api.lock:
                    api.streams.pop(q.get("src", ""), None)
                    for c in api.consumers.pop(q.get("src", ""), []):
                        c.close()
                self.reply(200)

            def do_GET(self):
                path, q = self.parts()
                if path == "/api/streams":
                    with api.lock:
                        out = {n: {"producers": [{"url": "rtsp://(hidden)",
                                                  "bytes_recv": sum(c.bytes for c in api.consumers.get(n, []))}]
                                   if api.consumers.get(n) else [{"url": "rtsp://(hidden)"}],
                                   "consumers": [{"type": "WebRTC/UDP"} for _ in api.consumers.get(n, [])]}
                               for n in api.streams}
                    return self.reply(200, json.dumps(out).encode())
                if path == "/api/stream.m3u8" and q.get("src") in api.streams:
                    return self.reply(200, b"#EXTM3U\n#EXT-X-VERSION:3\n", "application/vnd.apple.mpegurl")
                self.reply(404, b"", "text/plain")

            def do_POST(self):
                path, q = self.parts()
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(min(n, 1 << 20)).decode("utf-8", "replace")
                name = q.get("src", "")
                if path != "/api/webrtc":
                    return self.reply(404, b"", "text/plain")
                with api.lock:
                    src = api.streams.get(name)
                if not src:
                    return self.reply(404, b"stream not found", "text/plain")
                if body.startswith("{"):
                    body = json.loads(body).get("sdp", "")
                try:
                    c = Consumer(api, name, src, body, api.ice_address)
                    answer = c.answer()
                except (ValueError, TimeoutError) as e:
                    return self.reply(400, str(e).encode(), "text/plain")
                with api.lock:
                    api.consumers.setdefault(name, []).append(c)
                self.reply(201, answer.encode(), "application/sdp")

        return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--ice-address", default="127.0.0.1")
    a = p.parse_args()
    Gst.init(None)
    host, port = a.listen.rsplit(":", 1)
    api = Api(a.ice_address)
    httpd = ThreadingHTTPServer((host, int(port)), api.handler())
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(f"READY {httpd.server_address[1]}", flush=True)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, lambda *_: loop.quit() or False)
    loop.run()
    with api.lock:
        for cs in api.consumers.values():
            for c in cs:
                c.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
