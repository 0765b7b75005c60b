"""A real WebRTC peer for the tests: GStreamer's webrtcbin receiving H.264 video and
decoding it (avdec_h264) into raw frames that are counted, with their size. It makes the
offer (complete, ICE candidates gathered: no trickle) and takes the answer. ICE uses only
the addresses given (loopback in the tests)."""

import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

Gst.init(None)


class Receiver:
    def __init__(self, ice_addresses=("127.0.0.1",), decode=True):
        """decode=False counts depayloaded H.264 frames instead of decoded ones (cheaper, for
        benchmarks with many peers)."""
        self.decode = decode
        self.first_frame_time = None
        self.frames = 0
        self.width = self.height = 0
        self.lock = threading.Lock()
        self.gathered = threading.Event()
        self.pipe = Gst.Pipeline.new("receiver")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "recv")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        # PyGObject takes the ICE object's floating reference as its own: keep the wrapper
        # (and so the object) alive as long as webrtcbin.
        self.ice = ice = self.webrtc.get_property("ice-agent")
        ice.set_property("ice-tcp", False)
        self.agent = agent = ice.get_property("agent")
        for a in ice_addresses:
            addr = Nice.Address()
            addr.set_from_string(a)
            agent.add_local_address(addr)
        self.pipe.add(self.webrtc)
        caps = Gst.caps_from_string("application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000,"
                                    "packetization-mode=(string)1,profile-level-id=(string)42e01f")
        self.webrtc.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, caps)
        self.webrtc.connect("pad-added", self._on_pad)
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        self.loop = GLib.MainLoop()
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()
        self.pipe.set_state(Gst.State.PLAYING)

    def _on_gathering(self, *_):
        if self.webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            self.gathered.set()

    def _on_pad(self, _, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        tail = ("avdec_h264 ! videoconvert ! video/x-raw,format=I420" if self.decode
                else "video/x-h264,alignment=au")
        bin_ = Gst.parse_bin_from_description(
            f"queue ! rtph264depay ! h264parse ! {tail} ! appsink name=sink emit-signals=true sync=false", True)
        self.pipe.add(bin_)
        bin_.sync_state_with_parent()
        pad.link(bin_.get_static_pad("sink"))
        bin_.get_by_name("sink").connect("new-sample", self._on_sample)

    def _on_sample(self, sink):
        sample = sink.emit("pull-sample")
        s = sample.get_caps().get_structure(0)
        with self.lock:
            if self.frames == 0:
                self.first_frame_time = time.monotonic()
            self.frames += 1
            self.width, self.height = s.get_value("width"), s.get_value("height")
        return Gst.FlowReturn.OK

    def offer(self, timeout=10):
        """A complete SDP offer (after ICE gathering)."""
        done = threading.Event()
        result = {}

        def on_offer(promise, _, __):
            # Runs on webrtcbin's own thread: never wait for another promise here (the
            # shape of GStreamer's own Python example; other shapes crash PyGObject).
            promise.wait()
            reply = promise.get_reply()  # must outlive offer, which points into it
            offer = reply.get_value("offer")
            p = Gst.Promise.new()
            self.webrtc.emit("set-local-description", offer, p)
            p.interrupt()
            result["ok"] = True
            done.set()

        self.webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, self.webrtc, None))
        if not done.wait(timeout):
            raise TimeoutError("webrtcbin made no offer")
        if not self.gathered.wait(timeout):
            raise TimeoutError("ICE gathering did not complete")
        return self.webrtc.get_property("local-description").sdp.as_text()

    def set_answer(self, sdp_text):
        ok, msg = GstSdp.SDPMessage.new_from_text(sdp_text)
        if ok != GstSdp.SDPResult.OK:
            raise ValueError("not an SDP answer")
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        p = Gst.Promise.new()
        self.webrtc.emit("set-remote-description", answer, p)
        p.interrupt()

    def stats(self):
        with self.lock:
            return self.frames, self.width, self.height

    def close(self):
        self.pipe.set_state(Gst.State.NULL)
        self.loop.quit()
        self.thread.join(timeout=5)
