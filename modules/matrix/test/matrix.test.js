// The matrix module (runtime + matrix-js-sdk) against the Matrix homeserver double
// (tests/doubles/matrix-homeserver.js), driven through its ModuleService like the orchestrator
// does, with a scripted remote party (events sent as a second user). The remote party in a real
// browser is in tests/integration (test_matrix_call).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import grpc from '@grpc/grpc-js';

import { INFO, MatrixModule } from '../src/matrix-module.js';
import { moduleClient, startRecorder, startRuntime, unrefTimers, waitFor } from './helpers.js';

const { MatrixHomeserverDouble } = await import(path.join(process.env.CA_SOURCE_ROOT, 'tests/doubles/matrix-homeserver.js'));

const TOKEN = 'module-token-' + Math.random().toString(36).slice(2);
const ACCESS = 'syt_doorbell_' + Math.random().toString(36).slice(2);
const BOT = '@doorbell:double.test';
const ALICE = '@alice:double.test';
const ROOM = '!family:double.test';
const OFFER = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\na=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n';
const ANSWER = 'v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n';

let hs, rec, rt, mod, client;

const config = (extra = {}) => JSON.stringify({ homeserver: hs.url, user_id: BOT, access_token: ACCESS,
  rooms: [{ name: 'family', room: '#family:double.test' }, { name: 'closed', room: '!closed:double.test' }],
  invite_lifetime_ms: 30000, ...extra });
const entity = async (id) => (await client.call('ListEntities', {})).entities.find((e) => e.id === id);
const sentBy = (user, type) => hs.events.filter((e) => e.sender === user && e.type === type);

before(async () => {
  hs = new MatrixHomeserverDouble();
  await hs.start();
  hs.addUser(BOT, ACCESS);
  hs.addUser(ALICE, 'alice-token');
  hs.addRoom(ROOM, { alias: '#family:double.test', invite: [BOT, ALICE] });
  hs.addRoom('!closed:double.test', { invite: [ALICE] });
  hs.appendEvent(ROOM, ALICE, 'm.room.member', { membership: 'join' }, ALICE);
  rec = await startRecorder(TOKEN);
  mod = new MatrixModule({ backoff: { unreachableMs: 100, tokenMs: 200, roomMs: 200 }, gatherTimeoutMs: 300 });
  rt = await startRuntime(INFO, mod.handlers(), { token: TOKEN, rec });
  mod.rt = rt;
  client = moduleClient(rt.env.port, TOKEN);
});

after(async () => {
  client.close();
  await rt.stop();
  await hs.stop();
  await rec.close();
  unrefTimers();
});

test('refused configuration names every field and never the token; nothing is applied', async () => {
  const e = await client.call('ApplyConfig', { config_json: JSON.stringify({ homeserver: 'nope', user_id: BOT,
    access_token: 'has space', rooms: [{ name: 'x', room: 'bad' }] }) }).catch((err) => err);
  assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(e.details, '/homeserver: must be an http:// or https:// URL without credentials; ' +
    '/access_token: must be a non-empty string without spaces; /rooms/0/room: must be a room id (!id:server) or alias (#alias:server)');
  assert.equal(rt.state, 'MODULE_STATE_WAITING_FOR_CONFIG');
  assert.equal((await client.call('ConnectEntity', { id: 'family', flow_id: 'f' }).catch((err) => err)).code,
    grpc.status.FAILED_PRECONDITION);
});

test('configured: connects, joins the room it may join, reports the other one with the reason', async () => {
  await client.call('ApplyConfig', { config_json: config() });
  await waitFor(() => rec.lastState()?.state === 'MODULE_STATE_READY' && rec.lastState().message.startsWith('connected'),
    10000, 'READY (connected)');
  const fam = await waitFor(async () => { const e = await entity('family'); return e?.state === 'idle' && e; }, 10000, 'family idle');
  assert.equal(fam.type, 'matrix_room');
  assert.equal(fam.attributes.room_id, ROOM);
  assert.ok(!fam.config_json.includes(ACCESS));
  const closed = await waitFor(async () => { const e = await entity('closed'); return e?.attributes.reason?.includes('M_FORBIDDEN') && e; },
    10000, 'closed unavailable');
  assert.equal(closed.state, 'unavailable');
  const refused = await client.call('ConnectEntity', { id: 'closed', flow_id: 'f0',
    input: { media: 'webrtc', sdp: OFFER, sdp_type: 'offer' } }).catch((err) => err);
  assert.equal(refused.code, grpc.status.UNAVAILABLE);
  assert.match(refused.details, /not joined/);
  // Nothing that was reported carries the access token.
  assert.ok(!JSON.stringify(rec.events).includes(ACCESS));
  assert.ok(!JSON.stringify(rec.states).includes(ACCESS));
});

