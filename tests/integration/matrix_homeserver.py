"""tests/doubles/matrix-homeserver.js as a process, with its /_double/ control API, for the
Python integration tests."""

import json
import os
import subprocess
import urllib.request

SOURCE = os.environ["CA_SOURCE_ROOT"]


class Homeserver:
    """The homeserver double listening on host:port (port 0: any free port)."""

    def __init__(self, port=0, host="127.0.0.1"):
        self.host = host
        self.proc = subprocess.Popen(["/usr/bin/node", os.path.join(SOURCE, "tests", "doubles", "matrix-homeserver.js"),
                                      "--port", str(port), "--host", host], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening"), line
        self.port = int(line.split()[1])
        self.url = f"http://{host}:{self.port}"

    def control(self, path, body=None):
        req = urllib.request.Request(self.url + "/_double/" + path, method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def events(self, type_):
        return self.control(f"events?type={type_}")["events"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc.stdout.close()
