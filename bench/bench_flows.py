#!/usr/bin/python3
"""The flow benchmark (run by bench/run inside the systemd sandbox): what starting a flow costs.

Three fixture modules on the C SDK (tests/fixtures/c/flow-fixture.c) that answer at once: 100
cameras, a converter module, 100 call targets (rooms that answer the WebRTC offer at once). A
flow camera -> converter -> room makes five module calls: ConnectEntity(source),
CreateEntity + ConnectEntity(converter), ConnectEntity(room), ConnectEntity(converter, the
answer).

  baseline   those five calls made straight from this process (with the modules' tokens),
             one after the other: what the modules themselves cost
  StartFlow  the same flow through the orchestrator, one at a time (p50, p99 of 50)
  100 flows  started at once from 32 client threads: wall time and the orchestrator's CPU
  idle       the orchestrator's CPU over 10 s with the 100 flows active

Target (issue #12): starting one flow costs the orchestrator no more than the module calls it
makes: StartFlow p50 = the baseline p50 + one call to the orchestrator + the durable write.
"""

import concurrent.futures
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from orchestrator_harness import BUILD, Orchestrator, grpc, opb  # noqa: E402
from callassistant.v1 import module_pb2 as mpb, module_pb2_grpc as mgrpc  # noqa: E402

FIXTURE = os.path.join(BUILD, "tests", "fixtures", "flow-fixture")
TICKS = os.sysconf("SC_CLK_TCK")
N = 100


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def ms(seconds):
    return f"{seconds * 1000:8.2f}"


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def module_stub(o, name):
    info = o.module(name)
    with open(os.path.join(o.runtime_dir, "credentials", f"{name}.token")) as f:
        token = f.read().strip()
    ch = grpc.insecure_channel(f"127.0.0.1:{info.port}")
    return mgrpc.ModuleServiceStub(ch), [("x-call-assistant-module-token", token)]


def baseline(o, rounds=50):
    """The five module calls of one flow, made directly, one after the other."""
    (cams, cmd), (conv, vmd), (rooms, rmd) = (module_stub(o, m) for m in ("cams", "conv", "rooms"))
    times = []
    for i in range(rounds):
        flow = f"flow-{i:016x}"
        t0 = time.perf_counter()
        src = cams.ConnectEntity(mpb.ConnectEntityRequest(id="cam-1", flow_id=flow, output_media="rtsp"),
                                 metadata=cmd, timeout=5).output
        e = conv.CreateEntity(mpb.CreateEntityRequest(type="converter", name="bench", config_json="{}"),
                              metadata=vmd, timeout=5)
        offer = conv.ConnectEntity(mpb.ConnectEntityRequest(id=e.id, flow_id=flow, input=src, output_media="webrtc"),
                                   metadata=vmd, timeout=5).output
        answer = rooms.ConnectEntity(mpb.ConnectEntityRequest(id="room-1", flow_id=flow, input=offer),
                                     metadata=rmd, timeout=5).output
        conv.ConnectEntity(mpb.ConnectEntityRequest(id=e.id, flow_id=flow, peer=answer), metadata=vmd, timeout=5)
        times.append(time.perf_counter() - t0)
        conv.DestroyEntity(mpb.DestroyEntityRequest(id=e.id), metadata=vmd, timeout=5)
    return times


def start(o, i):
    t0 = time.perf_counter()
    resp = o.stub.StartFlow(opb.StartFlowRequest(source=opb.EntityRef(module="cams", id=f"cam-{i}"),
                                                 target=opb.EntityRef(module="rooms", id=f"room-{i}")), timeout=60)
    if resp.flow.state != opb.FLOW_STATE_ACTIVE:
        raise SystemExit(f"flow not ACTIVE: {resp.flow.state_reason}")
    return time.perf_counter() - t0, resp.flow.id


def main():
    mods = [dict(dir="cams", command=f"{FIXTURE} --role=source --entities={N}"),
            dict(dir="conv", command=f"{FIXTURE} --role=converter"),
            dict(dir="rooms", command=f"{FIXTURE} --role=target --entities={N}")]
    o = Orchestrator("benchflows", mods)
    try:
        o.start()
        for m in ("cams", "conv", "rooms"):
            o.wait_state(m, "READY", timeout=30)
        wait(lambda: len(o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(), timeout=5).entities) == 6 * N,
             30, "the entities")
        pid = o.proc.pid

        base = baseline(o)
        rpc = []
        for _ in range(50):
            t0 = time.perf_counter()
            o.stub.GetModule(opb.GetModuleRequest(name="cams"), timeout=5)
            rpc.append(time.perf_counter() - t0)
        seq = []
        for i in range(50):
            t, fid = start(o, 1 + i % N)
            seq.append(t)
            o.stub.StopFlow(opb.FlowRequest(id=fid), timeout=30)

        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
            results = list(pool.map(lambda i: start(o, i), range(1, N + 1)))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
        lat = [t for t, _ in results]

        cpu0 = cpu_seconds(pid)
        time.sleep(10)
        idle = (cpu_seconds(pid) - cpu0) / 10 * 100

        print("flow camera -> converter -> room (5 module calls), ms:")
        print("                         p50      p99")
        print(f"  module calls direct {ms(statistics.median(base))} {ms(pct(base, 99))}   (baseline)")
        print(f"  one call to the orchestrator (GetModule) {ms(statistics.median(rpc)).strip()} ms")
        print(f"  StartFlow           {ms(statistics.median(seq))} {ms(pct(seq, 99))}   "
              f"ratio {statistics.median(seq) / statistics.median(base):.2f}; beyond the module calls and the "
              f"call to the orchestrator: {ms(statistics.median(seq) - statistics.median(base) - statistics.median(rpc)).strip()} ms "
              f"(the durable write of the flow, fsync'ed)")
        print(f"  {N} flows at once: {wall:.2f} s wall, StartFlow p50 {ms(statistics.median(lat)).strip()} ms, "
              f"p99 {ms(pct(lat, 99)).strip()} ms; orchestrator CPU {cpu:.2f} s "
              f"({cpu / N * 1000:.2f} ms a flow)")
        print(f"  {N} active flows, idle: orchestrator CPU {idle:.2f}% of a core "
              f"(health checks of 3 modules every 300 ms included)")
        for _, fid in results:
            o.stub.StopFlow(opb.FlowRequest(id=fid), timeout=30)
    finally:
        o.cleanup()


if __name__ == "__main__":
    main()