test('bad ConnectEntity input is refused', async () => {
  for (const [req, re] of [
    [{ input: { media: 'hls', url: 'http://x' } }, /takes a WebRTC offer/],
    [{ input: { media: 'webrtc', sdp: ANSWER, sdp_type: 'answer' } }, /takes a WebRTC offer/],
    [{ input: { media: 'webrtc', sdp: 'hello', sdp_type: 'offer' } }, /not an SDP offer/],
    [{ input: { media: 'webrtc', sdp: OFFER, sdp_type: 'offer' }, output_media: 'webrtc' }, /gives no media/],
  ]) {
    const e = await client.call('ConnectEntity', { id: 'family', flow_id: 'bad', ...req }).catch((err) => err);
    assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
    assert.match(e.details, re);
  }
  assert.equal((await client.call('ConnectEntity', { id: 'nope', flow_id: 'f',
    input: { media: 'webrtc', sdp: OFFER, sdp_type: 'offer' } }).catch((err) => err)).code, grpc.status.NOT_FOUND);
});

test('a call: invite with the offer, answer relayed as FLOW_SIGNAL with candidates, remote hangup ends the flow', async () => {
  const resp = await client.call('ConnectEntity', { id: 'family', flow_id: 'flow-1',
    input: { media: 'webrtc', sdp: OFFER, sdp_type: 'offer' } });
  assert.equal(resp.output, null);
  assert.equal(resp.entity.state, 'ringing');
  const invite = sentBy(BOT, 'm.call.invite').at(-1);
  assert.equal(invite.room_id, ROOM);
  assert.equal(invite.content.offer.sdp, `${OFFER}a=msid:call-assistant video-0\r\n`);
  assert.equal(invite.content.version, '1');
  const callId = invite.content.call_id;

  hs.appendEvent(ROOM, ALICE, 'm.call.answer', { call_id: callId, party_id: 'alice-dev', version: '1',
    answer: { type: 'answer', sdp: ANSWER } });
  hs.appendEvent(ROOM, ALICE, 'm.call.candidates', { call_id: callId, party_id: 'alice-dev', version: '1',
    candidates: [{ candidate: 'candidate:5 1 udp 2122260223 127.0.0.1 40000 typ host', sdpMid: '0', sdpMLineIndex: 0 }] });
  const signal = await waitFor(() => rec.eventsOf('KIND_FLOW_SIGNAL').find((e) => e.flow_id === 'flow-1'), 10000, 'FLOW_SIGNAL');
  assert.equal(signal.entity.id, 'family');
  assert.equal(signal.link.media, 'webrtc');
  assert.equal(signal.link.sdp_type, 'answer');
  assert.match(signal.link.sdp, /a=recvonly/);
  assert.match(signal.link.sdp, /a=candidate:5 1 udp 2122260223 127.0.0.1 40000 typ host/);
  await waitFor(() => sentBy(BOT, 'm.call.select_answer').some((e) => e.content.call_id === callId &&
    e.content.selected_party_id === 'alice-dev'), 5000, 'm.call.select_answer');
  await waitFor(async () => (await entity('family')).state === 'in_call', 5000, 'in_call');

  hs.appendEvent(ROOM, ALICE, 'm.call.hangup', { call_id: callId, party_id: 'alice-dev', version: '1', reason: 'user_hangup' });
  const ended = await waitFor(() => rec.eventsOf('KIND_FLOW_ENDED').find((e) => e.flow_id === 'flow-1'), 10000, 'FLOW_ENDED');
  assert.match(ended.reason, /@alice:double.test hung up/);
  await waitFor(async () => (await entity('family')).state === 'idle', 5000, 'idle again');
  // DisconnectEntity after the end is fine (idempotent) and sends nothing more.
  const hangups = sentBy(BOT, 'm.call.hangup').length;
  await client.call('DisconnectEntity', { id: 'family', flow_id: 'flow-1' });
  assert.equal(sentBy(BOT, 'm.call.hangup').length, hangups);
});

test('DisconnectEntity hangs up; ConnectEntity again replaces the call', async () => {
  const input = { media: 'webrtc', sdp: OFFER, sdp_type: 'offer' };
  await client.call('ConnectEntity', { id: 'family', flow_id: 'flow-2', input });
  const first = sentBy(BOT, 'm.call.invite').at(-1).content.call_id;
  await client.call('ConnectEntity', { id: 'family', flow_id: 'flow-2', input });
  const second = sentBy(BOT, 'm.call.invite').at(-1).content.call_id;
  assert.notEqual(first, second);
  assert.ok(sentBy(BOT, 'm.call.hangup').some((e) => e.content.call_id === first));
  await client.call('DisconnectEntity', { id: 'family', flow_id: 'flow-2' });
  assert.ok(sentBy(BOT, 'm.call.hangup').some((e) => e.content.call_id === second && e.content.reason === 'user_hangup'));
  assert.ok(!rec.eventsOf('KIND_FLOW_ENDED').some((e) => e.flow_id === 'flow-2'), 'no FLOW_ENDED for a requested hangup');
});

