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

const OFFER_NO_CANDIDATES = OFFER.replace(/a=candidate:[^\r]*\r\n/, '').replace('a=sendonly', 'a=sendrecv');
const invite = (callId, extra = {}) => hs.appendEvent(ROOM, ALICE, 'm.call.invite', { call_id: callId, party_id: 'alice-dev',
  version: '1', lifetime: 60000, offer: { type: 'offer', sdp: OFFER_NO_CANDIDATES }, ...extra });
// After a new configuration the module syncs again: events before that would come in its first sync.
const synced = () => waitFor(async () => ['PREPARED', 'SYNCING'].includes(mod.link?.client?.getSyncState())
  && (await entity('family'))?.state === 'idle', 10000, 'synced again');
const answerInput = { media: 'webrtc', sdp: ANSWER.replace('a=recvonly', 'a=sendonly'), sdp_type: 'answer' };

test('incoming_calls "answer": a flow is requested with the offer completed, the answer goes out, hang-up ends it', async () => {
  const whoamis = () => hs.requests.filter(([, p]) => p.endsWith('/account/whoami')).length;
  const checks = whoamis();
  await client.call('ApplyConfig', { config_json: config({ incoming_calls: 'answer', answer_with: 'onvif-discovery/cam-1' }) });
  assert.equal(whoamis(), checks, 'only the call settings changed: the link to the homeserver stays');
  rec.onEvent = (ev) => (ev.kind === 'KIND_FLOW_REQUEST' ? { flow_id: `flow-for-${ev.request_id}` } : {});
  await synced();
  invite('incoming-2');
  // The offer has no candidates: they come in m.call.candidates and are merged before it is handed on.
  hs.appendEvent(ROOM, ALICE, 'm.call.candidates', { call_id: 'incoming-2', party_id: 'alice-dev', version: '1',
    candidates: [{ candidate: 'candidate:7 1 udp 2122260223 127.0.0.1 41000 typ host', sdpMid: '0', sdpMLineIndex: 0 }] });
  const req = await waitFor(() => rec.eventsOf('KIND_FLOW_REQUEST').find((e) => e.request_id === 'incoming-2'), 10000,
    'KIND_FLOW_REQUEST');
  assert.equal(req.entity.id, 'family');
  assert.deepEqual({ ...req.flow_source }, { module: 'onvif-discovery', id: 'cam-1' });
  assert.equal(req.link.media, 'webrtc');
  assert.equal(req.link.sdp_type, 'offer');
  assert.match(req.link.sdp, /a=sendrecv/);
  assert.match(req.link.sdp, /a=candidate:7 1 udp 2122260223 127.0.0.1 41000 typ host/);
  assert.ok(!sentBy(BOT, 'm.call.reject').some((e) => e.content.call_id === 'incoming-2'));
  await waitFor(async () => (await entity('family')).state === 'ringing', 5000, 'ringing while answering');

  // The orchestrator hands the converter's answer back, with the request's id.
  const bad = await client.call('ConnectEntity', { id: 'family', flow_id: 'flow-for-incoming-2', request_id: 'incoming-2',
    input: { media: 'webrtc', sdp: OFFER, sdp_type: 'offer' } }).catch((err) => err);
  assert.equal(bad.code, grpc.status.INVALID_ARGUMENT);
  const unknown = await client.call('ConnectEntity', { id: 'family', flow_id: 'flow-x', request_id: 'no-such-call',
    input: answerInput }).catch((err) => err);
  assert.equal(unknown.code, grpc.status.FAILED_PRECONDITION);
  const resp = await client.call('ConnectEntity', { id: 'family', flow_id: 'flow-for-incoming-2', request_id: 'incoming-2',
    input: answerInput });
  assert.equal(resp.output, null);
  assert.equal(resp.entity.state, 'in_call');
  const answer = sentBy(BOT, 'm.call.answer').find((e) => e.content.call_id === 'incoming-2');
  assert.equal(answer.content.version, '1');
  assert.equal(answer.content.answer.type, 'answer');
  assert.match(answer.content.answer.sdp, /a=msid:call-assistant video-0/);
  assert.deepEqual(Object.keys(answer.content['org.matrix.msc3077.sdp_stream_metadata']), ['call-assistant']);
  // Answered once: a second answer for the same call is refused.
  assert.equal((await client.call('ConnectEntity', { id: 'family', flow_id: 'flow-for-incoming-2', request_id: 'incoming-2',
    input: answerInput }).catch((err) => err)).code, grpc.status.FAILED_PRECONDITION);
  assert.equal((await entity('family')).state, 'in_call');

  // Whoever hangs up: the caller here; the flow ends.
  hs.appendEvent(ROOM, ALICE, 'm.call.hangup', { call_id: 'incoming-2', party_id: 'alice-dev', version: '1', reason: 'user_hangup' });
  const ended = await waitFor(() => rec.eventsOf('KIND_FLOW_ENDED').find((e) => e.flow_id === 'flow-for-incoming-2'), 10000,
    'FLOW_ENDED');
  assert.match(ended.reason, /@alice:double.test hung up \(user_hangup\)/);
  await waitFor(async () => (await entity('family')).state === 'idle', 5000, 'idle again');
});

