#!/usr/bin/python3
"""Integration tests of the web dashboard against the real daemon in the sandbox.

WebApi: the HTTP API with a plain HTTP client (auth, CSRF, every endpoint, bad input:
malformed JSON, oversize body, unknown module, wrong method, path traversal), the live event
stream after a kill -9, and call-assistantctl web.
Browser: the pages in Debian's chromium driven by Playwright (tests/browser/dashboard.mjs):
log in, overview, kill -9 seen live, configuration form with field errors, logs followed,
restart from the button; screenshots of each page.
LiveView: a camera's live view with the real flow engine (onvif-discovery and the ONVIF/RTSP
camera double in a network namespace, go2rtc's built-in GStreamer backend): the live API's
bad input and its flows' ends (Stop, the page's event stream, logout) with a GStreamer
webrtcbin peer, then the page in Chromium decoding the camera's frames.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
import unittest
import urllib.parse

from orchestrator_harness import BUILD, CTL, SOURCE, Orchestrator, free_port, inside, main, opb, wait_until
from camnet import SUBNET, CameraNet  # noqa: E402 - after the harness, which sets the paths up
from webrtc_receiver import Receiver  # noqa: E402
from callassistant.config.v1 import config_pb2 as cpb, config_pb2_grpc as cgrpc  # noqa: E402

PASSWORD = "correct-horse-" + os.urandom(4).hex()
SECRET = "s3cret-" + os.urandom(6).hex()
NODE = shutil.which("node") or "/usr/bin/node"


def ctl(o, *args, input=None):
    env = dict(os.environ, CALL_ASSISTANT_CONTROL_SOCKET=o.control)
    return subprocess.run([CTL, *args], env=env, capture_output=True, text=True, input=input, timeout=30)


def web_status(o):
    r = ctl(o, "--json", "web", "status")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class Client:
    """A minimal HTTP client that keeps the session cookie and the CSRF token."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.cookie = None
        self.csrf = None

    def request(self, method, path, body=None, headers=None, raw=None, csrf=True):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        h = dict(headers or {})
        if self.cookie:
            h.setdefault("Cookie", self.cookie)
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            h.setdefault("X-CSRF-Token", self.csrf)
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        try:
            doc = json.loads(payload) if payload else None
        except ValueError:
            doc = None
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), doc, payload

    def login(self, password):
        status, headers, doc, _ = self.request("POST", "/api/login", {"password": password})
        if status == 200:
            self.cookie = headers["set-cookie"].split(";")[0]
            self.csrf = doc["csrf"]
        return status, headers, doc


class EventStream:
    """/api/events read from a socket (HTTP/1.1 chunked): next() returns (event, data)."""

    def __init__(self, url, cookie, query=""):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=10)
        self.sock.sendall(f"GET /api/events{query} HTTP/1.1\r\nHost: {u.netloc}\r\nCookie: {cookie}\r\n\r\n".encode())
        self.raw = b""
        self.text = b""
        self.headers_done = False
        self.chunk_left = 0      # bytes of chunk data still to come; -1: the CRLF after a chunk

    def _decode(self):
        if not self.headers_done:
            if b"\r\n\r\n" not in self.raw:
                return
            head, self.raw = self.raw.split(b"\r\n\r\n", 1)
            assert b"text/event-stream" in head, head
            assert b"chunked" in head.lower(), head
            self.headers_done = True
        while self.raw:
            if self.chunk_left == -1:
                if len(self.raw) < 2:
                    return
                self.raw, self.chunk_left = self.raw[2:], 0
            elif self.chunk_left == 0:
                i = self.raw.find(b"\r\n")
                if i < 0:
                    return
                size = int(self.raw[:i].split(b";")[0], 16)
                self.raw = self.raw[i + 2:]
                if size == 0:
                    raise AssertionError("the event stream ended")
                self.chunk_left = size
            else:
                take = min(self.chunk_left, len(self.raw))
                self.text += self.raw[:take]
                self.raw = self.raw[take:]
                self.chunk_left -= take
                if self.chunk_left == 0:
                    self.chunk_left = -1

    def next(self, deadline):
        """The next event (comments and retry lines skipped)."""
        while True:
            self._decode()
            while b"\n\n" in self.text:
                block, self.text = self.text.split(b"\n\n", 1)
                name, payload = None, None
                for line in block.decode().split("\n"):
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        payload = json.loads(line[6:])
                if name:
                    return name, payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no event before the deadline")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError("no event before the deadline") from None
            if not chunk:
                raise AssertionError("the event stream was closed")
            self.raw += chunk

    def close(self):
        self.sock.close()


class WebApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.o = Orchestrator("web-api", [dict(dir="camera"), dict(dir="recorder", deps=["camera"]),
                                         dict(dir="needy", mode="needs-config"), dict(dir="chatty", mode="flood")])
        cls.o.start()
        for name in ("camera", "recorder", "chatty"):
            cls.o.wait_state(name, "READY")
        cls.o.wait_state("needy", "WAITING_FOR_CONFIG")
        cls.url = web_status(cls.o)["url"]
        assert cls.url.startswith("http://127.0.0.1:"), cls.url  # loopback by default

    @classmethod
    def tearDownClass(cls):
        cls.o.cleanup()

    def test_01_no_password_no_login(self):
        st = web_status(self.o)
        self.assertFalse(st["password_set"])
        c = Client(self.url)
        status, _, doc = c.login("anything-at-all")
        self.assertEqual(status, 403)
        self.assertIn("call-assistantctl web passwd", doc["error"])
        # Too short: refused by ctl, nothing stored.
        r = ctl(self.o, "web", "passwd", input="short\n")
        self.assertEqual(r.returncode, 7, r.stderr)
        self.assertFalse(web_status(self.o)["password_set"])
        r = ctl(self.o, "web", "passwd", input=PASSWORD + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(web_status(self.o)["password_set"])
        # Only a hash is stored, root-only.
        path = os.path.join(self.o.state_dir, "web", "password")
        with open(path) as f:
            stored = f.read()
        self.assertTrue(stored.startswith("$y$"), stored)
        self.assertNotIn(PASSWORD, stored)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)

    def test_02_auth(self):
        c = Client(self.url)
        for method, path in (("GET", "/api/modules"), ("GET", "/api/session"), ("GET", "/api/entities"),
                             ("GET", "/api/modules/camera"), ("POST", "/api/modules/camera/restart"),
                             ("GET", "/api/events")):
            status, headers, doc, _ = c.request(method, path)
            self.assertEqual(status, 401, path)
            self.assertIn("application/json", headers["content-type"])
            self.assertEqual(doc["error"], "not logged in")
        status, headers, _, _ = c.request("GET", "/")
        self.assertEqual(status, 303)
        self.assertEqual(headers["location"], "/login.html")
        status, headers, _, body = c.request("GET", "/login.html")
        self.assertEqual(status, 200)
        self.assertIn(b"<form id=\"login\"", body)
        self.assertEqual(headers["x-frame-options"], "DENY")
        self.assertIn("default-src 'self'", headers["content-security-policy"])

        status, _, doc = c.login("wrong-password")
        self.assertEqual(status, 401)
        self.assertEqual(doc["error"], "wrong password")
        status, _, doc, _ = c.request("POST", "/api/login", raw=b'{"password": ', headers={"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertEqual(doc["error"], "malformed JSON")
        status, _, doc, _ = c.request("POST", "/api/login", raw=b"password=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 415)
        status, headers, doc, _ = c.request("GET", "/api/login")
        self.assertEqual(status, 405)
        self.assertEqual(headers["allow"], "POST")

        status, headers, doc = c.login(PASSWORD)
        self.assertEqual(status, 200)
        cookie = headers["set-cookie"]
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=Strict", cookie)
        self.assertNotIn("Secure", cookie)  # plain HTTP on loopback
        self.assertTrue(doc["csrf"])
        status, _, doc, _ = c.request("GET", "/api/session")
        self.assertEqual((status, doc["csrf"]), (200, c.csrf))
        status, _, _, body = c.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn(b"/app.js", body)
        self.assertEqual(web_status(self.o)["sessions"], 1)
        # The password never reaches the orchestrator's log.
        self.assertNotIn(PASSWORD, self.o.output())

    def logged_in(self):
        c = Client(self.url)
        self.assertEqual(c.login(PASSWORD)[0], 200)
        return c

    def test_03_modules_and_module(self):
        c = self.logged_in()
        status, headers, doc, _ = c.request("GET", "/api/modules")
        self.assertEqual(status, 200)
        self.assertEqual(headers["cache-control"], "no-store")
        mods = {m["name"]: m for m in doc["modules"]}
        self.assertEqual(set(mods), {"camera", "recorder", "needy", "chatty"})
        info = self.o.module("camera")
        cam = mods["camera"]
        self.assertEqual(cam["state"], "READY")
        self.assertEqual(cam["main_pid"], info.main_pid)
        self.assertEqual(cam["unit"], "call-assistant-module@camera.service")
        self.assertEqual(cam["active_state"], "active")
        self.assertEqual(mods["recorder"]["dependencies"], ["camera"])
        self.assertEqual(mods["needy"]["state"], "WAITING_FOR_CONFIG")
        self.assertTrue(mods["needy"]["config_required"])

        status, _, doc, _ = c.request("GET", "/api/modules/recorder")
        self.assertEqual((status, doc["name"], doc["dependencies"]), (200, "recorder", ["camera"]))
        for path in ("/api/modules/ghost", "/api/modules/ghost/config", "/api/modules/ghost/logs", "/api/modules/..",
                     "/api/modules/camera/explode", "/api/nothing"):
            status, _, doc, _ = c.request("GET", path)
            self.assertEqual(status, 404, path)
            self.assertIn("error", doc)
        status, _, doc, _ = c.request("POST", "/api/modules/ghost/restart")
        self.assertEqual(status, 404)

        # Wrong methods, with Allow.
        for method, path, allow in (("DELETE", "/api/modules/camera", "GET"), ("PUT", "/api/modules", "GET"),
                                    ("GET", "/api/modules/camera/restart", "POST"),
                                    ("POST", "/api/modules/camera/config", "GET, PUT"), ("POST", "/api/logout", None)):
            if allow is None:
                continue
            status, headers, doc, _ = c.request(method, path)
            self.assertEqual(status, 405, f"{method} {path}")
            self.assertEqual(headers["allow"], allow)
            self.assertEqual(doc["error"], "method not allowed")
        status, _, doc, _ = c.request("POST", "/index.html")
        self.assertEqual(status, 405)
        self.assertIn("error", doc)

    def test_04_csrf_and_operations(self):
        c = self.logged_in()
        before = self.o.module("camera").main_pid
        status, _, doc, _ = c.request("POST", "/api/modules/camera/restart", csrf=False)
        self.assertEqual(status, 403)
        self.assertIn("X-CSRF-Token", doc["error"])
        status, _, _, _ = c.request("POST", "/api/modules/camera/restart", headers={"X-CSRF-Token": "x" * 43})
        self.assertEqual(status, 403)
        status, _, _, _ = c.request("POST", "/api/modules/camera/restart", headers={"Origin": "http://evil.example"})
        self.assertEqual(status, 403)
        self.assertEqual(self.o.module("camera").main_pid, before)  # nothing happened

        status, _, doc, _ = c.request("POST", "/api/modules/camera/restart", headers={"Origin": self.url.rstrip("/")})
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["module"]["name"], "camera")
        wait_until(lambda: self.o.module("camera").main_pid not in (0, before) and
                   self.o.module("camera").status == opb.MODULE_STATUS_READY, 20, "camera restarted and READY")

        # What depends on camera may still be settling after its restart.
        self.o.wait_state("recorder", "READY")
        status, _, doc, _ = c.request("POST", "/api/modules/recorder/stop")
        self.assertEqual(status, 200, doc)
        self.o.wait_state("recorder", "STOPPED")
        status, _, doc, _ = c.request("POST", "/api/modules/recorder/start")
        self.assertEqual(status, 200, doc)
        self.o.wait_state("recorder", "READY")

    def test_05_config(self):
        c = self.logged_in()
        status, _, doc, _ = c.request("GET", "/api/modules/needy/config")
        self.assertEqual(status, 200)
        self.assertEqual(doc["revision"], 0)
        self.assertEqual(doc["config"], {})
        self.assertEqual(doc["schema"]["required"], ["ok"])
        status, _, doc, _ = c.request("GET", "/api/modules/camera/config")
        self.assertEqual(status, 404)  # registered no schema

        path = "/api/modules/needy/config"
        status, _, doc, _ = c.request("PUT", path, raw=b'{"config": {"ok": tru', headers={"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertIn("malformed JSON at line 1", doc["error"])
        status, _, doc, _ = c.request("PUT", path, body={"ok": True})
        self.assertEqual(status, 400)  # not wrapped in {"config": ...}
        status, _, doc, _ = c.request("PUT", path, raw=b'{"config": {}}', headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 415)
        big = {"config": {"ok": True, "pad": "x" * 300000}}
        status, _, doc, _ = c.request("PUT", path, body=big)
        self.assertEqual(status, 413)
        self.assertEqual(doc["error"], "request body too large")

        # Schema violations: 422, every one at its field.
        status, _, doc, _ = c.request("PUT", path, body={"config": {"ok": "yes", "extra": 1}})
        self.assertEqual(status, 422, doc)
        fields = {f["path"]: f["message"] for f in doc["fields"]}
        self.assertIn("/ok", fields)
        self.assertIn("/extra", fields)
        # The module refuses: the same answer as the schema's (422), its reason at the field.
        status, _, doc, _ = c.request("PUT", path, body={"config": {"ok": False}})
        self.assertEqual(status, 422, doc)
        self.assertEqual(doc["fields"][0]["path"], "/ok")
        self.assertEqual(self.o.module("needy").status, opb.MODULE_STATUS_WAITING_FOR_CONFIG)

        status, _, doc, _ = c.request("PUT", path, body={"config": {"ok": True, "password": SECRET}, "revision": 0})
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["revision"], 1)
        self.assertEqual(doc["config"]["password"], "********")
        self.o.wait_state("needy", "READY")
        status, _, doc, body = c.request("GET", path)
        self.assertEqual(doc["config"], {"ok": True, "password": "********"})
        self.assertNotIn(SECRET.encode(), body)
        # A stale revision is refused; the placeholder keeps the secret.
        status, _, doc, _ = c.request("PUT", path, body={"config": {"ok": True, "password": "********"}, "revision": 0})
        self.assertEqual(status, 409)
        status, _, doc, _ = c.request("PUT", path, body={"config": {"ok": True, "password": "********"}, "revision": 1})
        self.assertEqual((status, doc["revision"]), (200, 2))
        with open(os.path.join(self.o.state_dir, "config", "needy.json")) as f:
            self.assertEqual(json.load(f)["config"]["password"], SECRET)
        self.assertNotIn(SECRET, self.o.output())

    def test_06_logs(self):
        c = self.logged_in()
        status, _, doc, _ = c.request("GET", "/api/modules/chatty/logs?limit=50")
        self.assertEqual(status, 200)
        self.assertEqual(len(doc["entries"]), 50)
        self.assertTrue(doc["before"])
        self.assertTrue(all(e["priority"] in range(8) for e in doc["entries"]))
        usecs = [e["usec"] for e in doc["entries"]]
        self.assertEqual(usecs, sorted(usecs))  # oldest first
        # Scrollback: the page before, without overlap, and so on to the beginning.
        seen = {e["cursor"] for e in doc["entries"]}
        before, pages = doc["before"], 1
        while before:
            status, _, doc, _ = c.request("GET", "/api/modules/chatty/logs?limit=500&before=" + urllib.parse.quote(before))
            self.assertEqual(status, 200)
            cursors = {e["cursor"] for e in doc["entries"]}
            self.assertFalse(cursors & seen)
            seen |= cursors
            before, pages = doc["before"], pages + 1
            self.assertLess(pages, 20)
        messages_total = len(seen)
        self.assertGreaterEqual(messages_total, 2000)  # the flood mode writes 2000 lines
        # Text filter (case-insensitive), priority filter.
        status, _, doc, _ = c.request("GET", "/api/modules/chatty/logs?q=FLOOD+LINE+1999")
        self.assertEqual([e["message"] for e in doc["entries"]], ["fixture: flood line 1999"])
        status, _, doc, _ = c.request("GET", "/api/modules/chatty/logs?priority=3")
        self.assertTrue(all(e["priority"] <= 3 for e in doc["entries"]))
        for q in ("limit=0", "limit=x", "priority=9", "q=%zz", "before=not-a-cursor"):
            status, _, doc, _ = c.request("GET", "/api/modules/chatty/logs?" + q)
            self.assertEqual(status, 400, q)
            self.assertIn("error", doc)

    def test_07_entities(self):
        c = self.logged_in()
        status, _, doc, _ = c.request("GET", "/api/entities")
        self.assertEqual(status, 200, doc)
        self.assertIsInstance(doc["entities"], list)
        for e in doc["entities"]:
            self.assertIn(e["module"], {"camera", "recorder", "needy", "chatty"})

    def test_08_path_traversal(self):
        c = self.logged_in()
        for path in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd",
                     "/%2E%2E%2F%2E%2E%2Fetc/passwd", "/app.js/../../../etc/passwd", "/.%2e/.%2e/etc/passwd",
                     "//etc/passwd", "/index.html%00.js", "/.git/config", "/nothing-here.html"):
            u = urllib.parse.urlparse(self.url)
            with socket.create_connection((u.hostname, u.port), timeout=10) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nCookie: {c.cookie}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            status = int(data.split(b" ", 2)[1])
            self.assertIn(status, (400, 404), path)
            self.assertNotIn(b"root:", data, path)
        status, _, _, body = c.request("GET", "/style.css")
        self.assertEqual(status, 200)

    def test_09_live_events(self):
        c = self.logged_in()
        es = EventStream(self.url, c.cookie)
        try:
            name, data = es.next(time.monotonic() + 5)
            self.assertEqual(name, "stream")  # its id, for live views
            self.assertTrue(data["id"].isdigit())
            name, data = es.next(time.monotonic() + 5)
            self.assertEqual(name, "modules")
            self.assertEqual({m["name"] for m in data["modules"]}, {"camera", "recorder", "needy", "chatty"})
            self.o.wait_state("recorder", "READY")
            pid = self.o.module("recorder").main_pid
            self.assertGreater(pid, 0)  # never "kill -9 0": that is the whole process group
            self.assertEqual(inside("kill", "-9", str(pid)).returncode, 0)
            killed = time.monotonic()
            while True:
                name, data = es.next(killed + 5)
                if name == "module" and data["name"] == "recorder" and (data["main_pid"] != pid or data["state"] != "READY"):
                    break
            # The change reaches an open page well within a second.
            self.assertLess(time.monotonic() - killed, 1.0)
            while not (name == "module" and data["name"] == "recorder" and data["state"] == "READY" and data["restarts"] == 1):
                name, data = es.next(killed + 20)
            # While a page is open, CPU and memory come from systemd's cgroup accounting, which
            # the orchestrator turns on for module units.
            show = inside("systemctl", "show", "-p", "CPUAccounting,MemoryAccounting,MemoryCurrent",
                          "call-assistant-module@camera.service").stdout
            self.assertIn("CPUAccounting=yes", show)
            self.assertIn("MemoryAccounting=yes", show)
            if "MemoryCurrent=[not set]" in show:
                # This systemd cannot account for its units (nspawn on a cgroup v1 host keeps the
                # controllers read-only): the dashboard shows no figures rather than made-up ones.
                print("note: no cgroup accounting in this sandbox; figures are shown as unknown")
                status, _, doc, _ = c.request("GET", "/api/modules/camera")
                self.assertIsNone(doc["memory_bytes"])
                self.assertIsNone(doc["cpu_percent"])
            else:
                deadline = time.monotonic() + 20
                while True:
                    name, data = es.next(deadline)
                    cam = data["modules"].get("camera") if name == "resources" else None
                    if cam and cam["memory_bytes"] > 0 and cam["cpu_percent"] is not None:
                        break
                self.assertGreaterEqual(cam["cpu_percent"], 0)
                status, _, doc, _ = c.request("GET", "/api/modules/camera")
                self.assertGreater(doc["memory_bytes"], 0)
                self.assertGreater(doc["cpu_usage_nsec"], 0)
        finally:
            es.close()

    def test_10_logout_and_revoke(self):
        a, b = self.logged_in(), self.logged_in()
        status, headers, _, _ = a.request("POST", "/api/logout")
        self.assertEqual(status, 200)
        self.assertIn("Max-Age=0", headers["set-cookie"])
        self.assertEqual(a.request("GET", "/api/session")[0], 401)
        self.assertEqual(b.request("GET", "/api/session")[0], 200)
        r = ctl(self.o, "web", "logout-all")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"[1-9]\d* session\(s\) ended")
        self.assertEqual(b.request("GET", "/api/session")[0], 401)
        # A new password ends sessions too, and the old one stops working.
        c = self.logged_in()
        r = ctl(self.o, "web", "passwd", input=PASSWORD + "-2\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(c.request("GET", "/api/session")[0], 401)
        self.assertEqual(Client(self.url).login(PASSWORD)[0], 401)
        self.assertEqual(Client(self.url).login(PASSWORD + "-2")[0], 200)

    def test_11_login_rate_limit(self):
        # Last: it locks 127.0.0.1 out for a while.
        statuses = [Client(self.url).login("guess-%d" % i)[0] for i in range(8)]
        self.assertIn(429, statuses)
        self.assertTrue(all(s in (401, 429) for s in statuses), statuses)
        status, headers, doc = Client(self.url).login(PASSWORD + "-2")
        self.assertEqual(status, 429)  # even the right password waits
        self.assertGreater(int(headers["retry-after"]), 0)


class WebTls(unittest.TestCase):
    def web_config(self, root, extra):
        return ("web:\n  listen: 127.0.0.1:0\n"
                f"  assets_dir: \"{SOURCE}/services/web/assets\"\n"
                f"  journal_directory: \"{os.environ.get('CA_SANDBOX_JOURNAL', '')}\"\n" + extra)

    def test_https_and_secure_cookie(self):
        import ssl
        o = Orchestrator("web-tls", [dict(dir="camera")])
        self.addCleanup(o.cleanup)
        cert, key = os.path.join(o.root, "cert.pem"), os.path.join(o.root, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-keyout", key, "-out", cert], check=True, capture_output=True)
        with open(o.config, "a") as f:
            f.write(self.web_config(o.root, f"  tls_certificate: \"{cert}\"\n  tls_key: \"{key}\"\n"))
        o.start()
        o.wait_state("camera", "READY")
        st = web_status(o)
        self.assertTrue(st["tls"])
        self.assertTrue(st["url"].startswith("https://127.0.0.1:"), st["url"])
        self.assertEqual(ctl(o, "web", "passwd", input=PASSWORD + "\n").returncode, 0)
        u = urllib.parse.urlparse(st["url"])
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=10)
        conn.request("POST", "/api/login", body=json.dumps({"password": PASSWORD}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        self.assertEqual(resp.status, 200)
        self.assertIn("Secure", resp.getheader("Set-Cookie"))
        conn.close()
        # Plain HTTP on the TLS port gets nothing usable.
        with socket.create_connection((u.hostname, u.port), timeout=5) as sock:
            sock.sendall(b"GET /api/session HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = sock.recv(4096)
            except (ConnectionResetError, TimeoutError):
                data = b""
        self.assertFalse(data.startswith(b"HTTP/1.1 200"))

    def test_bad_certificate_leaves_the_orchestrator_running(self):
        o = Orchestrator("web-badtls", [dict(dir="camera")])
        self.addCleanup(o.cleanup)
        with open(o.config, "a") as f:
            f.write(self.web_config(o.root, "  tls_certificate: /nonexistent/cert.pem\n  tls_key: /nonexistent/key.pem\n"))
        o.start()
        o.wait_state("camera", "READY")
        r = ctl(o, "web", "status")
        self.assertEqual(r.returncode, 3, r.stderr)  # UNAVAILABLE
        self.assertIn("not running", r.stderr)
        self.assertIn("cannot load the TLS certificate /nonexistent/cert.pem", o.output())


class Browser(unittest.TestCase):
    def test_dashboard_in_chromium(self):
        script = os.path.join(BUILD, "tests", "browser", "dashboard.mjs")
        self.assertTrue(os.path.isdir(os.path.join(BUILD, "tests", "browser", "node_modules", "playwright-core")),
                        "playwright-core is not installed: the build runs npm ci in build/tests/browser")
        o = Orchestrator("web-ui", [dict(dir="source"), dict(dir="recorder", deps=["source"]),
                                    dict(dir="notifier", deps=["recorder"]), dict(dir="doorbell")])
        # The bundled modules: chromecast (a real schema with an array of devices and patterns)
        # and camera (its video_source entities are cameras).
        shutil.copytree(os.path.join(BUILD, "modules", "chromecast"), os.path.join(o.modules_dir, "chromecast"))
        # Cameras that a module finds by itself (the flow tests' fixture): two "camera" entities.
        o.add_module("cameras", command=os.path.join(BUILD, "tests", "fixtures", "flow-fixture") +
                     " --role=source --entities=2")
        self.addCleanup(o.cleanup)
        o.start()
        for name in ("source", "recorder", "notifier", "doorbell", "cameras"):
            o.wait_state(name, "READY")
        o.wait_state("chromecast", "WAITING_FOR_CONFIG")
        self.assertEqual(ctl(o, "web", "passwd", input=PASSWORD + "\n").returncode, 0)
        out_dir = os.path.join(BUILD, "tests", "browser")
        os.makedirs(out_dir, exist_ok=True)
        env = dict(os.environ, CA_WEB_URL=web_status(o)["url"], CA_WEB_PASSWORD=PASSWORD,
                   CA_SCREENSHOT_DIR=out_dir, CA_SANDBOX_EXEC=os.environ.get("CA_SANDBOX_EXEC", ""))
        r = subprocess.run([NODE, script], env=env,
                           capture_output=True, text=True, timeout=240)
        print(r.stdout)
        if r.returncode != 0:
            raise AssertionError(f"browser test failed:\n{r.stdout}\n{r.stderr}\n--- orchestrator ---\n{o.output()}")


CAM = "onvif-0e2e0e2e-2222-4222-8222-00000000be11"
HOST_SIDE = f"{SUBNET}.1"  # the camera network's host end: the converter's ICE address


class LiveView(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cleanups = []
        try:
            cls._setup()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _setup(cls):
        cls.net = CameraNet(n_addresses=1)
        cls.cleanups.append(cls.net.stop)
        cls.net.camera(2, "--uuid", CAM[len("onvif-"):], "--name", "door", "--width", "640", "--height", "360")
        hls_port = free_port()
        cls.o = Orchestrator("web-live", [
            dict(dir="onvif-discovery", command=os.path.join(BUILD, "modules", "onvif-discovery", "onvif-discovery-module"),
                 network="{peers: lan, multicast: true, bind: [udp]}"),
            dict(dir="go2rtc", command=os.path.join(BUILD, "modules", "go2rtc", "go2rtc-module"),
                 network=f'{{peers: lan, bind: [udp, "tcp:{hls_port}"]}}'),
            # Something that is no video source: a call target's room (it takes WebRTC).
            dict(dir="rooms", command=os.path.join(BUILD, "tests", "fixtures", "flow-fixture") +
                 " --role=target --entities=1")])
        cls.cleanups.append(cls.o.cleanup)
        cls.o.start()
        cfg = cgrpc.ConfigServiceStub(cls.o.channel)
        for module, config in (("onvif-discovery", {"interface": cls.net.host_if, "scan_interval_s": 30,
                                                    "request_timeout_ms": 2000, "cameras": [{"host": f"{SUBNET}.2"}]}),
                               ("go2rtc", {"ice_addresses": [HOST_SIDE], "hls_port": hls_port})):
            cls.o.wait_state(module, "WAITING_FOR_CONFIG" if module == "onvif-discovery" else "READY", timeout=30)
            cfg.SetConfig(cpb.SetConfigRequest(module=module, config_json=json.dumps(config)), timeout=30)
        for module in ("onvif-discovery", "go2rtc", "rooms"):
            cls.o.wait_state(module, "READY", timeout=30)
        wait_until(lambda: any(e.entity.id == CAM and e.available for e in cls.o.stub.ListEntities(
            opb.ListEntitiesOfModulesRequest(module="onvif-discovery"), timeout=10).entities), 30, "the camera found")
        assert ctl(cls.o, "web", "passwd", input=PASSWORD + "\n").returncode == 0
        cls.url = web_status(cls.o)["url"]

    @classmethod
    def tearDownClass(cls):
        for fn in reversed(cls.cleanups):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - the other cleanups must still run
                print(f"cleanup {fn}: {e}")

    def flows(self):
        return {f.id: f for f in self.o.stub.ListFlows(opb.ListFlowsRequest(), timeout=10).flows}

    def converters(self):
        return [e.entity.id for e in self.o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(module="go2rtc"),
                                                              timeout=10).entities]

    def assert_converters_gone(self):
        try:
            wait_until(lambda: self.converters() == [], 10, "every converter destroyed")
        except AssertionError:
            left = self.o.stub.ListEntities(opb.ListEntitiesOfModulesRequest(module="go2rtc"), timeout=10).entities
            journal = inside("journalctl", "-u", "call-assistant-module@go2rtc.service", "-o", "cat", "--no-pager",
                             "-n", "60", timeout=60).stdout
            raise AssertionError(f"converters left: {[(e.entity.id, e.entity.name, e.entity.state) for e in left]}\n"
                                 f"--- orchestrator ---\n{self.o.output()[-5000:]}\n--- go2rtc ---\n{journal}") from None

    def logged_in(self):
        c = Client(self.url)
        self.assertEqual(c.login(PASSWORD)[0], 200)
        return c

    def stream_of(self, c):
        es = EventStream(self.url, c.cookie)
        self.addCleanup(es.close)
        name, data = es.next(time.monotonic() + 5)
        self.assertEqual(name, "stream")  # first: the id live views name
        return es, data["id"]

    def start(self, c, stream, entity=CAM, module="onvif-discovery", **kw):
        rx = Receiver(ice_addresses=(HOST_SIDE,))
        self.addCleanup(rx.close)
        status, _, doc, _ = c.request("POST", f"/api/entities/{module}/{urllib.parse.quote(entity, safe='')}/live",
                                      {"sdp": rx.offer(), "stream": stream}, **kw)
        return status, doc, rx

    def test_1_bad_input(self):
        c = self.logged_in()
        _, sid = self.stream_of(c)
        path = f"/api/entities/onvif-discovery/{CAM}/live"
        offer = Receiver(ice_addresses=(HOST_SIDE,))
        self.addCleanup(offer.close)
        good = {"sdp": offer.offer(), "stream": sid}
        pid = self.o.module("go2rtc").main_pid
        for body, kw, status, message in (
                (good, {"csrf": False}, 403, "X-CSRF-Token"),
                (None, {"raw": b'{"sdp": "v=0', "headers": {"Content-Type": "application/json"}}, 400, "malformed JSON"),
                ({"sdp": "hello", "stream": sid}, {}, 400, "sdp: "),
                ({"sdp": 12, "stream": sid}, {}, 400, "sdp: "),
                ({"sdp": good["sdp"]}, {}, 400, "stream: "),
                ({"sdp": good["sdp"], "stream": "987654"}, {}, 409, "no open event stream"),
                ({"sdp": "v=0\r\n" + "a=x:" + "y" * 300000 + "\r\n", "stream": sid}, {}, 413, "too large")):
            st, _, doc, _ = c.request("POST", path, body, **kw)
            self.assertEqual(st, status, (body if body is None or len(str(body)) < 200 else "(big)", doc))
            self.assertIn(message, doc["error"])
        for p in ("/api/entities/onvif-discovery/no-such-camera/live", "/api/entities/ghost/cam/live"):
            st, _, doc, _ = c.request("POST", p, good)
            self.assertEqual(st, 404, doc)
            self.assertIn("error", doc)
        st, headers, doc, _ = c.request("GET", path)
        self.assertEqual((st, headers["allow"]), (405, "POST"))
        # An offer the converter cannot use: a clear error from the flow engine, nothing left over.
        st, _, doc, _ = c.request("POST", path, {"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nthis is no SDP\r\n",
                                                 "stream": sid})
        self.assertEqual(st, 422, doc)
        self.assertIn("ConnectEntity failed: INVALID_ARGUMENT: peer.sdp", doc["error"])
        self.assertEqual(self.flows(), {})
        self.assert_converters_gone()
        self.assertEqual(self.o.module("go2rtc").main_pid, pid)  # the converter's module took it in its stride
        # An entity that gives no video: no path to a peer.
        st, _, doc, _ = c.request("POST", "/api/entities/rooms/room-1/live", good)
        self.assertEqual(st, 422, doc)
        self.assertIn("no path", doc["error"])
        self.assertEqual(self.flows(), {})
        # Not another session's flows, nor any flow that is not a live view.
        st, _, doc, _ = c.request("DELETE", "/api/live/flow-0123456789abcdef")
        self.assertEqual(st, 404, doc)

    def test_2_play_and_stop(self):
        c, other = self.logged_in(), self.logged_in()
        _, sid = self.stream_of(c)
        st, doc, rx = self.start(c, sid)
        self.assertEqual(st, 200, doc)
        flow_id = doc["flow_id"]
        self.assertEqual(doc["state"], "ACTIVE")
        self.assertIn("a=candidate:", doc["sdp"])  # complete: no trickle
        rx.set_answer(doc["sdp"])
        wait_until(lambda: rx.stats()[0] >= 10, 30, "10 decoded frames at the peer")
        self.assertEqual(rx.stats()[1:], (640, 360))
        flow = self.flows()[flow_id]
        self.assertEqual((flow.source.module, flow.source.id), ("onvif-discovery", CAM))
        conv = flow.steps[1].entity_id
        self.assertIn(conv, self.converters())
        self.assertEqual(web_status(self.o)["live_views"], 1)

        self.assertEqual(other.request("DELETE", f"/api/live/{flow_id}")[0], 404)  # not its own
        self.assertEqual(c.request("DELETE", f"/api/live/{flow_id}", csrf=False)[0], 403)
        self.assertIn(flow_id, self.flows())
        st, _, doc, _ = c.request("DELETE", f"/api/live/{flow_id}")
        self.assertEqual((st, doc), (200, {"flow_id": flow_id, "state": "STOPPED"}))
        self.assertNotIn(flow_id, self.flows())
        self.assertEqual(web_status(self.o)["live_views"], 0)
        wait_until(lambda: conv not in self.converters(), 10, "the converter destroyed")
        self.assertEqual(c.request("DELETE", f"/api/live/{flow_id}")[0], 404)

    def test_3_the_page_goes(self):
        # Its event stream ends without a word (a crash, a lost connection): the flow ends.
        c = self.logged_in()
        es, sid = self.stream_of(c)
        st, doc, rx = self.start(c, sid)
        self.assertEqual(st, 200, doc)
        self.assertIn(doc["flow_id"], self.flows())
        es.close()
        wait_until(lambda: doc["flow_id"] not in self.flows(), 10, "the flow ended with its page")
        # Logging out ends the session's live views too; at most 4 per session.
        _, sid = self.stream_of(c)
        ids = []
        for _ in range(4):
            st, doc, rx = self.start(c, sid)
            self.assertEqual(st, 200, doc)
            ids.append(doc["flow_id"])
        st, doc, rx = self.start(c, sid)
        self.assertEqual(st, 429, doc)
        self.assertIn("at most 4", doc["error"])
        # One at a time (the flow engine's teardown is not what this tests), all but one.
        for flow_id in ids[1:]:
            self.assertEqual(c.request("DELETE", f"/api/live/{flow_id}")[0], 200)
        self.assertEqual(list(self.flows()), ids[:1])
        self.assertEqual(c.request("POST", "/api/logout")[0], 200)
        wait_until(lambda: ids[0] not in self.flows(), 15, "the last flow ended with the session")
        self.assert_converters_gone()

    def test_4_browser(self):
        script = os.path.join(BUILD, "tests", "browser", "dashboard.mjs")
        out_dir = os.path.join(BUILD, "tests", "browser")
        os.makedirs(out_dir, exist_ok=True)
        env = dict(os.environ, CA_WEB_URL=self.url, CA_WEB_PASSWORD=PASSWORD, CA_SCREENSHOT_DIR=out_dir,
                   CA_LIVE_ENTITY=f"onvif-discovery/{CAM}", CA_LIVE_SIZE="640x360", CA_CTL=CTL,
                   CALL_ASSISTANT_CONTROL_SOCKET=self.o.control)
        r = subprocess.run([NODE, script, "--live-view"], env=env, capture_output=True, text=True, timeout=180)
        print(r.stdout)
        if r.returncode != 0:
            raise AssertionError(f"browser test failed:\n{r.stdout}\n{r.stderr}\n--- orchestrator ---\n"
                                 f"{self.o.output()[-6000:]}")
        self.assertEqual(self.flows(), {})
        self.assert_converters_gone()


if __name__ == "__main__":
    main()
