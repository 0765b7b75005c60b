#!/usr/bin/python3
"""The isolation test of issue 9: a hostile module (tests/fixtures/python/hostile_module.py),
running as a module unit like any other, tries to read another module's token, configuration
and state, signal its processes, bind its port, call its server, report for it, flood the
orchestrator with a message that amplifies when unpacked, and hold the port of a module that
is down. Every attempt must fail and be logged, nothing may leak, and the victim keeps running.
(The hostile module's own lines in the journal log its attempts; the orchestrator logs the
refusals it decides.)"""

import json
import os
import subprocess
import unittest

from orchestrator_harness import (BUILD, CTL, SOURCE, Orchestrator, inside, main, opb, wait_until)

SECRET = "victim-secret-" + os.urandom(6).hex()
HOSTILE = os.path.join(SOURCE, "tests", "fixtures", "python", "hostile_module.py")
PYSTUBS = os.path.join(BUILD, "tests", "integration", "pystubs")


def vm_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


class Isolation(unittest.TestCase):
    def setUp(self):
        self.o = Orchestrator("iso", [
            dict(dir="victim", mode="needs-config"),
            dict(dir="hostile", command=f"CA_PYSTUBS={PYSTUBS} exec /usr/bin/python3 {HOSTILE}"),
            # Starts once the victim is READY, and takes 5 s to open its port: longer than the
            # registration timeout of the tests (3 s). Meanwhile someone else takes the port.
            dict(dir="late", mode="slow-start=5", deps=["victim"]),
        ])
        self.addCleanup(self.o.cleanup)
        self.o.start()
        self.env = dict(os.environ, CALL_ASSISTANT_CONTROL_SOCKET=self.o.control)

    def ctl(self, *args):
        r = subprocess.run([CTL, *args], env=self.env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def journal(self, unit):
        return inside("journalctl", "-u", unit, "-o", "cat", "--no-pager").stdout

    def attempts(self):
        out = self.journal("call-assistant-module@hostile.service")
        return {a["what"]: a for a in (json.loads(line[len("ATTEMPT "):]) for line in out.splitlines()
                                       if line.startswith("ATTEMPT "))}

    def test_hostile_module_gets_nothing(self):
        o = self.o
        o.wait_state("victim", "WAITING_FOR_CONFIG")
        o.wait_state("hostile", "WAITING_FOR_CONFIG")
        self.ctl("config", "set", "victim", json.dumps({"ok": True, "password": SECRET}))
        victim = o.wait_state("victim", "READY")
        token_path = os.path.join(o.runtime_dir, "credentials", "victim.token")
        with open(token_path) as f:
            victim_token = f.read().strip()

        # A module slow to open its port: the hostile module takes the port first. The
        # orchestrator dials it, sees whom it belongs to, and sends nothing; the module's
        # registration fails with the reason.
        late = o.wait_state("late", "STARTING", timeout=30)
        self.ctl("config", "set", "hostile", json.dumps({"squat_port": late.port, "hold_s": 6}))
        wait_until(lambda: "squat port" in self.attempts(), 20, "the hostile module to take the port")
        if self.attempts()["squat port"]["outcome"] == "succeeded":
            err = o.wait_state("late", "ERROR", timeout=30)
            self.assertIn(f"port {late.port} is held by uid", err.status_message)
            self.assertIn(f"Module late: port {late.port} answers as uid", o.output())
            wait_until(lambda: "SQUAT " in self.journal("call-assistant-module@hostile.service"), 30,
                       "the squatter's report")
            squat = json.loads(next(line for line in self.journal("call-assistant-module@hostile.service").splitlines()
                                    if line.startswith("SQUAT "))[len("SQUAT "):])
            self.assertGreaterEqual(squat["connections"], 1, "the orchestrator never dialled the port")
            self.assertEqual(squat["bytes"], 0, f"the squatter received {squat}")
        else:
            # Where systemd enforces SocketBindDeny= (a BPF-enabled build), it cannot even bind.
            self.assertEqual(self.attempts()["squat port"]["error"], "PermissionError")

        # Who reports what: the event stream, from before the attack.
        events = o.stub.WatchEvents(opb.WatchEventsRequest(), timeout=120)
        peak_before = vm_kb(o.proc.pid, "VmHWM")

        self.ctl("config", "set", "hostile", json.dumps({
            "victim_pid": victim.main_pid, "victim_port": victim.port, "victim_token_path": token_path,
            "config_dir": os.path.join(o.state_dir, "config"), "control_socket": o.control}))
        wait_until(lambda: "ATTACKS DONE" in self.journal("call-assistant-module@hostile.service"), 60,
                   "the hostile module's attacks")
        a = self.attempts()

        # Secrets, configuration and state of another module: out of reach.
        for what in ("read victim token file", "read victim stdin (token)", "read victim environ",
                     "read victim root", "read config store", "read victim config", "read state dirs",
                     "read victim state",
                     "see other processes", "signal victim", "bind victim port"):
            self.assertNotEqual(a[what]["outcome"], "succeeded", f"{what}: {a[what]}")
        # Not even visible: other users' processes are hidden (ProtectProc=invisible).
        self.assertEqual(a["read victim stdin (token)"]["error"], "FileNotFoundError")
        self.assertEqual(a["signal victim"]["error"], "PermissionError")
        # Its server accepts only the orchestrator (the victim's own token).
        for what in ("victim ApplyConfig without token", "victim ApplyConfig with own token",
                     "victim Shutdown with own token"):
            self.assertEqual(a[what].get("code"), "UNAUTHENTICATED", f"{what}: {a[what]}")
        # The orchestrator: no token, no hearing; its own token speaks only for itself.
        self.assertEqual(a["report state without token"]["code"], "UNAUTHENTICATED")
        self.assertEqual(a["report state with a guessed token"]["code"], "UNAUTHENTICATED")
        self.assertEqual(a["report event naming the victim"]["outcome"], "succeeded")
        for ev in events:
            if ev.kind == opb.Event.KIND_ENTITY_ADDED and ev.entity.id == "spoofed":
                self.assertEqual(ev.module, "hostile")
                break
        events.cancel()
        self.assertEqual(a["control method on module endpoint"]["code"], "PERMISSION_DENIED")
        self.assertNotEqual(a["control socket"]["outcome"], "succeeded", a["control socket"])
        # The amplifying message: refused before it is read without a token, and refused
        # within a bounded budget with one; the orchestrator's memory does not balloon.
        self.assertEqual(a["flood without token"]["code"], "UNAUTHENTICATED")
        self.assertEqual(a["flood with own token"]["code"], "RESOURCE_EXHAUSTED")
        grown_mb = (vm_kb(o.proc.pid, "VmHWM") - peak_before) / 1024
        self.assertLess(grown_mb, 40, f"the orchestrator's peak memory grew by {grown_mb:.0f} MB")

        # Every refusal on the orchestrator's side is logged.
        log = o.output()
        for line in ("Refused /callassistant.v1.OrchestratorService/ReportState from",
                     "unknown module token",
                     "Refused a /callassistant.v1.OrchestratorService/ReportEvent request from",
                     "message too large when unpacked"):
            self.assertIn(line, log)

        # The victim kept running, unharmed.
        now = o.module("victim")
        self.assertEqual(now.main_pid, victim.main_pid)
        self.assertEqual(now.status, opb.MODULE_STATUS_READY)
        wait_until(lambda: o.module("victim").health == opb.HEALTH_STATUS_SERVING, 10, "the victim healthy")
        self.assertEqual(now.n_restarts, 0)
        self.assertIsNone(o.proc.poll(), "the orchestrator died")

        # Nothing leaked: not the victim's token, not its secret, anywhere the hostile could see
        # or anywhere in the logs.
        hostile_out = self.journal("call-assistant-module@hostile.service")
        for secret in (victim_token, SECRET):
            self.assertNotIn(secret, hostile_out)
            self.assertNotIn(secret, o.output())


if __name__ == "__main__":
    main()
