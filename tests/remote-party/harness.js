// Test harness for Matrix calls with a real WebRTC remote party (import it from a test):
//
//   const browser = await launchBrowser();                  // Debian's chromium, headless
//   const party = await RemoteParty.start(browser, { baseUrl, userId, accessToken, roomId });
//   const offerer = await WebRtcOfferer.start(browser);     // or any other source of an offer
//   const offer = await offerer.offer();                    // a complete SDP (ICE gathered)
//   ... ConnectEntity(matrix_room, input = offer) ... FLOW_SIGNAL(answer) ...
//   await offerer.setAnswer(answerSdp);
//   await party.waitForFrames(1);                           // video decoded by the remote party
//
// RemoteParty is matrix-js-sdk (bundled, remote-party.js) in a page: it answers ringing calls
// with Chromium's fake camera and microphone. WebRtcOfferer stands in for the converter: a
// sendonly video track drawn on a canvas. Any offer works (the go2rtc converter's, in the
// end-to-end flow test): the remote party only ever sees what the matrix module relays.
//
// Chromium runs with loopback candidates allowed and real IPs in candidates (no mDNS names),
// so run the test in a network namespace of its own with only "lo" (see matrix-call.test.js):
// then nothing can leave the machine.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { chromium } = await import(path.join(HERE, 'node_modules', 'playwright-core', 'index.mjs'));
const BUNDLE = path.join(HERE, 'remote-party.bundle.js');
// The pages come from a small HTTP server on loopback: the page and the homeserver double
// are then in the same (loopback) address space, which Chromium's local network access checks
// require of a page that calls a server on loopback.
let pageServer = null;
const pages = new Map(); // path -> {type, body}

async function servePages() {
  if (pageServer)
    return pageServer.origin;
  const server = http.createServer((req, res) => {
    const p = pages.get(new URL(req.url, 'http://x').pathname);
    res.writeHead(p ? 200 : 404, { 'Content-Type': p ? p.type : 'text/plain' });
    res.end(p ? p.body : '');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  server.unref();
  pageServer = { server, origin: `http://127.0.0.1:${server.address().port}` };
  return pageServer.origin;
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream', '--allow-loopback-in-peer-connection',
      '--disable-features=WebRtcHideLocalIpsWithMdns'],
  });
}

/** A page with its scripts, served from loopback. */
async function blankPage(browser, name, html, scripts = []) {
  const origin = await servePages();
  pages.set(`/${name}/`, { type: 'text/html', body: html });
  for (const sc of scripts)
    pages.set(`/${name}${sc.path}`, { type: 'text/javascript', body: sc.body });
  const page = await browser.newPage();
  page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
  if (process.env.CA_BROWSER_CONSOLE)
    page.on('console', (m) => process.stderr.write(`[${name} console] ${m.text()}\n`));
  page.on('requestfailed', (r) => process.stderr.write(`[request failed] ${r.method()} ${r.url()}: ${r.failure()?.errorText}\n`));
  await page.goto(`${origin}/${name}/`);
  return page;
}

async function until(fn, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  let delay = 20;
  for (;;) {
    const v = await fn();
    if (v)
      return v;
    if (Date.now() > end)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
}

export class RemoteParty {
  static async start(browser, opts) {
    const page = await blankPage(browser, 'remote-party', '<!doctype html><title>remote party</title><script src="rp.js"></script>',
      [{ path: '/rp.js', body: readFileSync(BUNDLE, 'utf8') }]);
    const party = new RemoteParty(page);
    await page.evaluate((o) => window.remoteParty.start(o), opts);
    await until(() => page.evaluate(() => window.remoteParty.state.ready), 20000, 'the remote party to sync');
    return party;
  }

  constructor(page) { this.page = page; }

  summary() { return this.page.evaluate(() => window.remoteParty.summary()); }

  async waitForCall(n = 1, timeoutMs = 20000) {
    return until(async () => { const s = await this.summary(); return s.calls.length >= n && s.calls[n - 1]; },
      timeoutMs, `call #${n} to ring at the remote party`);
  }

  async waitForFrames(n, timeoutMs = 20000) {
    return until(async () => { const f = await this.page.evaluate(() => window.remoteParty.framesDecoded()); return f >= n && f; },
      timeoutMs, `${n} decoded video frame(s) at the remote party: ${JSON.stringify(await this.summary())}`);
  }

  async waitForCallState(n, state, timeoutMs = 20000) {
    return until(async () => { const c = (await this.summary()).calls[n - 1]; return c && c.state === state && c; },
      timeoutMs, `call #${n} to be ${state}`);
  }

  hangup() { return this.page.evaluate(() => window.remoteParty.hangup()); }

  /** Place a video call into the room; resolves with its number (as for waitForCallState). */
  placeCall() { return this.page.evaluate(() => window.remoteParty.placeCall()); }
}

const OFFERER_JS = `
window.offerer = {
  async offer() {
    const canvas = document.createElement('canvas');
    canvas.width = 320; canvas.height = 240;
    const g = canvas.getContext('2d');
    let t = 0;
    setInterval(() => { g.fillStyle = 'hsl(' + (t++ * 7 % 360) + ',80%,50%)'; g.fillRect(0, 0, 320, 240);
      g.fillStyle = '#fff'; g.fillRect((t * 5) % 300, 100, 20, 20); }, 50);
    const track = canvas.captureStream(20).getVideoTracks()[0];
    const pc = new RTCPeerConnection();
    window.pc = pc;
    pc.addTransceiver(track, { direction: 'sendonly' });
    await pc.setLocalDescription(await pc.createOffer());
    if (pc.iceGatheringState !== 'complete')
      await new Promise((r) => pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()));
    return pc.localDescription.sdp;
  },
  async setAnswer(sdp) { await window.pc.setRemoteDescription({ type: 'answer', sdp }); },
  state() { return window.pc ? window.pc.connectionState : 'new'; },
};`;

/** Stands in for the converter: a complete SDP offer with a sendonly video track. */
export class WebRtcOfferer {
  static async start(browser) {
    const page = await blankPage(browser, 'offerer', '<!doctype html><title>offerer</title><script src="o.js"></script>',
      [{ path: '/o.js', body: OFFERER_JS }]);
    return new WebRtcOfferer(page);
  }

  constructor(page) { this.page = page; }
  offer() { return this.page.evaluate(() => window.offerer.offer()); }
  setAnswer(sdp) { return this.page.evaluate((s) => window.offerer.setAnswer(s), sdp); }
  connectionState() { return this.page.evaluate(() => window.offerer.state()); }
}
