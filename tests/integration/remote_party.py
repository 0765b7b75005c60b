"""The Matrix remote party for Python tests: matrix-js-sdk in headless Chromium
(tests/remote-party/harness.js), driven through tests/remote-party/driver.js (JSON lines).

Chromium puts real addresses in its ICE candidates: run it in a network namespace the test
made (netns_pid: a process in it), where nothing it does can leave the machine."""

import json
import os
import queue
import subprocess
import sys
import threading

BUILD = os.environ["CA_BUILD_ROOT"]
DRIVER = os.path.join(BUILD, "tests", "remote-party", "driver.js")


class RemoteParty:
    def __init__(self, netns_pid, base_url, user_id, access_token, room_id):
        self.proc = subprocess.Popen(["nsenter", "-t", str(netns_pid), "-n", "--", "/usr/bin/node", DRIVER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        self.answers = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.call("start", timeout=60, baseUrl=base_url, userId=user_id, accessToken=access_token, roomId=room_id)

    def _read(self):
        for line in self.proc.stdout:
            self.answers.put(json.loads(line))
        self.answers.put(None)

    def call(self, cmd, timeout=30, **args):
        """Run a command of driver.js; its own waits end before timeout (seconds)."""
        self.next_id += 1
        self.proc.stdin.write(json.dumps({"id": self.next_id, "cmd": cmd, "args": args}) + "\n")
        self.proc.stdin.flush()
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"remote party: no answer to {cmd} within {timeout}s") from None
        if answer is None:
            raise AssertionError(f"remote party: the driver exited ({self.proc.poll()})")
        assert answer["id"] == self.next_id, answer
        if not answer["ok"]:
            raise AssertionError(f"remote party: {cmd}: {answer['error']}")
        return answer["result"]

    def wait_for_call(self, n, timeout=20):
        return self.call("waitForCall", timeout=timeout + 5, n=n, timeoutMs=timeout * 1000)

    def wait_for_frames(self, n, timeout=20):
        return self.call("waitForFrames", timeout=timeout + 5, n=n, timeoutMs=timeout * 1000)

    def wait_for_call_state(self, n, state, timeout=20):
        return self.call("waitForCallState", timeout=timeout + 5, n=n, state=state, timeoutMs=timeout * 1000)

    def frames(self):
        return self.call("frames")

    def summary(self):
        return self.call("summary")

    def hangup(self):
        return self.call("hangup")

    def video(self):
        """The current call's inbound video: {"frames", "width", "height"}."""
        return self.call("video")

    def place_call(self):
        """Place a video call into the room; returns its number (for wait_for_call_state)."""
        return self.call("placeCall")

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
