import { test } from 'node:test';
import assert from 'node:assert/strict';

import { CONFIG_SCHEMA, answerSource, validateConfig } from '../src/config.js';

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
    incoming_calls: 'pick-up', invite_lifetime_ms: 10, prot: 1 });
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

test('answering incoming calls: answer_with for every room, its own or the default', () => {
  const { config, problems } = validateConfig({ ...good, incoming_calls: 'answer', answer_with: 'onvif-discovery/cam-1',
    rooms: [{ name: 'family', room: '!abc:example.org' }, { name: 'work', room: '#work:example.org', answer_with: 'cams/door:1' }] });
  assert.deepEqual(problems, []);
  assert.equal(config.incoming_calls, 'answer');
  assert.deepEqual(answerSource(config, config.rooms[0]), { module: 'onvif-discovery', id: 'cam-1' });
  // The entity id is everything after the first "/".
  assert.deepEqual(answerSource(config, config.rooms[1]), { module: 'cams', id: 'door:1' });
  assert.deepEqual(answerSource({ ...config, answer_with: 'a/b/c' }, config.rooms[0]), { module: 'a', id: 'b/c' });
  assert.equal(answerSource(validateConfig(good).config, validateConfig(good).config.rooms[0]), null);

  // Without a default, each room needs its own; a bad source is named by its pointer.
  const r = validateConfig({ ...good, incoming_calls: 'answer',
    rooms: [{ name: 'family', room: '!abc:example.org' }, { name: 'work', room: '#work:example.org', answer_with: 'cams/x' }] });
  assert.deepEqual(r.problems.map((p) => p.pointer), ['/rooms/0/answer_with']);
  assert.match(r.problems[0].message, /required when incoming_calls is "answer"/);
  for (const bad of ['cam-1', '/cam-1', 'cams/', 'cams/has space', 'ca ms/x', 7, `cams/${'x'.repeat(257)}`]) {
    const b = validateConfig({ ...good, incoming_calls: 'answer', answer_with: bad });
    assert.deepEqual(b.problems.map((p) => p.pointer), ['/answer_with'], String(bad));
    assert.match(b.problems[0].message, /MODULE\/ENTITY/);
    const c = validateConfig({ ...good, rooms: [{ name: 'family', room: '!abc:example.org', answer_with: bad }] });
    assert.deepEqual(c.problems.map((p) => p.pointer), ['/rooms/0/answer_with'], String(bad));
  }
  // answer_with is kept with decline too (switching back and forth needs no other change).
  assert.deepEqual(validateConfig({ ...good, answer_with: 'cams/x' }).problems, []);
});

test('the schema the config service checks first agrees on answer_with', () => {
  const re = new RegExp(CONFIG_SCHEMA.properties.answer_with.pattern);
  assert.deepEqual(CONFIG_SCHEMA.properties.incoming_calls.enum, ['decline', 'ignore', 'answer']);
  for (const ok of ['onvif-discovery/cam-1', 'cams/door:1', 'a/b/c'])
    assert.ok(re.test(ok), ok);
  for (const bad of ['cam-1', '/cam-1', 'cams/', 'cams/has space'])
    assert.ok(!re.test(bad), bad);
  assert.equal(CONFIG_SCHEMA.properties.rooms.items.properties.answer_with.pattern, CONFIG_SCHEMA.properties.answer_with.pattern);
});
