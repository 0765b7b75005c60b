#!/usr/bin/python3
"""systemd-analyze security on the units we make and ship: a module unit must rate at most
2.5 (also after a daemon-reload, when systemd reads its transient unit file back), the
orchestrator's own call-assistant.service at most 5.0. The figures are in README.md."""

import os
import re
import unittest

from orchestrator_harness import BUILD, Orchestrator, inside, main, wait_until

MODULE_MAX = 2.5
SERVICE_MAX = 5.0


def exposure(*args):
    r = inside("systemd-analyze", "security", "--no-pager", *args, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    if not m:
        raise AssertionError(f"no exposure level in:\n{r.stdout}\n{r.stderr}")
    return float(m.group(1)), r.stdout


class Hardening(unittest.TestCase):
    def test_module_unit(self):
        o = Orchestrator("hard", [dict(dir="hardened")])
        self.addCleanup(o.cleanup)
        o.start()
        o.wait_state("hardened", "READY")
        unit = "call-assistant-module@hardened.service"
        level, report = exposure(unit)
        print(f"module unit: {level}")
        self.assertLessEqual(level, MODULE_MAX, report)
        # Transient units are written to /run/systemd/transient and read back on reload:
        # what we set must survive that (RestrictNamespaces=yes once did not: systemd 252
        # writes the empty set as "RestrictNamespaces=", which reads back as no restriction).
        self.assertEqual(inside("systemctl", "daemon-reload", timeout=60).returncode, 0)
        after, report = exposure(unit)
        self.assertLessEqual(after, MODULE_MAX, report)
        self.assertEqual(after, level, report)
        self.assertEqual(o.module("hardened").status, o.module("hardened").status)

    def test_orchestrator_service(self):
        unit_file = os.path.join(BUILD, "units", "call-assistant.service")  # generated from .service.in
        level, report = exposure("--offline=yes", unit_file)
        print(f"call-assistant.service: {level}")
        self.assertLessEqual(level, SERVICE_MAX, report)

        # And it still does its work with all that: the shipped unit, run by the sandbox's
        # systemd (only ExecStart= changed, to the build tree), starts a module to READY.
        o = Orchestrator("svc", [dict(dir="served")])
        self.addCleanup(o.cleanup)
        self.addCleanup(lambda: inside("sh", "-c", "systemctl stop call-assistant.service; "
                                       "rm -rf /run/systemd/system/call-assistant.service*; systemctl daemon-reload"))
        dropin = ("[Service]\nExecStart=\n"
                  f"ExecStart={os.path.join(os.environ['CA_BUILD_ROOT'], 'call-assistant')} --config {o.config} "
                  f"--modules-dir {o.modules_dir}\n")
        r = inside("sh", "-c", f"cp {unit_file} /run/systemd/system/ && "
                   "mkdir -p /run/systemd/system/call-assistant.service.d && "
                   f"printf '{dropin}' > /run/systemd/system/call-assistant.service.d/build.conf && "
                   "systemctl daemon-reload && systemctl start call-assistant.service", timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr + inside("journalctl", "-u", "call-assistant", "-o", "cat").stdout)
        def ready():
            return "1 READY" in inside("systemctl", "show", "-p", "StatusText", "--value",
                                       "call-assistant.service").stdout
        try:
            wait_until(ready, 30, "the module READY under the shipped, hardened unit")
        except AssertionError:
            raise AssertionError(inside("journalctl", "-u", "call-assistant", "-u", "call-assistant-module@served",
                                        "-o", "cat", "--no-pager").stdout)


if __name__ == "__main__":
    main()
