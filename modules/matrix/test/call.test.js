import { test } from 'node:test';
import assert from 'node:assert/strict';

import { IncomingCall, OutgoingCall, declineContent } from '../src/call.js';
import { waitFor } from './helpers.js';

const OFFER = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n';
const ANSWER = 'v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n';
const quiet = { info() {}, warn() {}, debug() {} };

function makeCall(opts = {}) {
  const sent = [];
  const out = { answers: [], ended: [] };
  const call = new OutgoingCall({ flowId: 'f1', roomId: '!r:x', offerSdp: OFFER, partyId: 'us', lifetimeMs: 60000,
    gatherTimeoutMs: 60000, log: quiet, send: async (type, content) => { sent.push({ type, content }); },
    onAnswer: (sdp) => out.answers.push(sdp), onEnded: (r) => out.ended.push(r), ...opts });
  return { call, sent, out };
}

test('invite carries the offer; the answer is selected and relayed with its candidates', async () => {
  const { call, sent, out } = makeCall();
  await call.invite();
  assert.equal(sent[0].type, 'm.call.invite');
  // The offer goes out as it came, with its stream named and described for Matrix clients.
  assert.equal(sent[0].content.offer.sdp, `${OFFER}a=msid:call-assistant video-0\r\n`);
  assert.deepEqual(sent[0].content['org.matrix.msc3077.sdp_stream_metadata'],
    { 'call-assistant': { purpose: 'm.usermedia', audio_muted: false, video_muted: false } });
  assert.equal(sent[0].content.version, '1');
  assert.equal(sent[0].content.lifetime, 60000);
  const id = call.callId;
  // Our own echo and other calls are ignored.
  assert.equal(call.handle('m.call.invite', sent[0].content, '@us:x'), true);
  assert.equal(call.handle('m.call.answer', { call_id: 'other' }, '@them:x'), false);
  // Candidates before the answer are kept; the answer without candidates waits for them.
  call.handle('m.call.candidates', { call_id: id, party_id: 'them', version: '1',
    candidates: [{ candidate: 'candidate:7 1 udp 5 127.0.0.1 6000 typ host', sdpMid: '0', sdpMLineIndex: 0 }] }, '@them:x');
  call.handle('m.call.answer', { call_id: id, party_id: 'them', version: '1', answer: { type: 'answer', sdp: ANSWER } }, '@them:x');
  assert.equal(out.answers.length, 1);
  assert.match(out.answers[0], /a=candidate:7 1 udp 5 127.0.0.1 6000 typ host/);
  assert.equal(sent[1].type, 'm.call.select_answer');
  assert.equal(sent[1].content.selected_party_id, 'them');
  // A second answer (another device) is not relayed; its late hangup does not end our call.
  call.handle('m.call.answer', { call_id: id, party_id: 'them2', answer: { type: 'answer', sdp: ANSWER } }, '@them:x');
  call.handle('m.call.hangup', { call_id: id, party_id: 'them2' }, '@them:x');
  assert.equal(out.answers.length, 1);
  assert.deepEqual(out.ended, []);
  call.handle('m.call.hangup', { call_id: id, party_id: 'them', reason: 'user_hangup' }, '@them:x');
  assert.deepEqual(out.ended, ['@them:x hung up (user_hangup)']);
});

test('an answer without candidates is relayed at end-of-candidates, or after the gathering time', async () => {
  const { call, out } = makeCall();
  await call.invite();
  call.handle('m.call.answer', { call_id: call.callId, party_id: 'p', answer: { type: 'answer', sdp: ANSWER } }, '@them:x');
  assert.equal(out.answers.length, 0);
  call.handle('m.call.candidates', { call_id: call.callId, party_id: 'p', candidates: [
    { candidate: 'candidate:8 1 udp 5 127.0.0.1 6001 typ host', sdpMid: '0' }] }, '@them:x');
  assert.equal(out.answers.length, 1);

  const second = makeCall({ gatherTimeoutMs: 30 });
  await second.call.invite();
  second.call.handle('m.call.answer', { call_id: second.call.callId, party_id: 'p', answer: { type: 'answer', sdp: ANSWER } }, '@t:x');
  await waitFor(() => second.out.answers.length === 1, 2000, 'the answer after the gathering time');
  assert.ok(!second.out.answers[0].includes('a=candidate'));
  second.call.handle('m.call.candidates', { call_id: second.call.callId, party_id: 'p', candidates: [{ candidate: 'candidate:9 1 udp 1 1.1.1.1 1 typ host' }] }, '@t:x');
  assert.equal(second.call.lateCandidates, 1);
  await call.hangup();
  await second.call.hangup();
});

test('reject, malformed answers, lifetime and our own hangup', async () => {
  const a = makeCall();
  await a.call.invite();
  a.call.handle('m.call.answer', { call_id: a.call.callId, party_id: 'p', answer: { type: 'answer', sdp: 'junk' } }, '@t:x');
  assert.equal(a.call.state, 'ringing');
  a.call.handle('m.call.reject', { call_id: a.call.callId, party_id: 'p' }, '@t:x');
  assert.deepEqual(a.out.ended, ['@t:x declined the call']);

  const b = makeCall({ lifetimeMs: 20 });
  await b.call.invite();
  await waitFor(() => b.out.ended.length === 1, 2000, 'the invite to time out');
  assert.match(b.out.ended[0], /no answer within/);
  await waitFor(() => b.sent.some((s) => s.type === 'm.call.hangup'), 2000, 'the hangup');
  assert.equal(b.sent.find((s) => s.type === 'm.call.hangup').content.reason, 'invite_timeout');

  const c = makeCall();
  await c.call.invite();
  await c.call.hangup();
  assert.deepEqual(c.out.ended, []);
  assert.equal(c.sent[1].type, 'm.call.hangup');
  await c.call.hangup();
  assert.equal(c.sent.length, 2, 'a second hangup sends nothing');
});

