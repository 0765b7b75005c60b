#!/usr/bin/python3
"""The orchestrator loses its D-Bus connection (dbus-daemon restarted in the sandbox): it
exits with a failure status, so that systemd restarts it, and leaves its modules running;
started again, it adopts them. Its own sandbox: the bus restart must not touch other tests."""

import time
import unittest

from orchestrator_harness import Orchestrator, inside, main, wait_until


class BusLoss(unittest.TestCase):
    def test_bus_restart_exits_with_failure_then_adopts(self):
        o = Orchestrator("busloss", [dict(dir="survivor")])
        self.addCleanup(o.cleanup)
        o.start()
        before = o.wait_state("survivor", "READY")

        r = inside("systemctl", "restart", "dbus.service", timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: o.proc.poll() is not None, 15, "the orchestrator to exit after losing the bus")
        self.assertNotEqual(o.proc.returncode, 0, o.output())
        self.assertIn("Lost the connection to the system bus, exiting.", o.output())
        # The module was left alone.
        self.assertEqual(inside("systemctl", "is-active", "call-assistant-module@survivor.service").stdout.strip(),
                         "active")

        # Once the bus is back, a new orchestrator adopts the module: same process.
        wait_until(lambda: inside("busctl", "status", "org.freedesktop.systemd1").returncode == 0, 30,
                   "systemd back on the bus")
        o.channel.close()
        o.channel = None
        o.start()
        after = o.wait_state("survivor", "READY")
        self.assertEqual(after.main_pid, before.main_pid)
        self.assertEqual(after.n_restarts, before.n_restarts)


if __name__ == "__main__":
    main()
