// The remote party (harness.js) for tests in other languages: one headless Chromium with a
// matrix-js-sdk client in it, driven by JSON lines on stdin, one answer line each on stdout.
//
//   {"id": 1, "cmd": "start", "args": {baseUrl, userId, accessToken, roomId}}
//   {"id": 2, "cmd": "waitForCall", "args": {n, timeoutMs}}        -> the call's summary
//   {"id": 3, "cmd": "waitForFrames", "args": {n, timeoutMs}}      -> frames decoded (current call)
//   {"id": 4, "cmd": "waitForCallState", "args": {n, state, timeoutMs}}
//   {"id": 5, "cmd": "frames"}  {"id": 6, "cmd": "summary"}  {"id": 7, "cmd": "hangup"}
//   {"id": 8, "cmd": "placeCall"}                                  -> the new call's number
//   {"id": 9, "cmd": "video"}             -> {frames, width, height} of the current call's video
//
// Answers: {"id": 1, "ok": true, "result": ...} or {"id": 1, "ok": false, "error": "..."}.
// Commands run one after the other. It exits when stdin closes, closing the browser first.
// Run it where the browser may not reach another machine (a network namespace of the test's
// own; see harness.js).
import readline from 'node:readline';

import { launchBrowser, RemoteParty } from './harness.js';

let browser = null;
let party = null;

const commands = {
  async start(a) {
    browser = await launchBrowser();
    party = await RemoteParty.start(browser, a);
    return true;
  },
  waitForCall: (a) => party.waitForCall(a.n, a.timeoutMs),
  waitForFrames: (a) => party.waitForFrames(a.n, a.timeoutMs),
  waitForCallState: (a) => party.waitForCallState(a.n, a.state, a.timeoutMs),
  frames: () => party.page.evaluate(() => window.remoteParty.framesDecoded()),
  video: () => party.page.evaluate(() => window.remoteParty.video()),
  summary: () => party.summary(),
  hangup: () => party.hangup(),
  placeCall: () => party.placeCall(),
};

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  queue = queue.then(async () => {
    let req;
    try {
      req = JSON.parse(line);
    } catch (e) {
      reply({ id: null, ok: false, error: `not JSON: ${e.message}` });
      return;
    }
    const fn = commands[req.cmd];
    if (!fn || (req.cmd !== 'start' && !party)) {
      reply({ id: req.id, ok: false, error: fn ? 'not started' : `unknown command ${req.cmd}` });
      return;
    }
    try {
      reply({ id: req.id, ok: true, result: (await fn(req.args || {})) ?? null });
    } catch (e) {
      reply({ id: req.id, ok: false, error: e?.message || String(e) });
    }
  });
});
lines.on('close', () => {
  queue.then(async () => {
    await browser?.close();
    process.exit(0);
  });
});