test('declining incoming invites: reject for v1, hangup for v0', () => {
  assert.deepEqual(declineContent({ call_id: 'c', version: '1' }, 'us'),
    { type: 'm.call.reject', content: { call_id: 'c', party_id: 'us', version: '1' } });
  assert.equal(declineContent({ call_id: 'c', version: 0 }, 'us').type, 'm.call.hangup');
});

function makeIncoming(invite, opts = {}) {
  const sent = [];
  const out = { offers: [], ended: [] };
  const call = new IncomingCall({ invite: { call_id: 'in1', party_id: 'them', version: '1', lifetime: 60000, ...invite },
    sender: '@them:x', roomId: '!r:x', partyId: 'us', lifetimeMs: 60000, gatherTimeoutMs: 60000, log: quiet,
    send: async (type, content) => { sent.push({ type, content }); },
    onOffer: (sdp) => out.offers.push(sdp), onEnded: (r) => out.ended.push(r), ...opts });
  return { call, sent, out };
}

test('incoming: an offer without candidates waits for them, for their end, or for the gather timeout', async () => {
  const bare = OFFER.replace(/a=candidate:[^\r]*\r\n/, '');
  let { call, out } = makeIncoming({ offer: { type: 'offer', sdp: bare } });
  call.start();
  assert.equal(out.offers.length, 0);
  call.handle('m.call.candidates', { call_id: 'in1', party_id: 'someone-else', candidates: [{ candidate: 'candidate:9 1 udp 1 10.0.0.9 1 typ host', sdpMid: '0' }] }, '@x:x');
  assert.equal(out.offers.length, 0, 'candidates of another party are not the caller\'s');
  call.handle('m.call.candidates', { call_id: 'in1', party_id: 'them', candidates: [{ candidate: '' }] }, '@them:x');
  assert.equal(out.offers.length, 1, 'the end of candidates hands the offer on');
  assert.match(out.offers[0], /a=end-of-candidates/);
  call.end('test');

  ({ call, out } = makeIncoming({ offer: { type: 'offer', sdp: bare } }, { gatherTimeoutMs: 30 }));
  call.start();
  await waitFor(() => out.offers.length === 1, 2000, 'the offer after the gather timeout');
  assert.equal(out.offers[0], bare);
  call.end('test');
});

test('incoming: answer, hang-ups both ways, lifetime, another device taking it, VoIP v0', async () => {
  let { call, sent, out } = makeIncoming({ offer: { type: 'offer', sdp: OFFER } });
  call.start();
  assert.equal(out.offers.length, 1);
  await call.answer(ANSWER);
  assert.equal(sent[0].type, 'm.call.answer');
  assert.deepEqual({ ...sent[0].content, answer: undefined, 'org.matrix.msc3077.sdp_stream_metadata': undefined },
    { call_id: 'in1', party_id: 'us', version: '1', answer: undefined, 'org.matrix.msc3077.sdp_stream_metadata': undefined });
  await assert.rejects(call.answer(ANSWER), /answered already/);
  assert.equal(call.handle('m.call.hangup', { call_id: 'in1', party_id: 'us' }, '@us:x'), true); // our echo
  assert.equal(out.ended.length, 0);
  call.handle('m.call.hangup', { call_id: 'in1', party_id: 'them', reason: 'user_hangup' }, '@them:x');
  assert.deepEqual(out.ended, ['@them:x hung up (user_hangup)']);
  await assert.rejects(call.answer(ANSWER), /ended/);

  // Our hang-up of an answered call is m.call.hangup; of one not answered yet, m.call.reject.
  ({ call, sent, out } = makeIncoming({ offer: { type: 'offer', sdp: OFFER } }));
  call.start();
  await call.answer(ANSWER);
  await call.hangup();
  assert.deepEqual(sent.map((e) => e.type), ['m.call.answer', 'm.call.hangup']);
  assert.equal(out.ended.length, 0, 'hangup() does not tell the owner');
  ({ call, sent, out } = makeIncoming({ offer: { type: 'offer', sdp: OFFER } }));
  call.start();
  await call.reject('refused');
  assert.deepEqual(sent, [{ type: 'm.call.reject', content: { call_id: 'in1', party_id: 'us', version: '1' } }]);

  // Not answered within the invite's lifetime: rejected, and the owner told.
  ({ call, sent, out } = makeIncoming({ offer: { type: 'offer', sdp: OFFER } }, { lifetimeMs: 20 }));
  call.start();
  await waitFor(() => out.ended.length === 1, 2000, 'the lifetime to run out');
  assert.match(out.ended[0], /lifetime/);
  await waitFor(() => sent.length === 1, 2000, 'the reject');
  assert.equal(sent[0].type, 'm.call.reject');

  // Another device took the call (the caller selected another answer).
  ({ call, sent, out } = makeIncoming({ offer: { type: 'offer', sdp: OFFER } }));
  call.start();
  call.handle('m.call.select_answer', { call_id: 'in1', party_id: 'them', selected_party_id: 'other-device' }, '@them:x');
  assert.match(out.ended[0], /another device/);

  // VoIP version 0 (no party ids): the answer and the hang-up carry version 0.
  ({ call, sent, out } = makeIncoming({ offer: { type: 'offer', sdp: OFFER }, version: 0, party_id: undefined }));
  call.start();
  await call.answer(ANSWER);
  assert.deepEqual([sent[0].content.call_id, sent[0].content.version, sent[0].content.party_id], ['in1', 0, undefined]);
  call.handle('m.call.hangup', { call_id: 'in1', version: 0 }, '@them:x');
  assert.equal(out.ended.length, 1);
});