test('incoming calls are declined (m.call.reject)', async () => {
  hs.appendEvent(ROOM, ALICE, 'm.call.invite', { call_id: 'incoming-1', party_id: 'alice-dev', version: '1',
    lifetime: 60000, offer: { type: 'offer', sdp: OFFER } });
  const reject = await waitFor(() => sentBy(BOT, 'm.call.reject').find((e) => e.content.call_id === 'incoming-1'), 10000, 'm.call.reject');
  assert.equal(reject.content.version, '1');
});

test('429 on send: the invite waits out retry-after and goes through', async () => {
  hs.fault('/send/m.call.invite/', 429, 1, 300);
  const t0 = Date.now();
  await client.call('ConnectEntity', { id: 'family', flow_id: 'flow-3', input: { media: 'webrtc', sdp: OFFER, sdp_type: 'offer' } });
  assert.ok(Date.now() - t0 >= 250, 'waited for retry-after');
  await client.call('DisconnectEntity', { id: 'family', flow_id: 'flow-3' });
});

test('homeserver down and back: ERROR with the reason, READY again by itself', async () => {
  const port = hs.port;
  await hs.stop();
  await waitFor(() => rec.lastState()?.state === 'MODULE_STATE_ERROR', 20000, 'ERROR');
  assert.match(rec.lastState().message, /homeserver unreachable/);
  await waitFor(async () => (await entity('family')).state === 'unavailable', 5000, 'family unavailable');
  // The module keeps serving: a restart would not bring the homeserver back.
  assert.equal((await client.health()).status, 'SERVING');
  const refused = await client.call('ConnectEntity', { id: 'family', flow_id: 'f4',
    input: { media: 'webrtc', sdp: OFFER, sdp_type: 'offer' } }).catch((err) => err);
  assert.equal(refused.code, grpc.status.UNAVAILABLE);
  assert.match(refused.details, /unreachable/);
  await hs.start(port);
  await waitFor(() => rec.lastState()?.state === 'MODULE_STATE_READY', 20000, 'READY again');
  await waitFor(async () => (await entity('family')).state === 'idle', 5000, 'family idle again');
});

test('401 (token revoked): ERROR with the reason, retried until the token works again', async () => {
  await fetch(`${hs.url}/_double/revoke`, { method: 'POST', body: JSON.stringify({ token: ACCESS }) });
  await waitFor(() => rec.lastState()?.state === 'MODULE_STATE_ERROR' && /access token refused/.test(rec.lastState().message),
    20000, 'ERROR for the token');
  assert.match(rec.lastState().message, /401 M_UNKNOWN_TOKEN/);
  assert.ok(!rec.lastState().message.includes(ACCESS));
  const whoamis = () => hs.requests.filter(([, p]) => p.endsWith('/account/whoami')).length;
  const n = whoamis();
  await waitFor(() => whoamis() >= n + 2, 10000, 'two more token checks (back-off)');
  hs.revoked.delete(ACCESS);
  await waitFor(() => rec.lastState()?.state === 'MODULE_STATE_READY', 20000, 'READY after the token works');
});

test('kicked from the room: unavailable with the reason, and joined again', async () => {
  const joins = () => hs.requests.filter(([m, p]) => m === 'POST' && p.includes('/join/')).length;
  const n = joins();
  hs.kick(ROOM, BOT);
  await waitFor(async () => /membership is now 'leave'/.test((await entity('family')).attributes.reason || ''), 10000,
    'family unavailable after the kick');
  await waitFor(async () => (await entity('family')).state === 'idle' && joins() > n, 10000, 'family joined again');
});

test('429 on join: the room waits out retry-after, with the reason in its state', async () => {
  hs.addRoom('!late:double.test', { invite: [BOT] });
  hs.fault('/join/!late:double.test', 429, 1, 400);
  await client.call('ApplyConfig', { config_json: config({ rooms: [{ name: 'family', room: ROOM }, { name: 'late', room: '!late:double.test' }] }) });
  await waitFor(async () => /rate limited/.test((await entity('late'))?.attributes.reason || ''), 10000, 'late rate limited');
  await waitFor(async () => (await entity('late'))?.state === 'idle', 10000, 'late joined');
  assert.equal(await entity('closed'), undefined, 'a room removed from the configuration is no entity any more');
});
