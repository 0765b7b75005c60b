#!/usr/bin/python3
"""Integration tests of the module lifecycle, against the sandbox's real systemd, D-Bus and
journald, with the real daemon and real gRPC peers (the C fixture module on the SDK)."""

import os
import re
import subprocess
import signal
import time
import unittest

import grpc

from orchestrator_harness import (BUILD, CTL, SOURCE, Orchestrator, inside, main, opb, ogrpc, wait_until)


class Lifecycle(unittest.TestCase):
    def run_orch(self, tag, modules, **kw):
        o = Orchestrator(tag, modules, **kw)
        self.addCleanup(o.cleanup)
        return o.start()

    def test_dependency_order_systemd_and_journal(self):
        o = self.run_orch("order", [dict(dir="ordc", deps=["ordb"]), dict(dir="ordb", deps=["orda"]),
                                    dict(dir="orda")])
        infos = {n: o.wait_state(n, "READY") for n in ("orda", "ordb", "ordc")}
        # Each module registered only after its dependency was READY.
        self.assertLess(infos["orda"].registered_at_usec, infos["ordb"].registered_at_usec)
        self.assertLess(infos["ordb"].registered_at_usec, infos["ordc"].registered_at_usec)
        for n in ("orda", "ordb", "ordc"):
            unit = f"call-assistant-module@{n}.service"
            self.assertEqual(infos[n].unit, unit)
            st = inside("systemctl", "status", unit, "--no-pager")
            self.assertEqual(st.returncode, 0, st.stdout + st.stderr)
            self.assertIn("Active: active (running)", st.stdout)
            # Its output is in the journal for the unit, tagged with the module's name.
            wait_until(lambda: "serving on" in inside("journalctl", "-u", unit, "-o", "short",
                                                       "--no-pager").stdout, 10, f"{n}'s log")
            log = inside("journalctl", "-u", unit, "-o", "short", "--no-pager").stdout
            self.assertRegex(log, rf" {n}\[\d+\]: fixture: mode normal")
            fields = inside("journalctl", f"CALL_ASSISTANT_MODULE={n}", "-o", "cat", "--no-pager").stdout
            self.assertIn("serving on", fields)
        # call-assistantctl sees the same.
        env = dict(os.environ, CALL_ASSISTANT_CONTROL_SOCKET=o.control)
        import subprocess
        out = subprocess.run([CTL, "list"], env=env, capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r"orda\s+READY\s+active/running")
        bad = subprocess.run([CTL, "status", "nosuch"], env=env, capture_output=True, text=True)
        self.assertEqual(bad.returncode, 4)

    def test_module_sandbox_state_directory_and_main_process(self):
        # What docs/writing-a-module.md promises a module: its command is exec'd (the program is
        # the unit's main process), its folder is read-only, /tmp is private and emptied on
        # every stop, and $STATE_DIRECTORY persists across restarts.
        o = self.run_orch("probe", [dict(dir="prober", mode="probe")])
        unit = "call-assistant-module@prober.service"
        state_dir = "/var/lib/call-assistant-modules/prober"
        self.addCleanup(lambda: inside("rm", "-rf", state_dir, "/var/lib/private/call-assistant-modules/prober"))
        first = o.wait_state("prober", "READY")
        comm = inside("cat", f"/proc/{first.main_pid}/comm").stdout.strip()
        self.assertEqual(comm, "fixture-module", "the unit's main process must be the module, not /bin/sh")

        def probe_lines():
            out = inside("journalctl", "-u", unit, "-o", "cat", "--no-pager").stdout
            return [l for l in out.splitlines() if l.startswith("fixture: probe ")]
        lines = wait_until(probe_lines, 10, "the probe line in the journal")
        self.assertEqual(lines[-1], "fixture: probe starts=1 folder-writable=0 tmp-left=0")
        self.assertEqual(inside("cat", f"{state_dir}/starts").stdout.strip(), "1")

        # Restarted through systemd: a new process, /tmp empty again, the state kept.
        r = inside("systemctl", "restart", unit)
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: len(probe_lines()) == 2, 15, "the second probe line")
        self.assertEqual(probe_lines()[-1], "fixture: probe starts=2 folder-writable=0 tmp-left=0")
        self.assertEqual(inside("cat", f"{state_dir}/starts").stdout.strip(), "2")

    def test_shutdown_deadline_is_honoured(self):
        # ShutdownRequest.deadline_ms (3000) is the time a module has to exit by itself: no
        # SIGTERM before it (it came 10 ms after Shutdown), SIGTERM after it.
        o = self.run_orch("deadline", [dict(dir="tidy", mode="slow-shutdown=1"),
                                       dict(dir="dawdler", mode="slow-shutdown=30")])
        for name in ("tidy", "dawdler"):
            o.wait_state(name, "READY")
        for name in ("tidy", "dawdler"):
            o.stub.StopModule(opb.ModuleRequest(name=name), timeout=5)
        for name in ("tidy", "dawdler"):
            o.wait_state(name, "STOPPED", timeout=20)

        def fixture_line(unit):
            out = inside("journalctl", "-u", unit, "-o", "cat", "--no-pager").stdout
            lines = [l for l in out.splitlines() if l.startswith(("fixture: SIGTERM", "fixture: exiting"))]
            return (out, lines[-1]) if lines else None
        out, line = wait_until(lambda: fixture_line("call-assistant-module@tidy.service"), 10, "tidy's last line")
        self.assertIn("Shutdown requested by the orchestrator.", out)
        self.assertNotIn("Received Terminated", out)
        self.assertRegex(line, r"^fixture: exiting by itself after 1\d\d\d ms$")
        out, line = wait_until(lambda: fixture_line("call-assistant-module@dawdler.service"), 10,
                               "dawdler's last line")
        m = re.match(r"^fixture: SIGTERM after (\d+) ms$", line)
        self.assertIsNotNone(m, line)
        self.assertGreaterEqual(int(m.group(1)), 2500)  # not before the 3000 ms deadline
        self.assertLess(int(m.group(1)), 20000)          # but once it has passed
        self.assertIn("still running 3000 ms after Shutdown", o.output())

    def test_reload_applies_or_refuses(self):
        # SIGHUP (systemctl reload): a bad file is refused and nothing changes; a good one is
        # applied where it can be; nothing is stopped either way.
        o = self.run_orch("reload", [dict(dir="steady")])
        before = o.wait_state("steady", "READY")
        with open(o.config) as f:
            good = f.read()
        with open(o.config, "w") as f:
            f.write(good + "health: [unclosed\n")
        os.kill(o.proc.pid, signal.SIGHUP)
        wait_until(lambda: "Reload refused" in o.output(), 10, "the refusal in the log")
        self.assertRegex(o.output(), r"config\.yaml:\d+:\d+: error: ")
        self.assertIsNone(o.proc.poll())
        self.assertEqual(o.module("steady").main_pid, before.main_pid)
        self.assertEqual(o.module("steady").status, opb.MODULE_STATUS_READY)

        with open(o.config, "w") as f:
            f.write(good.replace("stop_timeout_sec: 2", "stop_timeout_sec: 3") +
                    "ports:\n  min: 51000\n  max: 51999\n")
        os.kill(o.proc.pid, signal.SIGHUP)
        wait_until(lambda: "Reloaded the configuration" in o.output(), 10, "the reload in the log")
        self.assertIn("Reloaded the configuration: 1 setting(s) changed and applied", o.output())
        self.assertIn("Reload: ports changed (50100-50999 -> 51000-51999); it applies at the next restart",
                      o.output())
        self.assertIsNone(o.proc.poll())
        self.assertEqual(o.module("steady").main_pid, before.main_pid)
        # The unit setting applies to the module's next start.
        o.stub.StopModule(opb.ModuleRequest(name="steady"), timeout=5)
        o.wait_state("steady", "STOPPED")
        o.stub.StartModule(opb.ModuleRequest(name="steady"), timeout=5)
        o.wait_state("steady", "READY")
        timeout = inside("systemctl", "show", "-P", "TimeoutStopUSec", "call-assistant-module@steady.service")
        self.assertEqual(timeout.stdout.strip(), "3s")

    def test_refused_schema_shown_in_status(self):
        # A schema the config service refuses (a pattern with \S) makes the module ERROR with the
        # reason, in `call-assistantctl status`, not only in the orchestrator's journal.
        o = self.run_orch("schema", [dict(dir="schemer", mode="bad-schema")])
        err = o.wait_state("schemer", "ERROR")
        self.assertIn("its configuration schema was refused: /properties/name/pattern: \\S (white space",
                      err.status_message)
        # The module then reports READY (as the SDK does after registering): it stays in ERROR.
        wait_until(lambda: "fixture: reported READY again" in inside(
            "journalctl", "-u", "call-assistant-module@schemer.service", "-o", "cat").stdout, 10,
            "the fixture to report READY")
        self.assertEqual(o.module("schemer").status, opb.MODULE_STATUS_ERROR)
        import subprocess
        out = subprocess.run([CTL, "status", "schemer"], capture_output=True, text=True,
                             env=dict(os.environ, CALL_ASSISTANT_CONTROL_SOCKET=o.control))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r"State: ERROR \(its configuration schema was refused: "
                                     r"/properties/name/pattern: \\S \(white space")

    def test_stop_start_keeps_the_port(self):
        # The port of a stopped module is in TIME_WAIT (its connections closed); it gets it back.
        o = self.run_orch("portkeep", [dict(dir="keeper")])
        before = o.wait_state("keeper", "READY")
        wait_until(lambda: o.module("keeper").health == opb.HEALTH_STATUS_SERVING, 10, "a health check")
        o.stub.StopModule(opb.ModuleRequest(name="keeper"), timeout=5)
        o.wait_state("keeper", "STOPPED")
        o.stub.StartModule(opb.ModuleRequest(name="keeper"), timeout=5)
        after = o.wait_state("keeper", "READY")
        self.assertEqual(after.port, before.port)
        self.assertNotEqual(after.main_pid, before.main_pid)

    def test_kill9_restarted_by_systemd_and_ready_again(self):
        o = self.run_orch("kill", [dict(dir="victim")])
        before = o.wait_state("victim", "READY")
        self.assertEqual(before.n_restarts, 0)
        r = inside("kill", "-9", str(before.main_pid))
        self.assertEqual(r.returncode, 0, r.stderr)
        # Back to READY without help, as a new process.
        def restarted():
            m = o.module("victim")
            return m if m.n_restarts == 1 and o.modules()["victim"].status == opb.MODULE_STATUS_READY else None
        after = wait_until(restarted, 15, "victim READY again after kill -9")
        self.assertNotEqual(after.main_pid, before.main_pid)
        self.assertGreater(after.registered_at_usec, before.registered_at_usec)

    def test_crash_loop_fails_others_stay_ready(self):
        o = self.run_orch("loop", [dict(dir="looper", mode="crash-loop"), dict(dir="steady")])
        failed = o.wait_state("looper", "FAILED", timeout=20)
        self.assertIn("result: exit-code", failed.status_message)
        self.assertIn("3 restarts", failed.status_message)
        self.assertEqual(o.module("steady").status, opb.MODULE_STATUS_READY)
        self.assertEqual(inside("systemctl", "is-failed", "call-assistant-module@looper.service").stdout.strip(),
                         "failed")

    def test_never_listening_is_error_within_deadline(self):
        o = self.run_orch("never", [dict(dir="mute", mode="never-listen")])
        t0 = time.monotonic()
        err = o.wait_state("mute", "ERROR", timeout=15)
        self.assertLess(time.monotonic() - t0, 3 + 5)  # registration_timeout_ms is 3000
        self.assertIn("did not answer RegisterModule", err.status_message)
        wait_until(lambda: inside("systemctl", "is-active", "call-assistant-module@mute.service").stdout.strip()
                   in ("inactive", "failed"), 10, "the unit stopped")

    def test_slow_start_hang_and_late_crash(self):
        o = self.run_orch("misc", [dict(dir="slow", mode="slow-start=2"), dict(dir="hangs", mode="hang-register"),
                                   dict(dir="late", mode="crash-after=2")])
        # One that crashes 2 s after starting is restarted by systemd and READY again.
        first = o.wait_state("late", "READY", timeout=15)
        # A module that takes 2 s to listen still registers (the call waits for its server).
        slow = o.wait_state("slow", "READY", timeout=15)
        self.assertEqual(slow.n_restarts, 0)
        # One that hangs inside RegisterModule is an ERROR at the registration deadline (3 s).
        err = o.wait_state("hangs", "ERROR", timeout=15)
        self.assertIn("did not answer RegisterModule", err.status_message)
        def again():
            m = o.module("late")
            return m if m.n_restarts > first.n_restarts and m.status == opb.MODULE_STATUS_READY else None
        after = wait_until(again, 20, "late READY again after its crash")
        self.assertNotEqual(after.main_pid, first.main_pid)

    def test_bad_manifests_reported_rest_start(self):
        o = self.run_orch("bad", [
            dict(dir="good"),
            dict(dir="badyaml", raw='name: "x\nversion: [\n'),
            dict(dir="nocmd", raw='name: nocmd\nversion: "1"\ndescription: d\n'),
            dict(dir="dupa", name="twin"), dict(dir="dupb", name="twin"),
            dict(dir="orphan", deps=["ghost"]),
            dict(dir="cyca", deps=["cycb"]), dict(dir="cycb", deps=["cyca"]),
            dict(dir="needsbad", deps=["nocmd"]),
        ])
        o.wait_state("good", "READY")
        mods = o.modules()
        for name in ("badyaml", "nocmd", "twin", "dupb", "orphan", "cyca", "cycb", "needsbad"):
            self.assertEqual(mods[name].status, opb.MODULE_STATUS_DISABLED, name)
        self.assertIn("missing dependency 'ghost'", mods["orphan"].status_message)
        self.assertIn("dependency 'nocmd' is disabled", mods["needsbad"].status_message)
        log = o.output()
        self.assertIn("nocmd/module.yaml:1:1: error: field 'command': missing (required)", log)
        self.assertIn("dependency cycle: cyca -> cycb -> cyca", log)
        self.assertIn("badyaml/module.yaml:", log)
        self.assertIn("duplicate module name 'twin'", log)

    def test_orchestrator_kill9_then_adoption(self):
        o = self.run_orch("adopt", [dict(dir="adopta"), dict(dir="adoptb", deps=["adopta"])])
        before = {n: o.wait_state(n, "READY") for n in ("adopta", "adoptb")}
        o.channel.close()
        o.kill(signal.SIGKILL)
        # Modules keep running without the orchestrator.
        self.assertEqual(inside("systemctl", "is-active", "call-assistant-module@adopta.service").stdout.strip(),
                         "active")
        o.start()
        for n in ("adopta", "adoptb"):
            after = o.wait_state(n, "READY")
            self.assertEqual(after.main_pid, before[n].main_pid, f"{n} was restarted instead of adopted")
            self.assertEqual(after.n_restarts, before[n].n_restarts)
            self.assertEqual(after.port, before[n].port)

    def test_clean_shutdown_in_reverse_order(self):
        o = self.run_orch("down", [dict(dir="downa"), dict(dir="downb", deps=["downa"]),
                                   dict(dir="downc", deps=["downb"])])
        o.wait_state("downc", "READY")
        self.assertEqual(o.stop(), 0)
        log = o.output()
        order = [log.index(f"Module {n}: READY -> STOPPING") for n in ("downc", "downb", "downa")]
        self.assertEqual(order, sorted(order), log)
        for n in ("downa", "downb", "downc"):
            self.assertEqual(inside("systemctl", "is-active", f"call-assistant-module@{n}.service").stdout.strip(),
                             "inactive")

    def test_sigterm_ignoring_module_is_killed_after_timeout(self):
        o = self.run_orch("stubborn", [dict(dir="stubborn", mode="ignore-sigterm")])
        o.wait_state("stubborn", "READY")
        t0 = time.monotonic()
        r = inside("systemctl", "stop", "call-assistant-module@stubborn.service", timeout=60)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreaterEqual(elapsed, 1.5)  # stop_timeout_sec is 2: it waited, then SIGKILL
        log = inside("journalctl", "-u", "call-assistant-module@stubborn.service", "--no-pager").stdout
        self.assertRegex(log, r"State '(stop|final)-sigterm' timed out\. Killing\.")
        self.assertIn("Failed with result 'timeout'", log)
        failed = o.wait_state("stubborn", "FAILED")
        self.assertIn("result: timeout", failed.status_message)

    def test_unhealthy_module_restarted(self):
        o = self.run_orch("sick", [dict(dir="sick", mode="hang-health")])
        first = o.wait_state("sick", "READY")
        # Health checks time out, twice: the orchestrator restarts the unit through systemd.
        def replaced():
            m = o.module("sick")
            return m if m.main_pid and m.main_pid != first.main_pid else None
        wait_until(replaced, 20, "the unhealthy module restarted")
        self.assertIn("unhealthy, restarting", o.output())

    def test_identity_and_endpoints(self):
        o = self.run_orch("trust", [dict(dir="trusty")])
        o.wait_state("trusty", "READY")
        ch = grpc.insecure_channel(o.listen)
        stub = ogrpc.OrchestratorServiceStub(ch)
        # No token, or another module's guessed token: refused.
        with self.assertRaises(grpc.RpcError) as e:
            stub.ReportState(opb.ReportStateRequest(state=3), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        with self.assertRaises(grpc.RpcError) as e:
            stub.ReportState(opb.ReportStateRequest(state=3), timeout=5,
                             metadata=[("x-call-assistant-module-token", "0" * 64)])
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        # Control methods are not served on the module-facing endpoint.
        with self.assertRaises(grpc.RpcError) as e:
            stub.StopModule(opb.ModuleRequest(name="trusty"), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        ch.close()
        # The control socket is root-only; the token is in a folder only root may enter.
        self.assertEqual(os.stat(o.control).st_mode & 0o077, 0)
        tok = os.path.join(o.runtime_dir, "credentials", "trusty.token")
        self.assertEqual(os.stat(os.path.dirname(tok)).st_mode & 0o777, 0o700)
        self.assertEqual(os.stat(os.path.dirname(tok)).st_uid, 0)
        # The unit has the path of the token, never the secret itself; systemd opens it as the
        # module's stdin (no credentials mount), and the module runs as a user of its own.
        show = inside("systemctl", "cat", "call-assistant-module@trusty.service").stdout
        with open(tok) as f:
            self.assertNotIn(f.read().strip(), show)
        self.assertRegex(show, r"StandardInput=file:.*/credentials/trusty\.token")
        self.assertNotIn("LoadCredential", show)
        self.assertIn("DynamicUser=yes", show)
        self.assertRegex(show, r"User=ca-trusty-[0-9a-f]{6}")

        # The kernel says who connects to the orchestrator's sockets (SO_PEERCRED): another
        # user gets nothing, even where the file mode would let it in.
        module_sock = o.listen[len("unix:"):]
        os.chmod(o.control, 0o666)
        for path in (o.control, module_sock):
            self.assertEqual(http2_answer(path), b"", f"{path} served a stranger")
            self.assertNotEqual(http2_answer(path, stranger=False), b"", f"{path} refused root")
        wait_until(lambda: "Refused a connection to the control socket from pid" in o.output() and
                   "Refused a connection to the module endpoint from pid" in o.output(), 10,
                   "the refusals logged")

    def test_refuses_to_listen_beyond_loopback(self):
        o = Orchestrator("wide", [dict(dir="wide")])
        self.addCleanup(o.cleanup)
        o.listen = "0.0.0.0:0"
        with self.assertRaises(AssertionError) as e:
            o.start()
        self.assertIn("is not a loopback address", str(e.exception))


    def test_malformed_answers_are_an_error_not_a_crash(self):
        malformed = os.path.join(SOURCE, "tests", "fixtures", "python", "malformed_module.py")
        o = self.run_orch("garbage", [dict(dir="garbage", command=f"/usr/bin/python3 {malformed}"),
                                      dict(dir="fine")])
        err = o.wait_state("garbage", "ERROR", timeout=20)
        self.assertIn("malformed response message", err.status_message)
        o.wait_state("fine", "READY")
        self.assertIsNone(o.proc.poll(), "the orchestrator died")

    def test_flooding_module_is_ready_and_logged(self):
        o = self.run_orch("flood", [dict(dir="flood", mode="flood")])
        o.wait_state("flood", "READY")
        wait_until(lambda: "flood line 1999" in inside("journalctl", "-u", "call-assistant-module@flood.service",
                                                       "-o", "cat", "--no-pager").stdout, 20, "all flood lines")

    def test_entities_listed_and_reported_events_forwarded(self):
        from callassistant.v1 import module_pb2 as mpb, module_pb2_grpc as mgrpc
        o = self.run_orch("ents", [dict(dir="ents"), dict(dir="other")])
        info = o.wait_state("ents", "READY")
        o.wait_state("other", "READY")
        with open(os.path.join(o.runtime_dir, "credentials", "ents.token")) as f:
            token = f.read().strip()
        mch = grpc.insecure_channel(f"127.0.0.1:{info.port}")
        # A module accepts calls only with its own token (the orchestrator's).
        with self.assertRaises(grpc.RpcError) as e:
            mgrpc.ModuleServiceStub(mch).CreateEntity(mpb.CreateEntityRequest(type="thing"), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        mch.close()
        # The registry knows what the modules listed when they became READY: nothing yet.
        wait_until(lambda: o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(), timeout=10) is not None, 5,
                   "ListEntities")
        self.assertEqual(list(o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(), timeout=10).entities), [])
        with self.assertRaises(grpc.RpcError) as e:
            o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(module="nosuch"), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

        # A module reports an entity event, claiming to be someone else: it is passed on, and
        # kept in the registry, under its own name.
        events = o.stub.WatchEvents(opb.WatchEventsRequest(initial_state=True), timeout=20)
        next(events)  # the first initial-state event: the stream is registered
        ch = grpc.insecure_channel(o.listen)
        stub = ogrpc.OrchestratorServiceStub(ch)
        md = [("x-call-assistant-module-token", token)]
        stub.ReportEvent(opb.Event(kind=opb.Event.KIND_ENTITY_ADDED, module="other",
                                   entity=mpb.Entity(id="cam-7", type="thing", state="idle",
                                                     attributes={"where": "hall"})), timeout=5, metadata=md)
        for bad in (opb.Event(kind=opb.Event.KIND_MODULE_CHANGED),
                    opb.Event(kind=opb.Event.KIND_ENTITY_ADDED, entity=mpb.Entity(id="")),
                    opb.Event(kind=opb.Event.KIND_FLOW_SIGNAL, flow_id="flow-x", entity=mpb.Entity(id="cam-7"))):
            with self.assertRaises(grpc.RpcError) as e:
                stub.ReportEvent(bad, timeout=5, metadata=md)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        ch.close()
        for ev in events:
            if ev.kind == opb.Event.KIND_ENTITY_ADDED:
                self.assertEqual(ev.module, "ents")
                self.assertEqual(ev.entity.id, "cam-7")
                break
        events.cancel()

        listed = o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(module="ents"), timeout=10).entities
        self.assertEqual([(e.module, e.entity.id, e.available) for e in listed], [("ents", "cam-7", True)])
        self.assertEqual(listed[0].entity.attributes["where"], "hall")
        self.assertEqual(listed[0].type.name, "thing")
        self.assertEqual(list(listed[0].type.capabilities), ["test"])
        def ids(**query):
            return [e.entity.id for e in
                    o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(**query), timeout=10).entities]
        self.assertEqual(ids(type="thing"), ["cam-7"])
        self.assertEqual(ids(type="camera"), [])
        self.assertEqual(ids(capability="test"), ["cam-7"])
        self.assertEqual(ids(capability="snapshot"), [])
        self.assertEqual(ids(media="rtsp"), [])
        self.assertEqual(ids(module="other"), [])

        # Its module stops: the entity is kept, unavailable.
        o.stub.StopModule(opb.ModuleRequest(name="ents"), timeout=10)
        o.wait_state("ents", "STOPPED")
        listed = o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(module="ents"), timeout=10).entities
        self.assertEqual([(e.entity.id, e.available) for e in listed], [("cam-7", False)])
        # Back: it lists what it has now (a new process has nothing), and that is what is kept.
        o.stub.StartModule(opb.ModuleRequest(name="ents"), timeout=10)
        o.wait_state("ents", "READY")
        wait_until(lambda: ids(module="ents") == [], 10, "the registry to follow the module's listing")

    def test_runs_as_a_type_notify_service(self):
        # The daemon itself as a systemd service inside the sandbox (as call-assistant.service
        # runs it): systemd-run returns once the daemon sent READY=1.
        o = Orchestrator("notify", [dict(dir="notified")])
        self.addCleanup(o.cleanup)
        self.addCleanup(lambda: inside("systemctl", "stop", "ca-notify-test.service"))
        r = inside("systemd-run", "--unit=ca-notify-test", "-p", "Type=notify", "-p", "KillMode=process",
                   "-p", "WatchdogSec=10s", "/usr/bin/env", f"LD_LIBRARY_PATH={BUILD}/src/sdk",
                   os.path.join(BUILD, "call-assistant"), "--config", o.config, "--modules-dir", o.modules_dir,
                   "--state-dir", "/var/lib/ca-notify-test", "--runtime-dir", "/run/ca-notify-test", timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(inside("systemctl", "is-active", "ca-notify-test.service").stdout.strip(), "active")
        def status_ready():
            text = inside("systemctl", "show", "-p", "StatusText", "--value", "ca-notify-test.service").stdout
            return "1 READY" in text
        wait_until(status_ready, 15, "STATUS= with the module READY")
        self.assertEqual(inside("systemctl", "is-active", "call-assistant-module@notified.service").stdout.strip(),
                         "active")
        # Stopping the service stops its modules first.
        self.assertEqual(inside("systemctl", "stop", "ca-notify-test.service", timeout=60).returncode, 0)
        self.assertEqual(inside("systemctl", "is-active", "call-assistant-module@notified.service").stdout.strip(),
                         "inactive")


    def test_user_manager(self):
        # --user: modules become units of a user's service manager (root's, in the sandbox).
        self.assertEqual(inside("systemctl", "start", "user@0.service", timeout=60).returncode, 0)
        self.addCleanup(lambda: inside("systemctl", "stop", "user@0.service", timeout=60))
        o = Orchestrator("usermgr", [dict(dir="userland")])
        self.addCleanup(o.cleanup)
        self.addCleanup(lambda: inside("systemctl", "stop", "ca-user-test.service", timeout=60))
        user_env = ["XDG_RUNTIME_DIR=/run/user/0", "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/0/bus"]
        r = inside("systemd-run", "--unit=ca-user-test", "-p", "Type=notify", "-p", "KillMode=process",
                   "/usr/bin/env", *user_env, "HOME=/root", f"LD_LIBRARY_PATH={BUILD}/src/sdk",
                   os.path.join(BUILD, "call-assistant"), "--user", "--config", o.config,
                   "--modules-dir", o.modules_dir, "--state-dir", "/root/.local/state/ca-user-test",
                   "--runtime-dir", "/run/user/0/ca-user-test", timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        def ready():
            return "1 READY" in inside("systemctl", "show", "-p", "StatusText", "--value",
                                       "ca-user-test.service").stdout
        wait_until(ready, 20, "the module READY under the user manager")
        unit = "call-assistant-module@userland.service"
        user = inside("env", *user_env, "systemctl", "--user", "is-active", unit)
        self.assertEqual(user.stdout.strip(), "active", user.stderr)
        # ... and not a unit of the system manager.
        self.assertNotEqual(inside("systemctl", "is-active", unit).stdout.strip(), "active")


def http2_answer(path, stranger=True):
    """Connect to a unix socket, say hello in HTTP/2, return what the server answers (b"": it
    closed the connection unanswered). stranger: from a service of the sandbox that runs as a
    user of its own (DynamicUser=), as another local service would; else as root on the host."""
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
            "try:\n"
            "  s.sendall(b'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n'+bytes([0,0,0,4,0,0,0,0,0]))\n"
            "  d=s.recv(64)\n"
            "except (BrokenPipeError, ConnectionResetError, socket.timeout): d=b''\n"
            "sys.stdout.write(d.hex())\n")
    argv = ["/usr/bin/python3", "-c", code, path]
    if stranger:
        r = inside("systemd-run", "-q", "--wait", "--pipe", "-p", "DynamicUser=yes",
                   "-p", f"BindReadOnlyPaths={os.path.dirname(path)}", *argv, timeout=60)
    else:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(r.stderr)
    return bytes.fromhex(r.stdout.strip())


if __name__ == "__main__":
    main()
