#!/usr/bin/python3
"""A test double of an ONVIF IP camera, written from the specifications:

- WS-Discovery (SOAP-over-UDP, 2005/04): answers a multicast Probe for
  dn:NetworkVideoTransmitter on 239.255.255.250:3702 with a unicast ProbeMatches,
  sends Hello when it starts and Bye when it stops (--announce);
- ONVIF Device service (GetDeviceInformation, GetCapabilities) and Media service
  (GetProfiles, GetStreamUri) as SOAP 1.2 over HTTP, with WS-UsernameToken
  PasswordDigest checked when --user is given (a SOAP Fault ter:NotAuthorized else);
- a real RTSP stream: GStreamer's RTSP server with a live test pattern encoded as
  H.264 (constrained baseline), digest authentication when --user is given.

Misbehaviour for tests (--mode): malformed-probe (garbage ProbeMatches), malformed-soap
(broken XML), fault (every SOAP call faults), silent-soap (accepts HTTP, never answers),
huge-soap (a body of several MiB), no-rtsp (no RTSP server).

Prints "READY" on stdout once everything listens; SIGTERM stops it (after a Bye).
"""

import argparse
import base64
import hashlib
import os
import signal
import socket
import struct
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

WSD_GROUP, WSD_PORT = "239.255.255.250", 3702
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
}
ENVELOPE = ('<?xml version="1.0" encoding="UTF-8"?>'
            '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"'
            ' xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"'
            ' xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"'
            ' xmlns:dn="http://www.onvif.org/ver10/network/wsdl"'
            ' xmlns:tds="http://www.onvif.org/ver10/device/wsdl"'
            ' xmlns:trt="http://www.onvif.org/ver10/media/wsdl"'
            ' xmlns:tt="http://www.onvif.org/ver10/schema"'
            ' xmlns:ter="http://www.onvif.org/ver10/error">'
            '<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>')


def log(*a):
    print(f"camera-double[{os.getpid()}]:", *a, file=sys.stderr, flush=True)


