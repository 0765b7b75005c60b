#!/usr/bin/python3
"""Integration tests of the call targets (modules/matrix in Node, modules/chromecast in Python)
run by the real orchestrator as systemd units in the sandbox: registration with their entity
types and media, configuration through the config service (the access token stays secret),
entities, ConnectEntity/DisconnectEntity driven through the module contract directly (with the
module's own token, as the orchestrator's flow engine will), homeserver down and back and a
revoked token as module state, a cast device killed and back, and kill -9 of each module.

External systems are doubles on loopback (tests/doubles): the Matrix homeserver (node) and a
Chromecast without mDNS (discovery off: no multicast from the sandbox, which shares the host's
network). The test plays the flow engine's part; the camera -> converter -> Matrix flow test
comes with the flow engine."""

import json
import os
import sys
import time
import unittest
import uuid

import grpc

from matrix_homeserver import Homeserver
from orchestrator_harness import BUILD, SOURCE, Orchestrator, free_port, inside, main, opb, wait_until

sys.path.insert(0, os.path.join(SOURCE, "modules", "chromecast", "test"))
import castnet  # noqa: E402  (CastDouble, HlsSource; module stubs from the build tree)
from castnet import module_pb2, module_pb2_grpc  # noqa: E402
from callassistant.config.v1 import config_pb2 as cpb  # noqa: E402
from callassistant.config.v1 import config_pb2_grpc as cgrpc  # noqa: E402

ACCESS = "syt_" + uuid.uuid4().hex  # the matrix module's access token: a secret
BOT, ALICE, ROOM = "@doorbell:double.test", "@alice:double.test", "!family:double.test"
OFFER = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n"
         "a=mid:0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\na=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n")
ANSWER = ("v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n"
          "a=mid:0\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\na=candidate:2 1 udp 2122260223 127.0.0.1 40000 typ host\r\n")


