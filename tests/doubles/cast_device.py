#!/usr/bin/python3
"""A TEST DOUBLE of a Chromecast, written from the Cast v2 protocol (CASTV2: TLS on port 8009,
each message a 4-byte big-endian length and a protobuf CastMessage; JSON payloads on the
connection, heartbeat, receiver and media namespaces), advertised over mDNS
(_googlecast._tcp) with python3-zeroconf on the one address it is given. Run it only inside a
network namespace the test made (mDNS multicast must never reach the host's network), or on
loopback with --no-mdns.

It accepts CONNECT/CLOSE, PING (answers PONG), GET_STATUS, LAUNCH (the Default Media
Receiver), STOP and SET_VOLUME on the receiver, and GET_STATUS, LOAD, PLAY, PAUSE and STOP on
the media namespace. After a LOAD it fetches the HLS URL it was given like a receiver would
(playlist, variant playlist, segments) and decodes the first segment with GStreamer to check
that it holds video; the result, with everything else it knows, is in --state-file (JSON,
rewritten atomically on every change), which the tests read.

usage: cast_device.py --address IP [--port 8009] --name NAME --uuid UUID --state-file PATH
                      [--no-mdns] [--interface-address IP]
"""

import argparse
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid as uuidlib

NS_CONNECTION = "urn:x-cast:com.google.cast.tp.connection"
NS_HEARTBEAT = "urn:x-cast:com.google.cast.tp.heartbeat"
NS_RECEIVER = "urn:x-cast:com.google.cast.receiver"
NS_MEDIA = "urn:x-cast:com.google.cast.media"
DEFAULT_MEDIA_RECEIVER = "CC1AD845"
BACKDROP = "E8C28D3C"

# --- CastMessage (cast_channel.proto), encoded by hand ----------------------------------------
# message CastMessage { ProtocolVersion protocol_version = 1; string source_id = 2;
#   string destination_id = 3; string namespace = 4; PayloadType payload_type = 5;
#   optional string payload_utf8 = 6; optional bytes payload_binary = 7; }
# (CASTV2_1_0 = 0; STRING = 0, BINARY = 1)


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_message(source, destination, namespace, payload):
    def field_str(num, s):
        data = s.encode("utf-8")
        return _varint(num << 3 | 2) + _varint(len(data)) + data
    return (_varint(1 << 3 | 0) + _varint(0) + field_str(2, source) + field_str(3, destination)
            + field_str(4, namespace) + _varint(5 << 3 | 0) + _varint(0) + field_str(6, payload))


def decode_message(data):
    fields, i = {}, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
        elif wire == 2:
            n, i = _read_varint(data, i)
            value = data[i:i + n]
            i += n
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields[num] = value
    text = lambda n: fields.get(n, b"").decode("utf-8") if isinstance(fields.get(n, b""), bytes) else ""  # noqa: E731
    return {"source": text(2), "destination": text(3), "namespace": text(4), "payload": text(6)}


def _read_varint(data, i):
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


# --- the device ---------------------------------------------------------------------------------

