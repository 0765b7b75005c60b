#!/usr/bin/python3
"""Integration tests of entities and flows: the real orchestrator in the sandbox runs fixture
modules (tests/fixtures/c/flow-fixture.c on the C SDK, tests/fixtures/python/flow_fixture.py on
plain grpcio) that play cameras, converters and call targets and print what they are asked.

Paths through one and two converters, no path, errors, ringing and hang-ups, an external WebRTC
peer, a converter crash that heals, an orchestrator kill -9 after which the flows resume or are
re-created, a module gone for good, 100 flows at once, and no credential anywhere it must not be.
"""

import concurrent.futures
import json
import os
import subprocess
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orchestrator_harness import (BUILD, CTL, SOURCE, Orchestrator, grpc, inside, main, ogrpc, opb,  # noqa: E402
                                  wait_until)
from callassistant.v1 import module_pb2 as mpb, module_pb2_grpc as mgrpc  # noqa: E402

FLOW_FIXTURE = os.path.join(BUILD, "tests", "fixtures", "flow-fixture")
PY_FIXTURE = os.path.join(SOURCE, "tests", "fixtures", "python", "flow_fixture.py")
PYSTUBS = os.path.join(BUILD, "tests", "integration", "pystubs")
FLOW_STATE = {v.number: v.name.replace("FLOW_STATE_", "") for v in opb.FlowState.DESCRIPTOR.values}
SECRET = "s3cret"


def fixture(dir, role, n=1, delay_ms=0, name=None, extra=""):
    return dict(dir=dir, name=name,
                command=f"{FLOW_FIXTURE} --role={role} --entities={n} --delay-ms={delay_ms} {extra}".rstrip())


def ref(module, entity):
    return opb.EntityRef(module=module, id=entity)


CURSOR = [None]  # the journal's end when the current test started: its modules' lines come after


def journal_cursor():
    out = inside("journalctl", "-n", "0", "--show-cursor", "--no-pager").stdout
    return out.strip().rsplit("-- cursor: ", 1)[-1]


def journal(module):
    return inside("journalctl", "-u", f"call-assistant-module@{module}.service", "-o", "cat", "--no-pager",
                  f"--after-cursor={CURSOR[0]}").stdout


def calls(module):
    return [line for line in journal(module).splitlines() if line.startswith("CALL ")]