class Camera:
    def __init__(self, args):
        self.args = args
        self.endpoint = f"urn:uuid:{args.uuid}"
        self.device_url = f"http://{args.ip}:{args.http_port}/onvif/device_service"
        self.media_url = f"http://{args.ip}:{args.http_port}/onvif/media_service"
        self.rtsp_url = f"rtsp://{args.ip}:{args.rtsp_port}/main"
        self.metadata_version = 1
        self.stopping = False

    # ---- WS-Discovery ----

    def match_xml(self, tag):
        return (f"<d:{tag}><a:EndpointReference><a:Address>{self.endpoint}</a:Address></a:EndpointReference>"
                f"<d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>"
                f"<d:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/name/{self.args.name}"
                f"</d:Scopes><d:XAddrs>{self.device_url}</d:XAddrs>"
                f"<d:MetadataVersion>{self.metadata_version}</d:MetadataVersion></d:{tag}>")

    def wsd_header(self, action, relates_to=None, to="urn:schemas-xmlsoap-org:ws:2005:04:discovery"):
        h = (f"<a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/{action}</a:Action>"
             f"<a:MessageID>urn:uuid:{uuid.uuid4()}</a:MessageID><a:To>{to}</a:To>")
        if relates_to:
            h += f"<a:RelatesTo>{relates_to}</a:RelatesTo>"
        return h

    def announce(self, tag):
        msg = ENVELOPE.format(header=self.wsd_header(tag), body=self.match_xml(tag) if tag == "Hello" else
                              f"<d:Bye><a:EndpointReference><a:Address>{self.endpoint}</a:Address>"
                              f"</a:EndpointReference></d:Bye>")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.args.ip))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        s.sendto(msg.encode(), (WSD_GROUP, WSD_PORT))
        s.close()

    def serve_discovery(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("", WSD_PORT))
        mreq = socket.inet_aton(WSD_GROUP) + socket.inet_aton(self.args.ip)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        reply = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        reply.bind((self.args.ip, 0))
        self.discovery_ready.set()
        while not self.stopping:
            data, peer = s.recvfrom(65536)
            try:
                root = ET.fromstring(data)
            except ET.ParseError:
                continue
            probe = root.find("s:Body/d:Probe", NS)
            if probe is None:
                continue
            types = (probe.findtext("d:Types", default="", namespaces=NS) or "").split()
            if types and not any(t.endswith(":NetworkVideoTransmitter") or t == "NetworkVideoTransmitter"
                                 for t in types):
                continue
            msg_id = root.findtext("s:Header/a:MessageID", namespaces=NS)
            if self.args.mode == "malformed-probe":
                answer = ("<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body>"
                          "<d:ProbeMatches><broken").encode()
            else:
                answer = ENVELOPE.format(header=self.wsd_header("ProbeMatches", msg_id,
                                                                "http://schemas.xmlsoap.org/ws/2004/08/addressing/"
                                                                "role/anonymous"),
                                         body=f"<d:ProbeMatches>{self.match_xml('ProbeMatch')}</d:ProbeMatches>"
                                         ).encode()
            reply.sendto(answer, peer)

    # ---- ONVIF SOAP ----

    def authorized(self, root):
        if not self.args.user:
            return True
        tok = root.find("s:Header/wsse:Security/wsse:UsernameToken", NS)
        if tok is None:
            return False
        user = tok.findtext("wsse:Username", namespaces=NS)
        digest = tok.findtext("wsse:Password", namespaces=NS) or ""
        nonce = tok.findtext("wsse:Nonce", namespaces=NS) or ""
        created = tok.findtext("wsu:Created", namespaces=NS) or ""
        try:
            raw = base64.b64decode(nonce)
        except ValueError:
            return False
        want = base64.b64encode(hashlib.sha1(raw + created.encode() + self.args.password.encode()).digest()).decode()
        return user == self.args.user and digest == want

    def soap(self, body_xml):
        if self.args.mode == "malformed-soap":
            return 200, "<s:Envelope><s:Body><tds:GetDeviceInformationResponse><unclosed"
        if self.args.mode == "huge-soap":
            return 200, ENVELOPE.format(header="", body="<x>" + "A" * (4 * 1024 * 1024) + "</x>")
        try:
            root = ET.fromstring(body_xml)
        except ET.ParseError:
            return 400, self.fault("s:Sender", "ter:WellFormed", "not well-formed XML")
        body = root.find("s:Body", NS)
        if body is None or len(body) == 0:
            return 400, self.fault("s:Sender", "ter:InvalidArgVal", "no body")
        if self.args.mode == "fault":
            return 500, self.fault("s:Receiver", "ter:Action", "the camera is having a bad day")
        if not self.authorized(root):
            return 400, self.fault("s:Sender", "ter:NotAuthorized", "Sender not Authorized")
        op = body[0].tag.split("}")[-1]
        w, h = self.args.width, self.args.height
        answers = {
            "GetDeviceInformation": (
                "<tds:GetDeviceInformationResponse><tds:Manufacturer>call-assistant</tds:Manufacturer>"
                f"<tds:Model>{self.args.model}</tds:Model><tds:FirmwareVersion>1.0</tds:FirmwareVersion>"
                f"<tds:SerialNumber>{self.args.uuid[:8]}</tds:SerialNumber><tds:HardwareId>double</tds:HardwareId>"
                "</tds:GetDeviceInformationResponse>"),
            "GetCapabilities": (
                "<tds:GetCapabilitiesResponse><tds:Capabilities><tt:Media>"
                f"<tt:XAddr>{self.media_url}</tt:XAddr></tt:Media></tds:Capabilities></tds:GetCapabilitiesResponse>"),
            "GetProfiles": (
                '<trt:GetProfilesResponse><trt:Profiles token="main" fixed="true"><tt:Name>main</tt:Name>'
                '<tt:VideoEncoderConfiguration token="enc"><tt:Name>enc</tt:Name><tt:Encoding>H264</tt:Encoding>'
                f"<tt:Resolution><tt:Width>{w}</tt:Width><tt:Height>{h}</tt:Height></tt:Resolution>"
                "</tt:VideoEncoderConfiguration></trt:Profiles></trt:GetProfilesResponse>"),
            "GetStreamUri": (
                f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>{self.rtsp_url}</tt:Uri>"
                "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false"
                "</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>"),
        }
        if op not in answers:
            return 400, self.fault("s:Sender", "ter:ActionNotSupported", f"{op} is not supported")
        return 200, ENVELOPE.format(header="", body=answers[op])

    @staticmethod
    def fault(code, subcode, reason):
        return ENVELOPE.format(header="", body=(
            f"<s:Fault><s:Code><s:Value>{code}</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode>"
            f"</s:Code><s:Reason><s:Text xml:lang=\"en\">{reason}</s:Text></s:Reason></s:Fault>"))

    def serve_http(self):
        camera = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(min(n, 1 << 20)).decode("utf-8", "replace")
                if camera.args.mode == "silent-soap":
                    time.sleep(3600)
                    return
                status, text = camera.soap(body)
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except ConnectionError:
                    pass  # the client gave up (a huge answer, a timeout): expected

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.httpd = Server((self.args.ip, self.args.http_port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.serve_forever()

    # ---- RTSP ----

    def start_rtsp(self):
        a = self.args
        server = GstRtspServer.RTSPServer()
        server.set_address(a.ip)
        server.set_service(str(a.rtsp_port))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={a.width},height={a.height},"
            f"framerate={a.fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.fps} "
            f"bitrate={a.bitrate} ! video/x-h264,profile=constrained-baseline ! "
            "rtph264pay name=pay0 pt=96 config-interval=1 )")
        factory.set_shared(True)
        if a.user:
            auth = GstRtspServer.RTSPAuth()
            token = GstRtspServer.RTSPToken()
            token.set_string("media.factory.role", "user")
            auth.add_digest(a.user, a.password, token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            server.set_auth(auth)
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_permission_for_role("user", "media.factory.access", True)
            permissions.add_permission_for_role("user", "media.factory.construct", True)
            factory.set_permissions(permissions)
        server.get_mount_points().add_factory("/main", factory)
        if server.attach(None) == 0:
            raise RuntimeError(f"cannot listen for RTSP on {a.ip}:{a.rtsp_port}")
        self.rtsp = server

    def run(self):
        Gst.init(None)
        self.discovery_ready = threading.Event()
        if self.args.mode != "no-rtsp":
            self.start_rtsp()
        threading.Thread(target=self.serve_http, daemon=True).start()
        if self.args.no_discovery:
            self.discovery_ready.set()
        else:
            threading.Thread(target=self.serve_discovery, daemon=True).start()
        if not self.discovery_ready.wait(10):
            raise RuntimeError("discovery socket not ready")
        # HTTP must accept before READY is printed.
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.args.ip, self.args.http_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        loop = GLib.MainLoop()

        def stop(*_):
            self.stopping = True
            if self.args.announce:
                self.announce("Bye")
            loop.quit()
            return GLib.SOURCE_REMOVE

        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, stop)
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, stop)
        if self.args.announce:
            self.announce("Hello")
        print("READY", flush=True)
        loop.run()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ip", required=True)
    p.add_argument("--uuid", default=str(uuid.uuid4()))
    p.add_argument("--name", default="double")
    p.add_argument("--model", default="double-cam")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--rtsp-port", type=int, default=8554)
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--bitrate", type=int, default=800)
    p.add_argument("--announce", action="store_true")
    p.add_argument("--no-discovery", action="store_true",
                   help="no WS-Discovery (a camera on loopback, for tests that need only its RTSP)")
    p.add_argument("--mode", default="normal",
                   choices=["normal", "malformed-probe", "malformed-soap", "fault", "silent-soap", "huge-soap",
                            "no-rtsp"])
    Camera(p.parse_args()).run()


if __name__ == "__main__":
    main()