class Device:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.app = None  # {"appId", "sessionId", "transportId", "displayName"}
        self.volume = {"level": 1.0, "muted": False}
        self.media = None  # {"mediaSessionId", "contentId", "playerState", "idleReason"}
        self.media_session = 0
        self.clients = []
        self.hls = {}
        self.counters = {"connects": 0, "loads": 0, "launches": 0, "pings": 0}
        self.write_state()

    # -- state file --

    def write_state(self):
        with self.lock:
            state = {"pid": os.getpid(), "app": self.app, "volume": self.volume, "media": self.media,
                     "clients": len(self.clients), "hls": self.hls, "counters": self.counters}
        tmp = self.args.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self.args.state_file)

    # -- statuses --

    def receiver_status(self, request_id=0):
        apps = []
        app = self.app or {"appId": BACKDROP, "displayName": "Backdrop", "sessionId": "backdrop",
                           "transportId": "backdrop", "isIdleScreen": True}
        apps.append({"appId": app["appId"], "displayName": app["displayName"], "isIdleScreen": app.get("isIdleScreen", False),
                     "namespaces": [{"name": NS_MEDIA}] if app["appId"] == DEFAULT_MEDIA_RECEIVER else [],
                     "sessionId": app["sessionId"], "statusText": app["displayName"], "transportId": app["transportId"],
                     "launchedFromCloud": False})
        return {"type": "RECEIVER_STATUS", "requestId": request_id,
                "status": {"applications": apps, "isActiveInput": True, "isStandBy": False,
                           "volume": {"controlType": "attenuation", "level": self.volume["level"],
                                      "muted": self.volume["muted"], "stepInterval": 0.05}}}

    def media_status(self, request_id=0):
        status = []
        if self.media:
            m = self.media
            entry = {"mediaSessionId": m["mediaSessionId"], "playbackRate": 1, "playerState": m["playerState"],
                     "currentTime": 0, "supportedMediaCommands": 15, "volume": {"level": 1, "muted": False},
                     "media": {"contentId": m["contentId"], "contentType": m["contentType"], "streamType": "LIVE",
                               "duration": None}}
            if m.get("idleReason"):
                entry["idleReason"] = m["idleReason"]
            status.append(entry)
        return {"type": "MEDIA_STATUS", "requestId": request_id, "status": status}

    def broadcast(self, namespace, payload, source=None):
        for c in list(self.clients):
            c.send(source or ("receiver-0" if namespace == NS_RECEIVER else self.app_transport()), "*", namespace, payload)

    def app_transport(self):
        return self.app["transportId"] if self.app else "receiver-0"

    # -- the HLS check --

    def fetch_hls(self, url, session):
        """Fetch the playlist (and a variant), then segments; decode the first one."""
        result = {"url": url, "playlist": False, "segments": 0, "decoded": False, "error": ""}
        try:
            text = _get(url).decode("utf-8", "replace")
            if not text.startswith("#EXTM3U"):
                raise ValueError("not an HLS playlist (no #EXTM3U)")
            result["playlist"] = True
            if "#EXT-X-STREAM-INF" in text:  # a master playlist: take the first variant
                variant = next(l for l in text.splitlines() if l and not l.startswith("#"))
                url = urllib.parse.urljoin(url, variant)
                text = _get(url).decode("utf-8", "replace")
            segments = [urllib.parse.urljoin(url, l) for l in text.splitlines() if l and not l.startswith("#")]
            if not segments:
                raise ValueError("the playlist lists no segment")
            with tempfile.TemporaryDirectory(prefix="cast-double-") as tmp:
                first = os.path.join(tmp, "segment")
                for i, seg in enumerate(segments[:2]):
                    data = _get(seg)
                    if i == 0:
                        with open(first, "wb") as f:
                            f.write(data)
                    result["segments"] += 1
                result["decoded"], result["frame"] = decode_segment(first, tmp)
            if not result["decoded"]:
                raise ValueError("the first segment did not decode to a video frame")
        except Exception as e:  # noqa: BLE001 - reported in the state file
            result["error"] = f"{type(e).__name__}: {e}"
        with self.lock:
            self.hls = result
            if self.media and self.media["mediaSessionId"] == session:
                if result["error"]:
                    self.media.update(playerState="IDLE", idleReason="ERROR")
                else:
                    self.media.update(playerState="PLAYING")
        self.write_state()
        self.broadcast(NS_MEDIA, self.media_status())

    # -- messages --

    def handle(self, client, msg):
        ns, payload = msg["namespace"], msg["payload"]
        try:
            data = json.loads(payload) if payload else {}
        except json.JSONDecodeError:
            return
        kind = data.get("type")
        rid = data.get("requestId", 0)
        reply = lambda ns_, p: client.send(msg["destination"], msg["source"], ns_, p)  # noqa: E731
        if ns == NS_CONNECTION:
            if kind == "CLOSE" and msg["destination"] == "receiver-0":
                client.close()
            return
        if ns == NS_HEARTBEAT:
            if kind == "PING":
                with self.lock:
                    self.counters["pings"] += 1
                reply(NS_HEARTBEAT, {"type": "PONG"})
            return
        if ns == NS_RECEIVER:
            if kind == "GET_STATUS":
                reply(NS_RECEIVER, self.receiver_status(rid))
            elif kind == "LAUNCH":
                app_id = data.get("appId")
                if app_id != DEFAULT_MEDIA_RECEIVER:
                    reply(NS_RECEIVER, {"type": "LAUNCH_ERROR", "requestId": rid, "reason": "NOT_FOUND"})
                    return
                with self.lock:
                    self.counters["launches"] += 1
                    if not self.app:
                        sid = str(uuidlib.uuid4())
                        self.app = {"appId": app_id, "displayName": "Default Media Receiver", "sessionId": sid,
                                    "transportId": f"web-{sid[:8]}"}
                self.write_state()
                reply(NS_RECEIVER, self.receiver_status(rid))
                self.broadcast(NS_RECEIVER, self.receiver_status())
            elif kind == "STOP":
                with self.lock:
                    self.app = None
                    self.media = None
                self.write_state()
                reply(NS_RECEIVER, self.receiver_status(rid))
                self.broadcast(NS_RECEIVER, self.receiver_status())
            elif kind == "SET_VOLUME":
                v = data.get("volume", {})
                with self.lock:
                    if isinstance(v.get("level"), (int, float)):
                        self.volume["level"] = max(0.0, min(1.0, float(v["level"])))
                    if isinstance(v.get("muted"), bool):
                        self.volume["muted"] = v["muted"]
                self.write_state()
                reply(NS_RECEIVER, self.receiver_status(rid))
            return
        if ns == NS_MEDIA:
            if not self.app or msg["destination"] != self.app["transportId"]:
                return  # no media session behind that transport
            if kind == "GET_STATUS":
                reply(NS_MEDIA, self.media_status(rid))
            elif kind == "LOAD":
                media = data.get("media", {})
                url = media.get("contentId", "")
                with self.lock:
                    self.counters["loads"] += 1
                    self.media_session += 1
                    session = self.media_session
                    if self.media:  # the previous media is interrupted
                        self.media = None
                    self.media = {"mediaSessionId": session, "contentId": url,
                                  "contentType": media.get("contentType", ""), "playerState": "BUFFERING",
                                  "idleReason": None}
                    self.hls = {}
                self.write_state()
                reply(NS_MEDIA, self.media_status(rid))
                threading.Thread(target=self.fetch_hls, args=(url, session), daemon=True).start()
            elif kind in ("PLAY", "PAUSE", "STOP"):
                with self.lock:
                    if self.media:
                        if kind == "STOP":
                            self.media.update(playerState="IDLE", idleReason="CANCELLED")
                        else:
                            self.media["playerState"] = "PLAYING" if kind == "PLAY" else "PAUSED"
                self.write_state()
                reply(NS_MEDIA, self.media_status(rid))


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read(16 * 1024 * 1024)