test('answering: a refused request rejects the call; DisconnectEntity rejects or hangs up; a heal calls back', async () => {
  // Refused (no path, unknown source ...): the caller gets m.call.reject.
  rec.onEvent = (ev) => {
    if (ev.kind === 'KIND_FLOW_REQUEST')
      throw { code: grpc.status.NOT_FOUND, details: 'source: module onvif-discovery has no entity cam-1' };
    return {};
  };
  invite('incoming-3', { offer: { type: 'offer', sdp: OFFER } }); // with candidates: handed on at once
  await waitFor(() => sentBy(BOT, 'm.call.reject').find((e) => e.content.call_id === 'incoming-3'), 10000, 'rejected');
  // The same invite delivered again (a sync after a reconnect): not taken up a second time.
  const asked3 = rec.eventsOf('KIND_FLOW_REQUEST').length;
  mod.onCallEvent(ROOM, { type: 'm.call.invite', sender: ALICE, ageMs: 10, content: { call_id: 'incoming-3',
    party_id: 'alice-dev', version: '1', lifetime: 60000, offer: { type: 'offer', sdp: OFFER } } });
  assert.equal(rec.eventsOf('KIND_FLOW_REQUEST').length, asked3);
  assert.equal(mod.incoming.has('incoming-3'), false);
  assert.ok(!rec.eventsOf('KIND_FLOW_ENDED').some((e) => e.flow_id === undefined || e.flow_id === ''));

  // The flow failed before the answer (the converter could not answer): DisconnectEntity rejects.
  rec.onEvent = (ev) => (ev.kind === 'KIND_FLOW_REQUEST' ? { flow_id: `flow-for-${ev.request_id}` } : {});
  invite('incoming-4', { offer: { type: 'offer', sdp: OFFER } });
  await waitFor(() => rec.eventsOf('KIND_FLOW_REQUEST').find((e) => e.request_id === 'incoming-4'), 10000, 'request 4');
  await waitFor(() => mod.calls.has('flow-for-incoming-4'), 5000, 'the flow id known');
  await client.call('DisconnectEntity', { id: 'family', flow_id: 'flow-for-incoming-4' });
  assert.ok(sentBy(BOT, 'm.call.reject').some((e) => e.content.call_id === 'incoming-4'));

  // Answered, then StopFlow: m.call.hangup, and no FLOW_ENDED (the orchestrator asked).
  invite('incoming-5', { offer: { type: 'offer', sdp: OFFER } });
  await waitFor(() => rec.eventsOf('KIND_FLOW_REQUEST').find((e) => e.request_id === 'incoming-5'), 10000, 'request 5');
  await client.call('ConnectEntity', { id: 'family', flow_id: 'flow-for-incoming-5', request_id: 'incoming-5', input: answerInput });
  await client.call('DisconnectEntity', { id: 'family', flow_id: 'flow-for-incoming-5' });
  assert.ok(sentBy(BOT, 'm.call.hangup').some((e) => e.content.call_id === 'incoming-5'));

  // Answered, then healed (a new converter's offer for the same flow): the answered call is
  // hung up and the room is called back.
  invite('incoming-6', { offer: { type: 'offer', sdp: OFFER } });
  await waitFor(() => rec.eventsOf('KIND_FLOW_REQUEST').find((e) => e.request_id === 'incoming-6'), 10000, 'request 6');
  await client.call('ConnectEntity', { id: 'family', flow_id: 'flow-for-incoming-6', request_id: 'incoming-6', input: answerInput });
  const invites = sentBy(BOT, 'm.call.invite').length;
  await client.call('ConnectEntity', { id: 'family', flow_id: 'flow-for-incoming-6', input: { media: 'webrtc', sdp: OFFER, sdp_type: 'offer' } });
  assert.ok(sentBy(BOT, 'm.call.hangup').some((e) => e.content.call_id === 'incoming-6'));
  assert.equal(sentBy(BOT, 'm.call.invite').length, invites + 1);
  await client.call('DisconnectEntity', { id: 'family', flow_id: 'flow-for-incoming-6' });
  assert.ok(!rec.eventsOf('KIND_FLOW_ENDED').some((e) => /flow-for-incoming-[3-6]/.test(e.flow_id)));

  // The caller hangs up while the orchestrator is being asked: the flow is ended once its id is known.
  let release;
  const held = new Promise((r) => { release = r; });
  rec.onEvent = (ev) => (ev.kind === 'KIND_FLOW_REQUEST' ? { flow_id: 'flow-late' } : {});
  const origRequest = rt.requestFlow.bind(rt);
  rt.requestFlow = async (...args) => { await held; return origRequest(...args); };
  invite('incoming-7', { offer: { type: 'offer', sdp: OFFER } });
  await waitFor(() => mod.incoming.has('incoming-7'), 5000, 'incoming 7 seen');
  hs.appendEvent(ROOM, ALICE, 'm.call.hangup', { call_id: 'incoming-7', party_id: 'alice-dev', version: '1', reason: 'user_hangup' });
  await waitFor(() => !mod.incoming.has('incoming-7'), 5000, 'incoming 7 hung up');
  release();
  const ended = await waitFor(() => rec.eventsOf('KIND_FLOW_ENDED').find((e) => e.flow_id === 'flow-late'), 5000, 'flow-late ended');
  assert.match(ended.reason, /hung up/);
  rt.requestFlow = origRequest;

  // Back to declining: the next call is rejected without asking the orchestrator.
  await client.call('ApplyConfig', { config_json: config() });
  await synced();
  const asked = rec.eventsOf('KIND_FLOW_REQUEST').length;
  invite('incoming-8');
  await waitFor(() => sentBy(BOT, 'm.call.reject').find((e) => e.content.call_id === 'incoming-8'), 10000, 'declined again');
  assert.equal(rec.eventsOf('KIND_FLOW_REQUEST').length, asked);
  rec.onEvent = () => ({});
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
