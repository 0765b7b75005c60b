// Shared pieces of the matrix module's unit tests: a loopback orchestrator endpoint that
// records what the module reports (and checks its token), the module in-process on a free
// port, a ModuleService client that sends the token, and waiting with a deadline.

import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import grpc from '@grpc/grpc-js';

import { ModuleRuntime, TOKEN_METADATA_KEY, loadProtos } from '../runtime/module-runtime.js';

export const pkg = loadProtos();

// matrix-js-sdk leaves the timeout timer of every request running after the request is done
// (up to 110 s for /sync) and a 6 h capabilities timer after stopClient(): they would keep a
// test process alive long after its tests ended. Tests keep track of timers and unref the
// rest at the end (the module itself exits with process.exit once stopped).
const timers = new Set();
const realSetTimeout = globalThis.setTimeout;
globalThis.setTimeout = (...args) => {
  const t = realSetTimeout(...args);
  if (timers.size > 10000)
    timers.clear();
  timers.add(t);
  return t;
};
export function unrefTimers() {
  for (const t of timers)
    t.unref?.();
  timers.clear();
}

export async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Poll a cheap predicate until it returns something truthy, or fail after timeoutMs. */
export async function waitFor(predicate, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  let delay = 5;
  for (;;) {
    const v = await predicate();
    if (v)
      return v;
    if (Date.now() > end)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 100);
  }
}

/** OrchestratorService's module-facing half, recording ReportState/ReportEvent. */
export async function startRecorder(token) {
  const rec = { states: [], events: [], unauthenticated: 0, onEvent: () => ({}) };
  const server = new grpc.Server();
  const check = (call, cb) => {
    if (call.metadata.get(TOKEN_METADATA_KEY)[0] !== token) {
      rec.unauthenticated++;
      cb({ code: grpc.status.UNAUTHENTICATED, details: 'bad token' });
      return false;
    }
    return true;
  };
  server.addService(pkg.callassistant.v1.OrchestratorService.service, {
    ReportState: (call, cb) => { if (check(call, cb)) { rec.states.push(call.request); cb(null, {}); } },
    ReportEvent: (call, cb) => {
      if (!check(call, cb))
        return;
      rec.events.push(call.request);
      // rec.onEvent(event) answers: a ReportEventResponse, or throws {code, details} to refuse.
      try {
        cb(null, rec.onEvent(call.request) || {});
      } catch (e) {
        cb({ code: e.code, details: e.details });
      }
    },
  });
  const port = await new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0',
    grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  rec.address = `127.0.0.1:${port}`;
  rec.close = () => new Promise((r) => server.tryShutdown(r));
  rec.lastState = () => rec.states[rec.states.length - 1];
  rec.eventsOf = (kind) => rec.events.filter((e) => e.kind === kind);
  return rec;
}

export function tokenFile(token) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ca-node-test-'));
  const file = path.join(dir, 'module-token');
  writeFileSync(file, `${token}\n`, { mode: 0o400 });
  return file;
}

/** A ModuleRuntime on a free loopback port, reporting to rec. */
export async function startRuntime(info, handlers, { token, rec }) {
  const port = await freePort();
  const env = { GRPC_PORT: String(port), CALL_ASSISTANT_MODULE_ID: info.name,
    CALL_ASSISTANT_TOKEN_FILE: tokenFile(token), CALL_ASSISTANT_ORCHESTRATOR: rec ? rec.address : '' };
  const rt = new ModuleRuntime(info, handlers, { env, stopGraceMs: 500 });
  await rt.start();
  return rt;
}

/** A promise-returning ModuleService + Health client on 127.0.0.1:port (token: null sends none). */
export function moduleClient(port, token) {
  const target = `127.0.0.1:${port}`;
  const svc = new pkg.callassistant.v1.ModuleService(target, grpc.credentials.createInsecure());
  const health = new pkg.grpc.health.v1.Health(target, grpc.credentials.createInsecure());
  const call = (client, method, req, tok = token) => new Promise((resolve, reject) => {
    const md = new grpc.Metadata();
    if (tok)
      md.set(TOKEN_METADATA_KEY, tok);
    client[method](req, md, { deadline: Date.now() + 15000 }, (err, resp) => (err ? reject(err) : resolve(resp)));
  });
  return {
    call: (method, req = {}, tok) => call(svc, method, req, tok),
    health: (service = '') => call(health, 'Check', { service }, null),
    close: () => { svc.close(); health.close(); },
  };
}
