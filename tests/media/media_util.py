"""What the media tests share: the ONVIF camera double on loopback (RTSP only) and stopping the
processes a test started (by their Popen object)."""

import os
import subprocess

from xlang_util import free_port

PYTHON = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("CA_SOURCE_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
CAMERA = os.path.join(SOURCE, "tests", "doubles", "onvif_camera_double.py")


def stop_process(p):
    """SIGTERM, then SIGKILL after 10 s."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def start_camera(test, width=320, height=240):
    """The camera double serving a test pattern over RTSP on 127.0.0.1, stopped when test ends;
    returns its RTSP port once it says READY."""
    rtsp_port = free_port()
    camera = subprocess.Popen([PYTHON, CAMERA, "--ip", "127.0.0.1", "--no-discovery",
                               "--http-port", str(free_port()), "--rtsp-port", str(rtsp_port),
                               "--width", str(width), "--height", str(height)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    test.addCleanup(stop_process, camera)
    test.assertEqual(camera.stdout.readline().strip(), "READY")
    return rtsp_port
