// The Node module runtime: environment, token check on incoming calls, registration, config,
// health, entity events, state reports with the token, Shutdown.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import grpc from '@grpc/grpc-js';

import { ConfigError, ModuleRuntime, readEnvironment, readToken } from '../runtime/module-runtime.js';
import { freePort, moduleClient, startRecorder, startRuntime, tokenFile, waitFor } from './helpers.js';

const TOKEN = 'tok-' + Math.random().toString(36).slice(2);
const INFO = { name: 'demo', version: '1.2.3', description: 'demo module', configRequired: true,
  configSchema: { type: 'object' },
  entityTypes: [{ name: 'thing', description: 'a thing', capabilities: ['x'], mediaIn: ['hls'], configSchema: { type: 'object' } }] };

test('environment: GRPC_PORT is required; the token file comes from the variable or the credentials dir', () => {
  assert.throws(() => readEnvironment('m', {}), /GRPC_PORT/);
  assert.throws(() => readEnvironment('m', { GRPC_PORT: '70000' }), /GRPC_PORT/);
  assert.throws(() => readEnvironment('m', { GRPC_PORT: '12a' }), /GRPC_PORT/);
  const file = tokenFile('abc');
  assert.equal(readToken({ CALL_ASSISTANT_TOKEN_FILE: file }), 'abc');
  assert.equal(readToken({ CREDENTIALS_DIRECTORY: file.replace(/\/module-token$/, '') }), 'abc');
  assert.equal(readToken({}), null);
  const env = readEnvironment('m', { GRPC_PORT: '5000', CALL_ASSISTANT_ORCHESTRATOR: 'unix:/run/x.sock' });
  assert.equal(env.orchestrator, 'unix:/run/x.sock');
  assert.equal(env.moduleId, 'm');
});

test('calls need the module token; registration, config, entities, health and shutdown work', async (t) => {
  const rec = await startRecorder(TOKEN);
  t.after(() => rec.close());
  const applied = [];
  const rt = await startRuntime(INFO, {
    applyConfig: (c) => {
      if (c.bad)
        throw new ConfigError([{ pointer: '/bad', message: 'must not be set' }, { pointer: '/x', message: 'nope' }]);
      applied.push(c);
    },
  }, { token: TOKEN, rec });
  const c = moduleClient(rt.env.port, TOKEN);
  t.after(() => c.close());

  for (const tok of [null, 'wrong', TOKEN + 'x']) {
    const e = await c.call('RegisterModule', {}, tok).then(() => null, (err) => err);
    assert.equal(e?.code, grpc.status.UNAUTHENTICATED, `token ${tok}`);
  }
  // Health is answered without a token (it says nothing secret).
  assert.equal((await c.health()).status, 'SERVING');
  assert.equal((await c.health('callassistant.v1.ModuleService')).status, 'SERVING');
  assert.equal((await c.health('nope').catch((e) => e)).code, grpc.status.NOT_FOUND);

  const reg = await c.call('RegisterModule', { module_id: 'demo' });
  assert.equal(reg.name, 'demo');
  assert.equal(reg.state, 'MODULE_STATE_WAITING_FOR_CONFIG');
  assert.equal(reg.config_required, true);
  assert.deepEqual(reg.entity_types[0].media_in, ['hls']);
  await waitFor(() => rec.lastState()?.state === 'MODULE_STATE_WAITING_FOR_CONFIG', 5000, 'WAITING_FOR_CONFIG report');

  assert.equal((await c.call('ConnectEntity', { id: 'x', flow_id: 'f' }).catch((e) => e)).code, grpc.status.UNIMPLEMENTED);
  assert.equal((await c.call('CreateEntity', { type: 'thing' }).catch((e) => e)).code, grpc.status.FAILED_PRECONDITION);
  const notJson = await c.call('ApplyConfig', { config_json: '{nope' }).catch((e) => e);
  assert.equal(notJson.code, grpc.status.INVALID_ARGUMENT);
  assert.match(notJson.details, /^\/: not JSON/);
  const refused = await c.call('ApplyConfig', { config_json: '{"bad": true}' }).catch((e) => e);
  assert.equal(refused.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(refused.details, '/bad: must not be set; /x: nope');
  assert.equal(rt.state, 'MODULE_STATE_WAITING_FOR_CONFIG');

  const ok = await c.call('ApplyConfig', { config_json: '{"a": 1}' });
  assert.equal(ok.state, 'MODULE_STATE_READY');
  assert.deepEqual(applied, [{ a: 1 }]);
  await waitFor(() => rec.lastState()?.state === 'MODULE_STATE_READY', 5000, 'READY report');

  rt.putEntity({ id: 'e1', type: 'thing', name: 'E1', config: { k: 1 }, state: 'idle', attributes: { a: 1 } });
  rt.putEntity({ id: 'e1', type: 'thing', name: 'E1', config: { k: 1 }, state: 'idle', attributes: { a: 1 } });
  rt.putEntity({ id: 'e1', type: 'thing', name: 'E1', config: { k: 1 }, state: 'busy', attributes: { a: 1 } });
  const list = await c.call('ListEntities', {});
  assert.equal(list.entities.length, 1);
  assert.equal(list.entities[0].state, 'busy');
  assert.deepEqual(list.entities[0].attributes, { a: '1' });
  assert.equal((await c.call('ListEntities', { type: 'other' })).entities.length, 0);
  assert.equal((await c.call('DestroyEntity', { id: 'nope' }).catch((e) => e)).code, grpc.status.NOT_FOUND);
  rt.removeEntity('e1');
  await waitFor(() => rec.events.length === 3, 5000, 'three entity events');
  assert.deepEqual(rec.events.map((e) => e.kind), ['KIND_ENTITY_ADDED', 'KIND_ENTITY_CHANGED', 'KIND_ENTITY_REMOVED']);
  assert.equal(rec.unauthenticated, 0);

  rt.setServing(false);
  assert.equal((await c.health()).status, 'NOT_SERVING');
  rt.setServing(true);

  await c.call('Shutdown', { deadline_ms: 1000 });
  await rt.stopped;
  assert.ok(rt.stopping);
});

test('a module without a token refuses every ModuleService call', async (t) => {
  const port = await freePort();
  const rt = new ModuleRuntime(INFO, {}, { env: { GRPC_PORT: String(port) }, stopGraceMs: 200 });
  await rt.start();
  t.after(() => rt.stop());
  const c = moduleClient(port, 'anything');
  t.after(() => c.close());
  const e = await c.call('RegisterModule', {}).catch((err) => err);
  assert.equal(e.code, grpc.status.UNAUTHENTICATED);
  assert.match(e.details, /no token/);
});

test('a port in use is a clear error', async (t) => {
  const rec = await startRecorder(TOKEN);
  t.after(() => rec.close());
  const a = await startRuntime(INFO, {}, { token: TOKEN, rec });
  t.after(() => a.stop());
  const b = new ModuleRuntime(INFO, {}, { env: { GRPC_PORT: String(a.env.port), CALL_ASSISTANT_TOKEN_FILE: tokenFile(TOKEN) } });
  await assert.rejects(b.start(), /cannot listen on 127.0.0.1:/);
});
