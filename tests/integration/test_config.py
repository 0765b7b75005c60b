#!/usr/bin/python3
"""Integration tests of configuration delivery: WAITING_FOR_CONFIG -> set -> READY (and the
dependents follow), re-applied after kill -9, refusals keep the old configuration, secrets stay
out of API answers, events and the journal, and modules may not use the config service."""

import json
import os
import subprocess
import unittest

import grpc

from orchestrator_harness import (BUILD, CTL, Orchestrator, inside, main, opb, ogrpc, wait_until)
from callassistant.config.v1 import config_pb2 as cpb
from callassistant.config.v1 import config_pb2_grpc as cgrpc

SECRET = "hunter2-" + os.urandom(6).hex()


class Config(unittest.TestCase):
    def setUp(self):
        self.o = Orchestrator("cfg", [dict(dir="needy", mode="needs-config"),
                                      dict(dir="follower", deps=["needy"])])
        self.addCleanup(self.o.cleanup)
        self.o.start()
        self.cfg = cgrpc.ConfigServiceStub(self.o.channel)
        self.env = dict(os.environ, CALL_ASSISTANT_CONTROL_SOCKET=self.o.control)

    def ctl(self, *args, input=None):
        return subprocess.run([CTL, *args], env=self.env, capture_output=True, text=True, input=input)

    def test_flow_refusals_restart_and_secrets(self):
        o = self.o
        o.wait_state("needy", "WAITING_FOR_CONFIG")
        self.assertEqual(o.module("follower").status, opb.MODULE_STATUS_PENDING)
        listing = self.ctl("list")
        self.assertRegex(listing.stdout, r"needy\s+WAITING_FOR_CONFIG")

        events = o.stub.WatchEvents(opb.WatchEventsRequest(), timeout=60)

        # Invalid against the schema: errors by field path, nothing stored.
        bad = self.ctl("config", "set", "needy", '{"ok": "yes", "extra": 1}')
        self.assertEqual(bad.returncode, 7, bad.stderr)
        self.assertIn("/ok:", bad.stderr)
        self.assertIn("/extra:", bad.stderr)
        # Valid for the schema but refused by the module itself: the same kind of refusal, the
        # same exit status.
        refused = self.ctl("config", "set", "needy", '{"ok": false}')
        self.assertEqual(refused.returncode, 7, refused.stderr)
        self.assertIn("/ok: must be true", refused.stderr)
        self.assertEqual(o.module("needy").status, opb.MODULE_STATUS_WAITING_FOR_CONFIG)

        good = self.ctl("config", "set", "needy", json.dumps({"ok": True, "password": SECRET}))
        self.assertEqual(good.returncode, 0, good.stderr)
        self.assertIn("revision 1", good.stdout)
        o.wait_state("needy", "READY")
        o.wait_state("follower", "READY")

        # A refused change keeps the old configuration, in the store and in the module.
        self.assertEqual(self.ctl("config", "set", "needy", '{"ok": false}').returncode, 7)
        got = self.cfg.GetConfig(cpb.GetConfigRequest(module="needy"), timeout=5)
        self.assertEqual(got.revision, 1)
        self.assertEqual(json.loads(got.config_json), {"ok": True, "password": "********"})
        self.assertEqual(o.module("needy").status, opb.MODULE_STATUS_READY)

        # Setting the other fields keeps the secret.
        self.assertEqual(self.ctl("config", "set", "needy", '{"ok": true}').returncode, 0)
        with open(os.path.join(o.state_dir, "config", "needy.json")) as f:
            stored = json.load(f)
        self.assertEqual(stored["config"]["password"], SECRET)
        self.assertEqual(os.stat(os.path.join(o.state_dir, "config", "needy.json")).st_mode & 0o777, 0o600)

        # kill -9: systemd restarts it, the orchestrator re-applies the config: READY again.
        before = o.module("needy")
        self.assertEqual(inside("kill", "-9", str(before.main_pid)).returncode, 0)
        def back():
            m = o.module("needy")
            return m.n_restarts == 1 and m.status == opb.MODULE_STATUS_READY
        wait_until(back, 20, "needy READY again with its configuration")
        self.assertEqual(self.cfg.GetConfig(cpb.GetConfigRequest(module="needy"), timeout=5).revision, 2)

        # The secret is nowhere: API answers, events, ctl output, the journal, our log.
        seen = []
        for ev in events:
            seen.append(str(ev))
            if ev.kind == opb.Event.KIND_CONFIG_CHANGED and ev.config_revision == 2:
                break
        events.cancel()
        self.assertTrue(any("KIND_CONFIG_CHANGED" in s for s in seen))
        for text in seen + [self.ctl("config", "get", "needy").stdout, self.ctl("--json", "status", "needy").stdout,
                            o.output(), inside("journalctl", "--no-pager", "-o", "cat").stdout]:
            self.assertNotIn(SECRET, text)

    def test_modules_may_not_use_the_config_service(self):
        ch = grpc.insecure_channel(self.o.listen)
        stub = cgrpc.ConfigServiceStub(ch)
        for call in (lambda: stub.GetConfig(cpb.GetConfigRequest(module="needy"), timeout=5),
                     lambda: stub.SetConfig(cpb.SetConfigRequest(module="needy", config_json="{}"), timeout=5)):
            with self.assertRaises(grpc.RpcError) as e:
                call()
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        ch.close()


if __name__ == "__main__":
    main()
