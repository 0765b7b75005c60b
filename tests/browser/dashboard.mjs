// Browser test of the dashboard: Playwright (playwright-core) drives Debian's chromium,
// headless, against the real daemon that tests/integration/test_web.py started in the
// sandbox. Steps: log in; overview shows every module; kill -9 a module and see the change
// and the recovery live; configuration form: field errors, then a valid configuration and
// READY; logs followed live while restarting from the button; entities. Screenshots of each
// page go to $CA_SCREENSHOT_DIR. Prints "N passed, N failed".
//
// Environment: CA_WEB_URL, CA_WEB_PASSWORD, CA_SCREENSHOT_DIR, CA_SANDBOX_EXEC.
//
// With --live-view (LiveView in tests/integration/test_web.py: the real flow engine with
// onvif-discovery, the camera double and go2rtc): a camera's page plays its live view, the
// video element decodes frames of the test pattern (CA_LIVE_SIZE, e.g. 640x360), Stop ends
// the flow, leaving the page ends it, closing the tab ends it; flows are read with
// call-assistantctl (CA_CTL, on CALL_ASSISTANT_CONTROL_SOCKET). Environment: CA_LIVE_ENTITY
// ("module/entity") too. Screenshot: live-view.png.
//
// With --bench-overview (bench/bench_web.py): the overview's first render, from the
// navigation's start to the page's performance mark 'overview-rendered' (set once the module
// list from the event stream is on screen), over 5 loads after a warm-up; prints
// {"renders": [ms, ...]}.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const URL_ = process.env.CA_WEB_URL;
const PASSWORD = process.env.CA_WEB_PASSWORD;
const SHOTS = process.env.CA_SCREENSHOT_DIR || '.';
const SANDBOX = process.env.CA_SANDBOX_EXEC;

// Local ICE candidates as addresses, not mDNS names (the converter does not resolve those).
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-features=WebRtcHideLocalIpsWithMdns'];

async function launch(viewport = { width: 1440, height: 900 }) {
  const profile = mkdtempSync(join(tmpdir(), 'ca-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    deviceScaleFactor: 1,
    colorScheme: 'dark',
  });
  const close = async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); };
  return { context, close };
}

function inSandbox(...argv) {
  if (!SANDBOX) throw new Error('CA_SANDBOX_EXEC is not set');
  execFileSync(SANDBOX, ['exec', ...argv], { stdio: 'inherit' });
}

const results = [];
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push([name, true]);
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push([name, false]);
    console.log(`FAIL ${name}: ${e.stack || e}`);
    throw e;
  }
}

function assert(cond, message) {
  if (!cond) throw new Error('assertion failed: ' + message);
}

async function rowState(page, name) {
  return page.locator(`#modules tr[data-module="${name}"] .chip`).getAttribute('data-state');
}

