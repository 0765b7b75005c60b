"""Unit tests of the chromecast module's configuration checks, the runtime's token check and
small helpers (python3 -m unittest; no network, no root)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.environ["CA_BUILD_ROOT"], "modules", "chromecast"))

import cast_config  # noqa: E402
from cast_devices import _safe_url, slug  # noqa: E402
from module_runtime import ModuleEnv, token_matches  # noqa: E402


class ModuleConfig(unittest.TestCase):
    def test_good_and_defaults(self):
        cfg, errors = cast_config.validate_module_config({"devices": [{"name": "tv", "host": "tv.local"}]})
        self.assertEqual(errors, [])
        self.assertEqual(cfg, {"devices": [{"name": "tv", "host": "tv.local", "port": 8009}], "discovery": False,
                               "mdns_interfaces": [], "retry_interval_ms": 5000})

    def test_every_problem_by_path(self):
        _, errors = cast_config.validate_module_config({
            "devices": [{"name": "tv", "host": "a"}, {"name": "tv", "host": "300.1.1.1", "port": 0}, "x",
                        {"name": "tv", "host": "b"}],
            "discovery": "yes", "mdns_interfaces": ["eth0", "10.0.0.1"], "retry_interval_ms": 1.5, "prot": 1})
        self.assertEqual(sorted(str(e) for e in errors), sorted([
            "prot: unknown field", "devices[1].host: must be an IP address or a hostname",
            "devices[1].port: must be an integer in 1..65535", "devices[3].name: duplicate of devices[0].name",
            "devices[2]: must be an object", "discovery: must be true or false",
            "mdns_interfaces[0]: must be an IP address of a local interface",
            "retry_interval_ms: must be an integer in 100..600000"]))

    def test_entity_config(self):
        self.assertEqual(cast_config.validate_entity_config({"volume": 0.5}), ({"volume": 0.5}, []))
        self.assertEqual(cast_config.validate_entity_config({}), ({}, []))
        _, errors = cast_config.validate_entity_config({"volume": True, "device": "x"})
        self.assertEqual(sorted(str(e) for e in errors), ["device: unknown field", "volume: must be a number in 0.0..1.0"])


class Runtime(unittest.TestCase):
    def test_token_file_and_check(self):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t")
            with open(path, "w") as f:
                f.write("secret\n")
            env = ModuleEnv.from_environ("m", {"GRPC_PORT": "5000", "CALL_ASSISTANT_TOKEN_FILE": path})
            self.assertEqual(env.token, "secret")
            os.rename(path, os.path.join(d, "module-token"))
            env = ModuleEnv.from_environ("m", {"GRPC_PORT": "5000", "CREDENTIALS_DIRECTORY": d,
                                               "CALL_ASSISTANT_ORCHESTRATOR": "unix:/run/o.sock"})
            self.assertEqual(env.token, "secret")
            self.assertEqual(env.orchestrator, "unix:/run/o.sock")
        key = "x-call-assistant-module-token"
        self.assertTrue(token_matches("secret", [(key, "secret")]))
        self.assertFalse(token_matches("secret", [(key, "secre")]))
        self.assertFalse(token_matches("secret", [(key, "secret"), (key, "secret")]))
        self.assertFalse(token_matches("secret", []))
        self.assertFalse(token_matches(None, [(key, "")]))

    def test_helpers(self):
        self.assertEqual(slug("Living Room TV"), "living-room-tv")
        self.assertEqual(slug("!!!"), "chromecast")
        self.assertEqual(_safe_url("http://user:pw@host:8080/a/live.m3u8?token=x"), "http://host:8080/a/live.m3u8")


if __name__ == "__main__":
    unittest.main()