def decode_segment(path, tmp):
    """Decode the segment's first video frame with GStreamer; returns (ok, "WxH")."""
    png = os.path.join(tmp, "frame.png")
    r = subprocess.run(["gst-launch-1.0", "-q", "filesrc", f"location={path}", "!", "decodebin", "!",
                        "videoconvert", "!", "pngenc", "snapshot=true", "!", "filesink", f"location={png}"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or not os.path.exists(png):
        return False, r.stderr.strip()[-300:]
    with open(png, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return False, "not a PNG"
    w, h = struct.unpack(">II", head[16:24])
    return w > 0 and h > 0, f"{w}x{h}"


class Client:
    def __init__(self, device, conn):
        self.device = device
        self.conn = conn
        self.wlock = threading.Lock()
        self.closed = False

    def send(self, source, destination, namespace, payload):
        data = encode_message(source, destination, namespace, json.dumps(payload))
        try:
            with self.wlock:
                self.conn.sendall(struct.pack(">I", len(data)) + data)
        except OSError:
            self.close()

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.conn.close()
            except OSError:
                pass

    def run(self):
        d = self.device
        with d.lock:
            d.clients.append(self)
            d.counters["connects"] += 1
        d.write_state()
        try:
            while not self.closed:
                head = _recv_exact(self.conn, 4)
                if head is None:
                    break
                (n,) = struct.unpack(">I", head)
                if n > 65536:
                    break  # the protocol's limit; a bad peer
                body = _recv_exact(self.conn, n)
                if body is None:
                    break
                d.handle(self, decode_message(body))
        except (OSError, ValueError, IndexError):
            pass
        finally:
            self.close()
            with d.lock:
                if self in d.clients:
                    d.clients.remove(self)
            d.write_state()


def _recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def make_certificate(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=cast-device-double", "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def advertise(args):
    """_googlecast._tcp on the given address only (python3-zeroconf)."""
    import zeroconf
    iface = args.interface_address or args.address
    zc = zeroconf.Zeroconf(interfaces=[iface])
    short = args.uuid.replace("-", "")
    info = zeroconf.ServiceInfo(
        "_googlecast._tcp.local.", f"Chromecast-Double-{short}._googlecast._tcp.local.",
        port=args.port, parsed_addresses=[args.address], server=f"{short}.local.",
        properties={"id": short, "cd": short.upper(), "rm": "", "ve": "05", "md": "Chromecast Double",
                    "ic": "/setup/icon.png", "fn": args.name, "ca": "4101", "st": "0", "bs": "FA8FCA000000",
                    "nf": "1", "rs": ""})
    zc.register_service(info)
    return zc, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True)
    ap.add_argument("--port", type=int, default=8009)
    ap.add_argument("--name", required=True)
    ap.add_argument("--uuid", default=str(uuidlib.uuid4()))
    ap.add_argument("--state-file", required=True)
    ap.add_argument("--no-mdns", action="store_true")
    ap.add_argument("--interface-address")
    args = ap.parse_args()

    device = Device(args)
    tmp = tempfile.mkdtemp(prefix="cast-double-tls-")
    cert, key = make_certificate(tmp)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = socket.socket(socket.AF_INET6 if ":" in args.address else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.address, args.port))
    srv.listen(8)
    zc = info = None
    if not args.no_mdns:
        zc, info = advertise(args)

    def stop(_sig, _frame):
        if zc is not None:
            zc.unregister_service(info)  # the mDNS goodbye
            zc.close()
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening {args.address}:{args.port}", flush=True)

    while True:
        conn, _ = srv.accept()
        try:
            conn.settimeout(None)
            tls = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()
            continue
        threading.Thread(target=Client(device, tls).run, daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