async function main() {
  const { context, close } = await launch();
  const page = context.pages()[0] || await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  // API answers the pages handle (a wrong password, field errors) are logged by chromium as
  // failed loads; anything else (a CSP violation, a script error) is a problem.
  const expected = /Failed to load resource: the server responded with a status of (401|409|422)/;
  page.on('console', (m) => { if (m.type() === 'error' && !expected.test(m.text())) problems.push('console error: ' + m.text()); });
  const timing = {};

  try {
    await step('the dashboard asks for a login', async () => {
      await page.goto(URL_);
      await page.waitForURL(/\/login\.html$/);
      await page.screenshot({ path: join(SHOTS, 'login.png') });
      await page.fill('#password', 'not-the-password');
      await page.click('#submit');
      await page.locator('#error').waitFor({ state: 'visible' });
      assert((await page.textContent('#error')).includes('wrong password'), 'wrong password shown');
    });

    await step('log in and see every module READY on the overview', async () => {
      await page.fill('#password', PASSWORD);
      await page.click('#submit');
      await page.waitForURL(URL_);
      for (const name of ['source', 'recorder', 'notifier', 'doorbell', 'cameras'])
        await page.locator(`#modules tr[data-module="${name}"] .chip[data-state="READY"]`).waitFor();
      await page.locator('#modules tr[data-module="chromecast"] .chip[data-state="WAITING_FOR_CONFIG"]').waitFor();
      await page.locator('svg.graph .node[data-module="notifier"]').waitFor();
      assert(await page.locator('svg.graph path.edge').count() === 2, 'two dependency edges drawn');
      const live = await page.textContent('#live');
      assert(live === 'live', 'the event stream is connected: ' + live);
      timing.overview_first_render_ms = await page.evaluate(() => performance.getEntriesByName('overview-rendered')[0].startTime);
      await page.screenshot({ path: join(SHOTS, 'overview.png'), fullPage: true });
    });

    await step('kill -9 of a module shows live within 1 s, and its recovery', async () => {
      const row = page.locator('#modules tr[data-module="recorder"]');
      const pid = Number(await row.locator('.c-pid').textContent());
      assert(pid > 0, 'recorder has a PID');
      const t0 = Date.now();
      inSandbox('kill', '-9', String(pid));
      await page.waitForFunction((old) => {
        const r = document.querySelector('#modules tr[data-module="recorder"]');
        return r && (r.querySelector('.chip').dataset.state !== 'READY' || Number(r.querySelector('.c-pid').textContent) !== old);
      }, pid, { timeout: 5000 });
      timing.kill_to_page_ms = Date.now() - t0;
      assert(timing.kill_to_page_ms < 1000, `the change showed after ${timing.kill_to_page_ms} ms`);
      await page.waitForFunction((old) => {
        const r = document.querySelector('#modules tr[data-module="recorder"]');
        return r.querySelector('.chip').dataset.state === 'READY' && r.querySelector('.c-restarts').textContent === '1' &&
          Number(r.querySelector('.c-pid').textContent) !== old;
      }, pid, { timeout: 20000 });
    });

    await step('configuration form: errors at the field, then a valid one and READY', async () => {
      await page.click('#modules tr[data-module="chromecast"] a');
      await page.waitForURL(/#\/modules\/chromecast$/);
      await page.locator('form.config').waitFor();
      await page.screenshot({ path: join(SHOTS, 'module.png'), fullPage: true });
      // Add a device with a name the schema's pattern refuses.
      await page.locator('.field[data-pointer="/devices"] > div > button', { hasText: 'Add' }).click();
      await page.fill('.field[data-pointer="/devices/0/name"] input', 'living room!');
      await page.fill('.field[data-pointer="/devices/0/host"] input', '127.0.0.1');
      await page.click('#config-save');
      const err = page.locator('.field[data-pointer="/devices/0/name"].invalid .err');
      await err.waitFor();
      assert((await err.textContent()).length > 0, 'an error message at /devices/0/name');
      assert(await page.locator('.field[data-pointer="/devices/0/host"].invalid').count() === 0, 'host is fine');
      await page.locator('#config-result .banner.bad').waitFor();
      await page.screenshot({ path: join(SHOTS, 'config-errors.png'), fullPage: true });
      assert(await page.locator('h1 .chip').getAttribute('data-state') === 'WAITING_FOR_CONFIG', 'still waiting');

      await page.fill('.field[data-pointer="/devices/0/name"] input', 'tv');
      await page.click('#config-save');
      await page.locator('#config-result .banner.ok').waitFor();
      await page.locator('h1 .chip[data-state="READY"]').waitFor({ timeout: 15000 });
      // The stored configuration comes back in the form, defaults filled in.
      assert(await page.inputValue('.field[data-pointer="/devices/0/port"] input') === '8009', 'default port filled in');
    });

    await step('logs: follow, and a new line arrives; restart from the button', async () => {
      await page.goto(URL_ + '#/modules/source/logs');
      await page.locator('#log .line').first().waitFor();
      assert(await page.isChecked('#log-follow'), 'follow is on');
      const before = await page.locator('#log .line').count();
      const oldPid = await page.evaluate(async () => (await (await fetch('/api/modules/source')).json()).main_pid);
      await page.click('#act-restart');
      await page.locator('#confirm[open]').waitFor();
      await page.click('#confirm-ok');
      // The new process's first line, live, at the bottom of the followed log.
      await page.locator('#log .line.new', { hasText: 'fixture: mode normal' }).waitFor({ timeout: 15000 });
      assert(await page.locator('#log .line').count() > before, 'new lines appended');
      const atBottom = await page.evaluate(() => { const b = document.getElementById('log'); return b.scrollHeight - b.scrollTop - b.clientHeight < 60; });
      assert(atBottom, 'followed to the bottom');
      await page.locator('h1 .chip[data-state="READY"]').waitFor({ timeout: 15000 });
      const newPid = await page.evaluate(async () => (await (await fetch('/api/modules/source')).json()).main_pid);
      assert(newPid && newPid !== oldPid, `restarted: pid ${oldPid} -> ${newPid}`);
      // Filter by text.
      await page.fill('#log-filter', 'FIXTURE: MODE');
      await page.waitForFunction(() => [...document.querySelectorAll('#log .line .m')].every((m) => m.textContent.toLowerCase().includes('fixture: mode'))
        && document.querySelectorAll('#log .line').length >= 2, null, { timeout: 5000 });
      await page.fill('#log-filter', '');
      // Unfiltered again: systemd's own lines about the unit are there too.
      await page.locator('#log .line .m', { hasText: '[systemd]' }).first().waitFor({ timeout: 5000 });
      await page.screenshot({ path: join(SHOTS, 'logs.png') });
    });

    await step('entities: each with its module, availability live; a camera has its page', async () => {
      await page.goto(URL_ + '#/entities');
      const row = page.locator('#entities tr[data-module="cameras"][data-entity="cam-1"]');
      await row.waitFor({ timeout: 5000 });
      assert(await page.locator('#entities tr[data-module="cameras"]').count() === 2, 'both cameras listed');
      assert(await row.locator('td:nth-child(3) a').textContent() === 'cameras', 'the providing module');
      await row.locator('.chip[data-state="READY"]').waitFor();
      await page.screenshot({ path: join(SHOTS, 'entities.png') });
      // Its module stops: the entities stay, unavailable; it starts again: available, live.
      const op = (what) => page.evaluate(async (w) => (await fetch('/api/modules/cameras/' + w,
        { method: 'POST', headers: { 'X-CSRF-Token': app.csrf } })).status, what);
      assert(await op('stop') === 200, 'stop accepted');
      await row.locator('.chip[data-state="STOPPED"]').waitFor({ timeout: 10000 });
      assert(await op('start') === 200, 'start accepted');
      await row.locator('.chip[data-state="READY"]').waitFor({ timeout: 15000 });
      await row.locator('td:first-child a').click();
      await page.locator('#live-view').waitFor();
      const facts = await page.textContent('dl.facts');
      assert(facts.includes('Availableyes'), 'available: its module is READY');
      assert(facts.includes('rtsp'), 'the media of its type');
      await page.screenshot({ path: join(SHOTS, 'camera.png') });
    });

    await step('no page errors, no console errors (CSP included)', async () => {
      assert(problems.length === 0, problems.join('\n'));
    });

    await step('log out', async () => {
      await page.goto(URL_);
      await page.click('#logout');
      await page.waitForURL(/\/login\.html$/);
      const r = await page.evaluate(async () => (await fetch('/api/session')).status);
      assert(r === 401, 'the session is gone');
    });
  } catch (e) {
    await page.screenshot({ path: join(SHOTS, 'failure.png'), fullPage: true }).catch(() => {});
  } finally {
    writeFileSync(join(SHOTS, 'timing.json'), JSON.stringify(timing, null, 2) + '\n');
    await close();
  }
  const failed = results.filter((r) => !r[1]).length;
  console.log(`timing: ${JSON.stringify(timing)}`);
  console.log(`${results.length - failed} passed, ${failed} failed`);
  process.exit(failed || results.length < 8 ? 1 : 0);
}

async function benchOverview() {
  const { context, close } = await launch({ width: 1920, height: 1080 });
  const page = context.pages()[0] || await context.newPage();
  await page.goto(URL_);
  await page.fill('#password', PASSWORD);
  await page.click('#submit');
  await page.waitForURL(URL_);
  const renders = [];
  for (let i = 0; i < 6; i++) {
    await page.reload();
    await page.waitForFunction(() => performance.getEntriesByName('overview-rendered').length > 0, null, { timeout: 20000 });
    const ms = await page.evaluate(() => performance.getEntriesByName('overview-rendered')[0].startTime);
    if (i > 0) renders.push(ms); // the first load fills the browser's caches
  }
  await close();
  console.log(JSON.stringify({ renders }));
}

// ---- the live view ----

function flows() {
  const out = execFileSync(process.env.CA_CTL, ['--json', 'flow', 'list'], { encoding: 'utf8' });
  return JSON.parse(out);
}

async function until(fn, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function flowGone(id, ms) {
  await until(() => !flows().some((f) => f.id === id), ms, `flow ${id} to end`);
}

// The frames the video element decoded, and its size.
async function videoStats(page) {
  return page.evaluate(() => {
    const v = document.getElementById('live-video');
    return v ? { frames: v.getVideoPlaybackQuality().totalVideoFrames, size: `${v.videoWidth}x${v.videoHeight}` } : null;
  });
}

async function playAndWaitForFrames(page, n) {
  await page.click('#live-play');
  await page.waitForFunction((k) => {
    const v = document.getElementById('live-video');
    return v && !v.hidden && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames >= k;
  }, n, { timeout: 30000 });
  const id = await page.getAttribute('#live-view [data-flow]', 'data-flow');
  assert(id && id.startsWith('flow-'), 'the page knows its flow: ' + id);
  return id;
}

async function liveViewTest() {
  const [module, entity] = process.env.CA_LIVE_ENTITY.split('/');
  const size = process.env.CA_LIVE_SIZE;
  const { context, close } = await launch({ width: 1280, height: 900 });
  let page = context.pages()[0] || await context.newPage();
  const problems = [];
  const watch = (p) => {
    p.on('pageerror', (e) => problems.push('page error: ' + e.message));
    p.on('console', (m) => { if (m.type() === 'error') problems.push('console error: ' + m.text()); });
  };
  watch(page);
  try {
    await step('log in and open the camera\'s page', async () => {
      await page.goto(URL_);
      await page.waitForURL(/\/login\.html$/);
      await page.fill('#password', PASSWORD);
      await page.click('#submit');
      await page.waitForURL(URL_);
      await page.locator('#live.on').waitFor();
      await page.goto(URL_ + `#/entities/${encodeURIComponent(module)}/${encodeURIComponent(entity)}`);
      await page.locator('#live-play').waitFor();
      assert(await page.isHidden('#live-video'), 'no video before Play');
    });

    let flowId;
    await step('Play: the video element decodes the camera\'s frames', async () => {
      const t0 = Date.now();
      flowId = await playAndWaitForFrames(page, 10);
      console.log(`     first 10 frames after ${Date.now() - t0} ms`);
      const a = await videoStats(page);
      assert(a.size === size, `video size ${a.size}, the test pattern's is ${size}`);
      await page.waitForFunction((k) => document.getElementById('live-video').getVideoPlaybackQuality().totalVideoFrames >= k,
        a.frames + 10, { timeout: 10000 });
      await page.locator('#live-status[data-state="playing"]').waitFor();
      const f = flows().find((x) => x.id === flowId);
      assert(f && f.state === 'ACTIVE', 'the flow is ACTIVE: ' + JSON.stringify(f));
      assert(f.source.module === module && f.source.id === entity && !f.target, 'from the camera to a peer');
      assert(f.steps.map((x) => x.media_out).join('>') === 'rtsp>webrtc', 'camera -> converter -> page');
      await page.screenshot({ path: join(SHOTS, 'live-view.png') });
    });

    await step('Stop ends the flow and its converter', async () => {
      await page.click('#live-stop');
      await page.locator('#live-status[data-state="stopped"]').waitFor();
      assert(await page.isHidden('#live-video'), 'the video is gone');
      await flowGone(flowId, 10000);
    });

    await step('leaving the page ends the flow', async () => {
      flowId = await playAndWaitForFrames(page, 1);
      await page.click('nav a[data-nav="entities"]');
      await page.locator('#entities').waitFor();
      await flowGone(flowId, 10000);
    });

    await step('closing the tab ends the flow', async () => {
      await page.goto(URL_ + `#/entities/${encodeURIComponent(module)}/${encodeURIComponent(entity)}`);
      await page.locator('#live-play').waitFor();
      flowId = await playAndWaitForFrames(page, 1);
      await page.close({ runBeforeUnload: true });
      await flowGone(flowId, 10000);
      page = await context.newPage();
    });

    await step('no page errors, no console errors (CSP included)', async () => {
      assert(problems.length === 0, problems.join('\n'));
    });
  } catch (e) {
    if (!page.isClosed()) await page.screenshot({ path: join(SHOTS, 'live-view-failure.png'), fullPage: true }).catch(() => {});
  } finally {
    await close();
  }
  const failed = results.filter((r) => !r[1]).length;
  console.log(`${results.length - failed} passed, ${failed} failed`);
  process.exit(failed || results.length < 6 ? 1 : 0);
}

if (process.argv.includes('--bench-overview')) benchOverview();
else if (process.argv.includes('--live-view')) liveViewTest();
else main();