class Flows(unittest.TestCase):
    def run_orch(self, tag, modules, extra=""):
        CURSOR[0] = journal_cursor()
        o = Orchestrator(tag, modules, config_extra=extra)
        self.addCleanup(o.cleanup)
        o.start()
        for m in modules:
            o.wait_state(m.get("name") or m["dir"], "READY")
        return o

    def wait_entities(self, o, module, n):
        wait_until(lambda: sum(e.available for e in o.stub.ListEntities(
            opb.ListEntitiesOfModulesRequest(module=module), timeout=5).entities) == n, 15,
            f"{n} available entities of {module}")

    def wait_flow(self, o, flow_id, state, timeout=20):
        """Wait for a flow's state through the event stream, with a deadline."""
        events = o.stub.WatchEvents(opb.WatchEventsRequest(initial_state=True), timeout=timeout)
        try:
            next(events)  # the stream is registered: no change can be missed from here on
            f = o.stub.GetFlow(opb.FlowRequest(id=flow_id), timeout=5)
            if FLOW_STATE[f.state] == state:
                return f
            for ev in events:
                if ev.kind == opb.Event.KIND_FLOW_CHANGED and ev.flow.id == flow_id and \
                        FLOW_STATE[ev.flow.state] == state:
                    return ev.flow
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        finally:
            events.cancel()
        f = o.stub.GetFlow(opb.FlowRequest(id=flow_id), timeout=5)
        raise AssertionError(f"flow {flow_id}: {FLOW_STATE[f.state]} ({f.state_reason}), expected {state} "
                             f"within {timeout}s\n--- orchestrator log ---\n{o.output()}")

    def module_entities(self, o, module):
        """Ask the module itself (with its token, as the orchestrator does)."""
        info = o.module(module)
        with open(os.path.join(o.runtime_dir, "credentials", f"{module}.token")) as f:
            token = f.read().strip()
        with grpc.insecure_channel(f"127.0.0.1:{info.port}") as ch:
            return [e.id for e in mgrpc.ModuleServiceStub(ch).ListEntities(
                mpb.ListEntitiesRequest(), timeout=5, metadata=[("x-call-assistant-module-token", token)]).entities]

    def start(self, o, source, target=None, peer=None, timeout=20):
        req = opb.StartFlowRequest(source=ref(*source))
        if target:
            req.target.CopyFrom(ref(*target))
        if peer:
            req.peer_offer_sdp = peer
        return o.stub.StartFlow(req, timeout=timeout)

    def assertNoSecret(self, o, *texts):
        for t in texts + (o.output(),):
            self.assertNotIn(SECRET, str(t))

    # ------------------------------------------------------------------------------------

    def test_one_converter_and_teardown(self):
        o = self.run_orch("flow1", [fixture("cams", "source", 2), fixture("conv", "converter"),
                                    fixture("rooms", "target")])
        self.wait_entities(o, "cams", 2)
        self.wait_entities(o, "rooms", 5)
        media = [e.entity.id for e in o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(media="webrtc"),
                                                          timeout=5).entities]
        self.assertEqual(media, ["hangup-1", "ringer-1", "room-1"])

        resp = self.start(o, ("cams", "cam-1"), ("rooms", "room-1"))
        flow = resp.flow
        self.assertEqual(FLOW_STATE[flow.state], "ACTIVE", flow.state_reason)
        self.assertEqual([(s.module, s.media_in, s.media_out, s.created) for s in flow.steps],
                         [("cams", "", "rtsp", False), ("conv", "rtsp", "webrtc", True),
                          ("rooms", "webrtc", "", False)])
        conv_id = flow.steps[1].entity_id
        self.assertTrue(conv_id)
        self.assertEqual(self.module_entities(o, "conv"), [conv_id])
        # What each module was asked, in order: the converter made an offer, the room answered,
        # the answer went back to the converter.
        self.assertEqual(calls("cams"), [f"CALL ConnectEntity cam-1 {flow.id} in=- out=rtsp peer=-"])
        self.assertEqual(calls("conv"), [
            f"CALL CreateEntity converter {flow.id} step 2",
            f"CALL ConnectEntity {conv_id} {flow.id} in=rtsp/url out=webrtc peer=-",
            f"CALL ConnectEntity {conv_id} {flow.id} in=- out=- peer=webrtc/answer"])
        self.assertEqual(calls("rooms"), [f"CALL ConnectEntity room-1 {flow.id} in=webrtc/offer out=- peer=-"])
        # Stored durably once set up, without the links (the RTSP URL carries a password).
        stored = open(os.path.join(o.state_dir, "flows", f"{flow.id}.json")).read()
        self.assertIn('"ACTIVE"', stored)
        listed = o.stub.ListFlows(opb.ListFlowsRequest(), timeout=5).flows
        self.assertEqual([f.id for f in listed], [flow.id])
        self.assertNoSecret(o, stored, listed, o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(), timeout=5))

        stopped = o.stub.StopFlow(opb.FlowRequest(id=flow.id), timeout=20)
        self.assertEqual(FLOW_STATE[stopped.state], "STOPPED")
        self.assertEqual(self.module_entities(o, "conv"), [])
        self.assertEqual(calls("conv")[3:], [f"CALL DisconnectEntity {conv_id} {flow.id}",
                                             f"CALL DestroyEntity {conv_id}"])
        self.assertEqual(calls("rooms")[1:], [f"CALL DisconnectEntity room-1 {flow.id}"])
        self.assertEqual(calls("cams")[1:], [f"CALL DisconnectEntity cam-1 {flow.id}"])
        self.assertFalse(os.path.exists(os.path.join(o.state_dir, "flows", f"{flow.id}.json")))
        self.assertEqual(list(o.stub.ListFlows(opb.ListFlowsRequest(), timeout=5).flows), [])
        with self.assertRaises(grpc.RpcError) as e:
            o.stub.GetFlow(opb.FlowRequest(id=flow.id), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_failed_destroy_is_tried_again(self):
        # The converter refuses the first DestroyEntity (busy): the flow still stops, and the
        # converter, no flow's any more, is destroyed by a later sweep instead of staying
        # until its module restarts.
        o = self.run_orch("flowdestroy", [fixture("cams", "source"), fixture("conv", "converter", extra="--destroy-fails=1"),
                                          fixture("rooms", "target")])
        self.wait_entities(o, "cams", 1)
        self.wait_entities(o, "rooms", 5)
        flow = self.start(o, ("cams", "cam-1"), ("rooms", "screen-1")).flow
        self.assertEqual(FLOW_STATE[flow.state], "ACTIVE", flow.state_reason)
        conv_id = flow.steps[1].entity_id
        stopped = o.stub.StopFlow(opb.FlowRequest(id=flow.id), timeout=20)
        self.assertEqual(FLOW_STATE[stopped.state], "STOPPED")
        wait_until(lambda: calls("conv").count(f"CALL DestroyEntity {conv_id}") == 2, 15,
                   "DestroyEntity tried again")
        wait_until(lambda: self.module_entities(o, "conv") == [], 10, "the converter gone from the registry")
        self.assertEqual(list(o.stub.ListFlows(opb.ListFlowsRequest(), timeout=5).flows), [])

    def test_late_change_does_not_bring_back_a_destroyed_entity(self):
        # A module reports a change of its converter, and that event reaches the orchestrator
        # only after the converter was destroyed (events and answers use different
        # connections): the registry must not list the converter again.
        o = self.run_orch("flowlate", [fixture("cams", "source"), fixture("conv", "converter"),
                                       fixture("rooms", "target")])
        self.wait_entities(o, "cams", 1)
        self.wait_entities(o, "rooms", 5)
        flow = self.start(o, ("cams", "cam-1"), ("rooms", "screen-1")).flow
        conv_id = flow.steps[1].entity_id
        o.stub.StopFlow(opb.FlowRequest(id=flow.id), timeout=20)
        listed = lambda module: [e.entity.id for e in o.stub.ListEntities(  # noqa: E731
            opb.ListEntitiesOfModulesRequest(module=module), timeout=5).entities]
        self.assertEqual(listed("conv"), [])
        with open(os.path.join(o.runtime_dir, "credentials", "conv.token")) as f:
            token = f.read().strip()
        with grpc.insecure_channel(o.listen) as ch:
            ogrpc.OrchestratorServiceStub(ch).ReportEvent(
                opb.Event(kind=opb.Event.KIND_ENTITY_CHANGED,
                          entity=mpb.Entity(id=conv_id, type="converter", name=f"{flow.id} step 2", state="idle")),
                metadata=[("x-call-assistant-module-token", token)], timeout=5)
        # The same event for a known entity is taken (so the one above was not merely lost).
        with grpc.insecure_channel(o.listen) as ch:
            ogrpc.OrchestratorServiceStub(ch).ReportEvent(
                opb.Event(kind=opb.Event.KIND_ENTITY_CHANGED,
                          entity=mpb.Entity(id="cam-1", type="camera", name="cam-1", state="marker")),
                metadata=[("x-call-assistant-module-token", open(os.path.join(
                    o.runtime_dir, "credentials", "cams.token")).read().strip())], timeout=5)
        wait_until(lambda: any(e.entity.state == "marker" for e in o.stub.ListEntities(
            opb.ListEntitiesOfModulesRequest(module="cams"), timeout=5).entities), 10, "the change of cam-1")
        self.assertEqual(listed("conv"), [])

    def test_requested_flows_are_limited(self):
        # A module may request flows into its own entities (to answer calls), 16 live at the
        # most: the 17th is refused (RESOURCE_EXHAUSTED) and logged; the 16 are ordinary flows.
        o = self.run_orch("flowreq", [fixture("cams", "source"), fixture("conv", "converter"),
                                      dict(dir="phones", command=f"/usr/bin/python3 {PY_FIXTURE} {PYSTUBS} 1 "
                                                                 "--request-flows=17:cams/cam-1")])
        wait_until(lambda: sum(l.startswith("REQUEST ") for l in journal("phones").splitlines()) == 17, 60,
                   "17 answers to the flow requests")
        answers = [l.split(" ", 3) for l in journal("phones").splitlines() if l.startswith("REQUEST ")]
        self.assertEqual([a[2] for a in answers], ["OK"] * 16 + ["RESOURCE_EXHAUSTED"], answers)
        self.assertIn("has 16 requested flows already", answers[16][3])
        flows = o.stub.ListFlows(opb.ListFlowsRequest(), timeout=5).flows
        self.assertEqual(sorted(f.id for f in flows), sorted(a[3] for a in answers[:16]))
        self.assertTrue(all((f.target.module, f.target.id) == ("phones", "phone-1") for f in flows))
        wait_until(lambda: sum(l.startswith("CALL ConnectEntity phone-1") for l in journal("phones").splitlines())
                   == 16, 30, "16 answers delivered to the phone")
        self.assertIn("Refused a flow request of module phones into its entity phone-1", o.output())

    def test_two_converters_and_a_python_target(self):
        o = self.run_orch("flow2", [fixture("cams", "source"), fixture("chain", "chain"), fixture("conv", "converter"),
                                    fixture("rooms", "target"),
                                    dict(dir="pytv", command=f"/usr/bin/python3 {PY_FIXTURE} {PYSTUBS} 1")])
        self.wait_entities(o, "cams", 1)
        self.wait_entities(o, "rooms", 5)
        self.wait_entities(o, "pytv", 1)
        flow = self.start(o, ("cams", "cam-1"), ("rooms", "dash-1")).flow
        self.assertEqual(FLOW_STATE[flow.state], "ACTIVE", flow.state_reason)
        self.assertEqual([(s.module, s.entity_type, s.media_in, s.media_out) for s in flow.steps],
                         [("cams", "camera", "", "rtsp"), ("chain", "transcoder", "rtsp", "mjpeg"),
                          ("chain", "packager", "mjpeg", "dash"), ("rooms", "dash_screen", "dash", "")])
        self.assertEqual(len(self.module_entities(o, "chain")), 2)

        # HLS to a module written in Python.
        tv = self.start(o, ("cams", "cam-1"), ("pytv", "tv-1")).flow
        self.assertEqual(FLOW_STATE[tv.state], "ACTIVE", tv.state_reason)
        self.assertEqual([s.media_out for s in tv.steps], ["rtsp", "hls", ""])
        self.assertEqual(calls("pytv"), [f"CALL ConnectEntity tv-1 {tv.id} in=hls/url"])
        tv_entity = [e for e in o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(module="pytv"),
                                                    timeout=5).entities][0]
        self.assertEqual(tv_entity.entity.state, "playing")

        for f in (flow, tv):
            o.stub.StopFlow(opb.FlowRequest(id=f.id), timeout=20)
        self.assertEqual(self.module_entities(o, "chain"), [])
        self.assertEqual(self.module_entities(o, "conv"), [])
        self.assertEqual(calls("pytv")[1:], [f"CALL DisconnectEntity tv-1 {tv.id}"])

    def test_errors_leave_nothing_behind(self):
        o = self.run_orch("flowerr", [fixture("cams", "source"), fixture("conv", "converter"),
                                      fixture("rooms", "target")])
        self.wait_entities(o, "cams", 1)
        self.wait_entities(o, "rooms", 5)

        def refused(code, contains, **kw):
            with self.assertRaises(grpc.RpcError) as e:
                self.start(o, **kw)
            self.assertEqual(e.exception.code(), code, e.exception.details())
            self.assertIn(contains, e.exception.details())

        # No converter gives dash: no path, and the message says what was tried.
        refused(grpc.StatusCode.INVALID_ARGUMENT, "gives rtsp, the target takes dash",
                source=("cams", "cam-1"), target=("rooms", "dash-1"))
        refused(grpc.StatusCode.NOT_FOUND, "no such module nosuch", source=("nosuch", "x"), target=("rooms", "room-1"))
        refused(grpc.StatusCode.NOT_FOUND, "module cams has no entity cam-9", source=("cams", "cam-9"),
                target=("rooms", "room-1"))
        refused(grpc.StatusCode.INVALID_ARGUMENT, "either a target entity or a peer",
                source=("cams", "cam-1"), target=("rooms", "room-1"), peer="v=0")
        refused(grpc.StatusCode.INVALID_ARGUMENT, "the same entity", source=("cams", "cam-1"),
                target=("cams", "cam-1"))
        o.stub.StopModule(opb.ModuleRequest(name="rooms"), timeout=10)
        o.wait_state("rooms", "STOPPED")
        refused(grpc.StatusCode.FAILED_PRECONDITION, "module rooms is STOPPED", source=("cams", "cam-1"),
                target=("rooms", "room-1"))
        self.assertEqual([c for c in calls("conv") if "CreateEntity" in c], [])
        self.assertEqual(list(o.stub.ListFlows(opb.ListFlowsRequest(), timeout=5).flows), [])
        with self.assertRaises(grpc.RpcError) as e:
            o.stub.StopFlow(opb.FlowRequest(id="flow-0000000000000000"), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_ringing_hangup_and_external_peer(self):
        o = self.run_orch("flowring", [fixture("cams", "source"), fixture("conv", "converter", delay_ms=20),
                                       fixture("rooms", "target")])
        self.wait_entities(o, "cams", 1)
        self.wait_entities(o, "rooms", 5)

        ringing = self.start(o, ("cams", "cam-1"), ("rooms", "ringer-1")).flow
        self.assertEqual(FLOW_STATE[ringing.state], "PENDING")
        self.assertIn("ringing", ringing.state_reason)
        self.assertEqual(ringing.steps[2].state, "ringing")
        active = self.wait_flow(o, ringing.id, "ACTIVE")
        self.assertEqual(active.steps[2].state, "connected")
        conv_id = active.steps[1].entity_id
        self.assertIn(f"CALL ConnectEntity {conv_id} {ringing.id} in=- out=- peer=webrtc/answer", calls("conv"))

        hung = self.start(o, ("cams", "cam-1"), ("rooms", "hangup-1")).flow
        self.assertEqual(FLOW_STATE[hung.state], "ACTIVE")
        stopped = self.wait_flow(o, hung.id, "STOPPED")
        self.assertIn("ended by rooms (hangup-1): the remote party hung up", stopped.state_reason)
        wait_until(lambda: f"CALL DestroyEntity {hung.steps[1].entity_id}" in calls("conv"), 10,
                   "the hung-up flow's converter destroyed")

        # The dashboard's live view: a browser's offer, answered by a converter.
        resp = self.start(o, ("cams", "cam-1"), peer="v=0 browser-offer")
        self.assertEqual(FLOW_STATE[resp.flow.state], "ACTIVE", resp.flow.state_reason)
        self.assertFalse(resp.flow.HasField("target"))
        peer_conv = resp.flow.steps[1].entity_id
        self.assertEqual(resp.peer_answer_sdp, f"v=0 answer-from:{peer_conv} to:v=0 browser-offer")
        self.assertFalse(os.path.exists(os.path.join(o.state_dir, "flows", f"{resp.flow.id}.json")))
        o.stub.StopFlow(opb.FlowRequest(id=resp.flow.id), timeout=20)
        o.stub.StopFlow(opb.FlowRequest(id=ringing.id), timeout=20)
        self.assertEqual(self.module_entities(o, "conv"), [])

    def test_converter_crash_heals(self):
        o = self.run_orch("flowheal", [fixture("cams", "source"), fixture("conv", "converter"),
                                       fixture("rooms", "target")])
        self.wait_entities(o, "cams", 1)
        self.wait_entities(o, "rooms", 5)
        flow = self.start(o, ("cams", "cam-1"), ("rooms", "room-1")).flow
        self.assertEqual(FLOW_STATE[flow.state], "ACTIVE")
        self.assertEqual(flow.n_heals, 0)
        pid = o.module("conv").main_pid
        inside("systemctl", "kill", "-s", "KILL", "call-assistant-module@conv.service", check=True)
        degraded = self.wait_flow(o, flow.id, "DEGRADED")
        self.assertIn("module conv", degraded.state_reason)
        healed = self.wait_flow(o, flow.id, "ACTIVE")
        self.assertEqual(healed.n_heals, 1)
        self.assertIn("healed", healed.state_reason)
        self.assertNotEqual(o.module("conv").main_pid, pid)
        self.assertEqual(self.module_entities(o, "conv"), [healed.steps[1].entity_id])
        # The room was called again with the new converter's offer.
        self.assertEqual(len([c for c in calls("rooms") if c.startswith("CALL ConnectEntity room-1")]), 2)
        o.stub.StopFlow(opb.FlowRequest(id=flow.id), timeout=20)
        self.assertEqual(self.module_entities(o, "conv"), [])

    def test_orchestrator_kill9_resumes_or_recreates(self):
        mods = [fixture("cams", "source"), fixture("conv", "converter"), fixture("rooms", "target")]
        o = self.run_orch("flowrestart", mods)
        self.wait_entities(o, "cams", 1)
        self.wait_entities(o, "rooms", 5)
        flow = self.start(o, ("cams", "cam-1"), ("rooms", "room-1")).flow
        conv_id = flow.steps[1].entity_id

        # 1. The orchestrator dies; its modules keep running and are adopted: the flow resumes
        #    as it was, with the same entity and no call to any module.
        o.kill(signal.SIGKILL)
        before = len(calls("conv"))
        o.start()
        resumed = self.wait_flow(o, flow.id, "ACTIVE")
        self.assertIn("resumed", resumed.state_reason)
        self.assertEqual(resumed.steps[1].entity_id, conv_id)
        self.assertEqual(len(calls("conv")), before)

        # 2. It dies again, and the converter with it: at the next start the flow is re-created.
        o.kill(signal.SIGKILL)
        inside("systemctl", "kill", "-s", "KILL", "call-assistant-module@conv.service", check=True)
        def restarted():
            show = dict(line.split("=", 1) for line in inside(
                "systemctl", "show", "-p", "NRestarts", "-p", "SubState",
                "call-assistant-module@conv.service").stdout.split())
            return show.get("NRestarts", "0") != "0" and show.get("SubState") == "running"
        wait_until(restarted, 15, "systemd to restart the converter module")
        o.start()
        healed = self.wait_flow(o, flow.id, "ACTIVE")
        self.assertEqual(healed.n_heals, 1)
        self.assertEqual(self.module_entities(o, "conv"), [healed.steps[1].entity_id])
        self.assertEqual(len([c for c in calls("conv") if "CreateEntity" in c]), 2)

        # 3. A converter left over by a flow the orchestrator does not know (it died while
        #    setting it up) is destroyed once its module is READY again.
        with open(os.path.join(o.runtime_dir, "credentials", "conv.token")) as f:
            token = f.read().strip()
        with grpc.insecure_channel(f"127.0.0.1:{o.module('conv').port}") as ch:
            orphan = mgrpc.ModuleServiceStub(ch).CreateEntity(
                mpb.CreateEntityRequest(type="converter", name="flow-00000000000000ab step 2", config_json="{}"),
                timeout=5, metadata=[("x-call-assistant-module-token", token)]).id
        o.kill(signal.SIGKILL)
        o.start()
        self.wait_flow(o, flow.id, "ACTIVE")
        wait_until(lambda: orphan not in self.module_entities(o, "conv"), 10, "the orphan destroyed")
        self.assertEqual(self.module_entities(o, "conv"), [healed.steps[1].entity_id])

    def wait_healed(self, o, flows, timeout=20):
        def healed():
            got = [o.stub.GetFlow(opb.FlowRequest(id=f.id), timeout=5) for f in flows]
            return got if all(FLOW_STATE[g.state] == "ACTIVE" and g.n_heals == 1 for g in got) else None
        try:
            return wait_until(healed, timeout, "the flows healed")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- orchestrator log ---\n{o.output()}") from None

    def test_restarted_module_reuses_entity_ids(self):
        # A module that lost its entities in a restart gives new ones the old ids ("converter-1"
        # again: the C SDK counts from 1 in each process). A flow that heals later (its camera
        # is slow to answer) must not take the converter another flow created meanwhile.
        o = self.run_orch("flowids", [fixture("cams", "source"), fixture("slowcams", "source", delay_ms=600),
                                      fixture("conv", "converter"), fixture("rooms", "target", 2)])
        self.wait_entities(o, "slowcams", 1)
        self.wait_entities(o, "rooms", 10)
        slow = self.start(o, ("slowcams", "cam-1"), ("rooms", "room-1")).flow
        fast = self.start(o, ("cams", "cam-1"), ("rooms", "room-2")).flow
        self.assertEqual((slow.steps[1].entity_id, fast.steps[1].entity_id), ("converter-1", "converter-2"))
        inside("systemctl", "kill", "-s", "KILL", "call-assistant-module@conv.service", check=True)
        slow, fast = self.wait_healed(o, (slow, fast))
        # The fast flow healed first and got converter-1; the slow one has its own.
        self.assertEqual(fast.steps[1].entity_id, "converter-1")
        self.assertEqual(slow.steps[1].entity_id, "converter-2")
        self.assertEqual(sorted(self.module_entities(o, "conv")), ["converter-1", "converter-2"])
        self.assertIn(f"CALL ConnectEntity converter-2 {slow.id} in=rtsp/url out=webrtc peer=-", calls("conv"))
        for f in (slow, fast):
            o.stub.StopFlow(opb.FlowRequest(id=f.id), timeout=20)
        self.assertEqual(self.module_entities(o, "conv"), [])

    def test_restarted_module_reuses_entity_ids_after_orchestrator_restart(self):
        # The same while the orchestrator is away: the stored flows are checked at its start. The
        # slow flow's module comes back later (it sleeps at start); by then the fast flow has
        # healed with a converter that has the slow flow's old id: the slow flow is not
        # "resumed" on it, it is healed with a converter of its own.
        slowcams = dict(dir="slowcams", command=f"/bin/sh -c 'sleep 2; exec {FLOW_FIXTURE} --role=source'")
        o = self.run_orch("flowids2", [fixture("cams", "source"), slowcams, fixture("conv", "converter"),
                                       fixture("rooms", "target", 2)])
        self.wait_entities(o, "slowcams", 1)
        self.wait_entities(o, "rooms", 10)
        slow = self.start(o, ("slowcams", "cam-1"), ("rooms", "room-1")).flow
        fast = self.start(o, ("cams", "cam-1"), ("rooms", "room-2")).flow
        self.assertEqual((slow.steps[1].entity_id, fast.steps[1].entity_id), ("converter-1", "converter-2"))
        o.kill(signal.SIGKILL)

        def restarted(unit, n):
            show = dict(line.split("=", 1) for line in inside(
                "systemctl", "show", "-p", "NRestarts", "-p", "SubState", unit).stdout.split())
            return int(show.get("NRestarts", "0")) >= n and show.get("SubState") == "running"
        for unit in ("call-assistant-module@conv.service", "call-assistant-module@slowcams.service"):
            inside("systemctl", "kill", "-s", "KILL", unit, check=True)
            wait_until(lambda: restarted(unit, 1), 15, f"systemd to restart {unit}")
        o.start()  # slowcams is still in its sleep
        slow, fast = self.wait_healed(o, (slow, fast))
        self.assertIn("healed", slow.state_reason)
        self.assertEqual(fast.steps[1].entity_id, "converter-1")
        self.assertEqual(slow.steps[1].entity_id, "converter-2")
        self.assertEqual(sorted(self.module_entities(o, "conv")), ["converter-1", "converter-2"])

    def test_module_gone_for_good_fails_the_flow(self):
        flag = os.path.join(BUILD, "tests", "integration", f"gone-{os.getpid()}")
        self.addCleanup(lambda: os.path.exists(flag) and os.unlink(flag))
        conv = dict(dir="conv", command=f"/bin/sh -c 'test -e {flag} && exit 1; exec {FLOW_FIXTURE} "
                                        f"--role=converter'")
        o = self.run_orch("flowgone", [fixture("cams", "source"), conv, fixture("rooms", "target")])
        self.wait_entities(o, "cams", 1)
        self.wait_entities(o, "rooms", 5)
        flow = self.start(o, ("cams", "cam-1"), ("rooms", "room-1")).flow
        open(flag, "w").close()
        inside("systemctl", "kill", "-s", "KILL", "call-assistant-module@conv.service", check=True)
        o.wait_state("conv", "FAILED", timeout=30)
        failed = self.wait_flow(o, flow.id, "FAILED")
        self.assertIn("module conv", failed.state_reason)
        # The other ends were disconnected; the failed flow stays listed until stopped.
        wait_until(lambda: f"CALL DisconnectEntity room-1 {flow.id}" in calls("rooms"), 10, "room disconnected")
        self.assertEqual([f.id for f in o.stub.ListFlows(opb.ListFlowsRequest(), timeout=5).flows], [flow.id])
        o.stub.StopFlow(opb.FlowRequest(id=flow.id), timeout=20)
        self.assertEqual(list(o.stub.ListFlows(opb.ListFlowsRequest(), timeout=5).flows), [])

    def test_ctl_entities_and_flows(self):
        o = self.run_orch("flowctl", [fixture("cams", "source", extra="--hostile-state"),
                                      fixture("conv", "converter"), fixture("rooms", "target")])
        self.wait_entities(o, "cams", 1)
        self.wait_entities(o, "rooms", 5)

        def ctl(*args):
            return subprocess.run([CTL, "--socket", o.control, *args], capture_output=True, text=True, timeout=30)

        r = ctl("entities")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"cams\s+cam-1\s+camera\s+yes\s+-\s+rtsp\s")
        # What a module reports is untrusted: its escape sequences reach the terminal escaped.
        self.assertIn(r"idle\x1b]0;owned\x07\x1b[2J", r.stdout)
        self.assertNotIn("\x1b", r.stdout)
        r = ctl("--json", "--media=hls", "entities")
        self.assertEqual(sorted(e["id"] for e in json.loads(r.stdout)), ["screen-1"])
        self.assertEqual(json.loads(ctl("--json", "entities", "cams").stdout)[0]["media_out"], ["rtsp"])
        self.assertEqual(ctl("entities", "nosuch").returncode, 4)

        r = ctl("--json", "flow", "start", "cams/cam-1", "rooms/screen-1")
        self.assertEqual(r.returncode, 0, r.stderr)
        flow = json.loads(r.stdout)
        self.assertEqual(flow["state"], "ACTIVE")
        self.assertEqual([s["media_out"] for s in flow["steps"]], ["rtsp", "hls", ""])
        r = ctl("flow", "list")
        self.assertRegex(r.stdout, flow["id"] + r"\s+ACTIVE\s+cams/cam-1\s+rooms/screen-1\s+0\s+rtsp>hls")
        r = ctl("flow", "status", flow["id"])
        self.assertIn("2. conv/", r.stdout)
        self.assertNotIn("\x1b", r.stdout)
        self.assertIn("(converter, created) rtsp -> hls: connected", r.stdout)
        self.assertNoSecret(o, r.stdout, ctl("--json", "flow", "list").stdout)

        r = ctl("flow", "start", "cams/cam-1", "rooms/dash-1")
        self.assertEqual(r.returncode, 7)
        self.assertIn("no path", r.stderr)
        self.assertEqual(ctl("flow", "start", "cams", "rooms/dash-1").returncode, 2)
        self.assertEqual(ctl("flow", "status", "flow-0000000000000000").returncode, 4)

        r = ctl("--json", "flow", "stop", flow["id"])
        self.assertEqual(json.loads(r.stdout)["state"], "STOPPED")
        self.assertEqual(json.loads(ctl("--json", "flow", "list").stdout), [])

    def test_hundred_flows_at_once(self):
        o = self.run_orch("flow100", [fixture("cams", "source", 100), fixture("conv", "converter"),
                                      fixture("rooms", "target", 100)])
        self.wait_entities(o, "cams", 100)
        self.wait_entities(o, "rooms", 500)
        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
            flows = list(pool.map(lambda i: self.start(o, ("cams", f"cam-{i}"), ("rooms", f"room-{i}"),
                                                       timeout=60).flow, range(1, 101)))
        self.assertEqual([FLOW_STATE[f.state] for f in flows], ["ACTIVE"] * 100)
        self.assertEqual(len({f.steps[1].entity_id for f in flows}), 100)
        self.assertEqual(len(o.stub.ListFlows(opb.ListFlowsRequest(), timeout=5).flows), 100)
        self.assertEqual(len(self.module_entities(o, "conv")), 100)
        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
            stopped = list(pool.map(lambda f: o.stub.StopFlow(opb.FlowRequest(id=f.id), timeout=60), flows))
        self.assertEqual([FLOW_STATE[f.state] for f in stopped], ["STOPPED"] * 100)
        self.assertEqual(self.module_entities(o, "conv"), [])
        self.assertEqual(list(o.stub.ListFlows(opb.ListFlowsRequest(), timeout=5).flows), [])


if __name__ == "__main__":
    main()