class CallTargets(unittest.TestCase):
    def setUp(self):
        self.hs = Homeserver()
        self.addCleanup(lambda: self.hs.stop())
        self.hs.control("users", {"user_id": BOT, "token": ACCESS})
        self.hs.control("users", {"user_id": ALICE, "token": "alice"})
        self.hs.control("rooms", {"room_id": ROOM, "invite": [BOT, ALICE]})
        self.hls = castnet.HlsSource(host="127.0.0.1")
        self.addCleanup(self.hls.close)
        self.cast_port = free_port()
        self.tv = castnet.CastDouble("TV", str(uuid.uuid4()), port=self.cast_port, address="127.0.0.1", mdns=False)
        self.addCleanup(self.tv.close)
        self.o = Orchestrator("targets", [
            dict(dir="matrix", command=f"exec /usr/bin/node {BUILD}/modules/matrix/src/main.js"),
            dict(dir="chromecast", command=f"cd {BUILD}/modules/chromecast && exec /usr/bin/python3 chromecast_module.py"),
        ])
        self.addCleanup(self.o.cleanup)
        self.o.start()
        self.cfg = cgrpc.ConfigServiceStub(self.o.channel)

    def module_stub(self, name):
        """ModuleService of a module, called with its own token, like the orchestrator does."""
        with open(os.path.join(self.o.runtime_dir, "credentials", f"{name}.token")) as f:
            token = f.read().strip()
        info = self.o.module(name)
        ch = grpc.insecure_channel(f"127.0.0.1:{info.port}")
        self.addCleanup(ch.close)
        stub = module_pb2_grpc.ModuleServiceStub(ch)
        md = (("x-call-assistant-module-token", token),)

        def call(method, request, **kw):
            return getattr(stub, method)(request, metadata=md, timeout=kw.get("timeout", 30))
        call.without_token = lambda method, request: getattr(stub, method)(request, timeout=10)
        return call

    def entity(self, call, eid, pred, what, timeout=20):
        def check():
            e = {x.id: x for x in call("ListEntities", module_pb2.ListEntitiesRequest()).entities}.get(eid)
            return e if e is not None and pred(e) else None
        return wait_until(check, timeout, what)

    def configure(self):
        self.cfg.SetConfig(cpb.SetConfigRequest(module="matrix", config_json=json.dumps({
            "homeserver": self.hs.url, "user_id": BOT, "access_token": ACCESS,
            "rooms": [{"name": "family", "room": ROOM}]})), timeout=30)
        self.cfg.SetConfig(cpb.SetConfigRequest(module="chromecast", config_json=json.dumps({
            "devices": [{"name": "tv", "host": "127.0.0.1", "port": self.cast_port}], "retry_interval_ms": 300})),
            timeout=30)

    def test_register_configure_connect_faults(self):
        o = self.o
        for name in ("matrix", "chromecast"):
            info = o.wait_state(name, "WAITING_FOR_CONFIG", timeout=30)
            self.assertEqual(info.unit, f"call-assistant-module@{name}.service")
        self.assertEqual([t.name for t in o.module("matrix").entity_types], ["matrix_room"])
        self.assertEqual([t.name for t in o.module("chromecast").entity_types], ["cast_target"])
        # What each takes in, as the module registers it (the flow engine's path finding reads it).
        for name, type_, media in (("matrix", "matrix_room", ["webrtc"]), ("chromecast", "cast_target", ["hls"])):
            reg = self.module_stub(name)("RegisterModule", module_pb2.RegisterModuleRequest(module_id=name))
            t = {t.name: t for t in reg.entity_types}[type_]
            self.assertEqual((list(t.media_in), list(t.media_out)), (media, []))

        # A bad configuration is refused by field, and nothing is stored.
        with self.assertRaises(grpc.RpcError) as cm:
            self.cfg.SetConfig(cpb.SetConfigRequest(module="matrix", config_json=json.dumps({
                "homeserver": "ftp://x", "user_id": BOT, "access_token": ACCESS})), timeout=30)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("/homeserver", cm.exception.details())
        self.configure()
        o.wait_state("chromecast", "READY", timeout=30)
        # READY once configured; the module then says it is connected to the homeserver.
        wait_until(lambda: (lambda m: m.status == opb.MODULE_STATUS_READY and "connected to" in m.status_message)(
            o.module("matrix")), 30, "matrix READY and connected")

        mx, cc = self.module_stub("matrix"), self.module_stub("chromecast")
        # Modules take calls only with their token.
        for call in (mx, cc):
            with self.assertRaises(grpc.RpcError) as cm:
                call.without_token("ListEntities", module_pb2.ListEntitiesRequest())
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        self.entity(mx, "family", lambda e: e.state == "idle", "family idle")
        self.entity(cc, "tv", lambda e: e.state == "idle", "tv idle")

        # Chromecast: cast the live HLS stream; the device plays it (and decodes a segment); stop.
        resp = cc("ConnectEntity", module_pb2.ConnectEntityRequest(
            id="tv", flow_id="flow-cast", input=module_pb2.MediaLink(media="hls", url=self.hls.url)))
        self.assertEqual(resp.entity.state, "casting")
        wait_until(lambda: self.tv.state().get("hls", {}).get("decoded"), 30, f"the TV to decode: {self.tv.state()}")
        cc("DisconnectEntity", module_pb2.DisconnectEntityRequest(id="tv", flow_id="flow-cast"))
        wait_until(lambda: self.tv.state().get("app") is None, 10, "the receiver to stop")

        # Matrix: the converter's offer goes out as m.call.invite; the answer makes the room in_call.
        resp = mx("ConnectEntity", module_pb2.ConnectEntityRequest(
            id="family", flow_id="flow-call", input=module_pb2.MediaLink(media="webrtc", sdp=OFFER, sdp_type="offer")))
        self.assertEqual(resp.entity.state, "ringing")
        invite = self.hs.events("m.call.invite")[-1]
        self.assertEqual(invite["sender"], BOT)
        self.assertTrue(invite["content"]["offer"]["sdp"].startswith(OFFER))
        call_id = invite["content"]["call_id"]
        self.hs.control("send", {"user_id": ALICE, "room_id": ROOM, "type": "m.call.answer", "content": {
            "call_id": call_id, "party_id": "alice", "version": "1", "answer": {"type": "answer", "sdp": ANSWER}}})
        self.entity(mx, "family", lambda e: e.state == "in_call", "family in_call")
        mx("DisconnectEntity", module_pb2.DisconnectEntityRequest(id="family", flow_id="flow-call"))
        wait_until(lambda: [e for e in self.hs.events("m.call.hangup") if e["content"]["call_id"] == call_id], 10,
                   "the hangup in the room")

        # The access token is secret: not in the stored config's answers, not in the journal.
        got = self.cfg.GetConfig(cpb.GetConfigRequest(module="matrix"), timeout=5)
        self.assertNotIn(ACCESS, got.config_json)
        self.assertIn("********", got.config_json)
        journal = inside("journalctl", "--no-pager", "-o", "cat", "-u", "call-assistant-module@matrix.service").stdout
        self.assertIn("configured:", journal)
        self.assertNotIn(ACCESS, journal + o.output())

        # Homeserver down: ERROR with the reason (the unit keeps running, not restarted); back: READY.
        port = self.hs.port
        pid = o.module("matrix").main_pid
        self.hs.stop()
        err = o.wait_state("matrix", "ERROR", timeout=30)
        self.assertIn("homeserver unreachable", err.status_message)
        self.entity(mx, "family", lambda e: e.state == "unavailable", "family unavailable")
        self.hs = Homeserver(port)
        self.hs.control("users", {"user_id": BOT, "token": ACCESS})
        self.hs.control("rooms", {"room_id": ROOM, "invite": [BOT, ALICE]})
        o.wait_state("matrix", "READY", timeout=40)
        self.assertEqual(o.module("matrix").main_pid, pid, "the module was not restarted")
        self.entity(mx, "family", lambda e: e.state == "idle", "family idle again", timeout=30)

        # A revoked token: ERROR saying so; working again: READY.
        self.hs.control("revoke", {"token": ACCESS})
        err = o.wait_state("matrix", "ERROR", timeout=40)
        self.assertIn("access token refused", err.status_message)
        self.hs.control("restore", {"token": ACCESS})
        o.wait_state("matrix", "READY", timeout=40)

        # The cast device killed and back.
        self.tv.kill()
        gone = self.entity(cc, "tv", lambda e: e.state == "unavailable", "tv unavailable")
        self.assertRegex(gone.attributes["reason"], "connect")
        self.tv.start()
        self.entity(cc, "tv", lambda e: e.state == "idle", "tv back", timeout=30)

        # kill -9 of each module: systemd restarts it, the orchestrator re-applies its configuration.
        for name, eid in (("matrix", "family"), ("chromecast", "tv")):
            before = o.module(name)
            r = inside("kill", "-9", str(before.main_pid))
            self.assertEqual(r.returncode, 0, r.stderr)
            wait_until(lambda: (lambda m: m.n_restarts > before.n_restarts and m.status == opb.MODULE_STATUS_READY
                                and m)(o.module(name)), 40, f"{name} READY after kill -9")
            fresh = self.module_stub(name)
            self.entity(fresh, eid, lambda e: e.state == "idle", f"{eid} idle after the restart", timeout=30)


if __name__ == "__main__":
    main()
