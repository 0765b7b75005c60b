import { test } from 'node:test';
import assert from 'node:assert/strict';

import { validateConfig } from '../src/config.js';

const good = { homeserver: 'https://matrix.example.org/', user_id: '@cam:example.org', access_token: 'syt_secret',
  rooms: [{ name: 'family', room: '!abc:example.org' }, { name: 'work', room: '#work:example.org' }] };

test('a good configuration is normalized, with defaults', () => {
  const { config, problems } = validateConfig(good);
  assert.deepEqual(problems, []);
  assert.equal(config.homeserver, 'https://matrix.example.org');
  assert.equal(config.incoming_calls, 'decline');
  assert.equal(config.invite_lifetime_ms, 60000);
  assert.equal(config.rooms.length, 2);
});

test('every problem is listed by JSON pointer, and the token is never quoted', () => {
  const { config, problems } = validateConfig({ homeserver: 'ftp://x', user_id: 'cam', access_token: 'has space',
    rooms: [{ name: 'Bad Name', room: 'nope' }, { name: 'a', room: '!x:y', extra: 1 }, { name: 'a', room: '!z:y' }],
    incoming_calls: 'answer', invite_lifetime_ms: 10, prot: 1 });
  assert.equal(config, null);
  const pointers = problems.map((p) => p.pointer).sort();
  assert.deepEqual(pointers, ['/access_token', '/homeserver', '/incoming_calls', '/invite_lifetime_ms', '/prot',
    '/rooms/0/name', '/rooms/0/room', '/rooms/1/extra', '/rooms/2/name', '/user_id']);
  assert.ok(problems.every((p) => !p.message.includes('has space')));
  assert.match(problems.find((p) => p.pointer === '/rooms/2/name').message, /duplicate of \/rooms\/1\/name/);
});

test('required fields and non-objects', () => {
  assert.deepEqual(validateConfig({}).problems.map((p) => p.pointer), ['/homeserver', '/user_id', '/access_token']);
  assert.deepEqual(validateConfig([]).problems, [{ pointer: '/', message: 'must be a JSON object' }]);
  assert.deepEqual(validateConfig({ ...good, rooms: {} }).problems.map((p) => p.pointer), ['/rooms']);
  assert.deepEqual(validateConfig({ ...good, homeserver: 'https://user:pw@hs.example' }).problems.map((p) => p.pointer),
    ['/homeserver']);
});
