import { test } from 'node:test';
import assert from 'node:assert/strict';

import { candidateCounts, ensureStreamIds, hasCandidates, looksLikeSdp, mergeCandidates } from '../src/sdp.js';

const ANSWER = ['v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0 1',
  'm=video 9 UDP/TLS/RTP/SAVPF 96', 'c=IN IP4 0.0.0.0', 'a=mid:0', 'a=rtpmap:96 VP8/90000',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'c=IN IP4 0.0.0.0', 'a=mid:1', 'a=rtpmap:111 opus/48000/2', ''].join('\r\n');
const C1 = { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host', sdpMid: '0', sdpMLineIndex: 0 };
const C2 = { candidate: 'candidate:2 1 udp 2122260223 127.0.0.1 50002 typ host', sdpMid: '1', sdpMLineIndex: 1 };

test('candidates go into the section of their mid, once', () => {
  assert.equal(hasCandidates(ANSWER), false);
  const { sdp, added } = mergeCandidates(ANSWER, [C1, C2, C1, { candidate: '' }, { candidate: 'candidate:3', sdpMid: 'x' }]);
  assert.equal(added, 2);
  assert.deepEqual(candidateCounts(sdp), [1, 1]);
  assert.ok(hasCandidates(sdp));
  assert.ok(sdp.endsWith('\r\n'));
  assert.ok(sdp.indexOf('a=candidate:1') < sdp.indexOf('m=audio'));
});

test('sdpMLineIndex is used without a mid; end-of-candidates is marked', () => {
  const { sdp } = mergeCandidates(ANSWER, [{ candidate: C2.candidate, sdpMLineIndex: 1 }], true);
  assert.deepEqual(candidateCounts(sdp), [0, 1]);
  assert.equal(sdp.match(/a=end-of-candidates/g).length, 2);
  // With BUNDLE, the first section's transport is the one that counts.
  assert.equal(hasCandidates(sdp), false);
  assert.equal(hasCandidates(mergeCandidates(ANSWER, [C1]).sdp), true);
});

test('a candidate cannot inject lines', () => {
  const { sdp, added } = mergeCandidates(ANSWER, [{ candidate: 'candidate:9 1 udp 1 1.2.3.4 9 typ host\r\na=evil', sdpMid: '0' }]);
  assert.equal(added, 1);
  assert.ok(!sdp.includes('\r\na=evil'));
});

test('looksLikeSdp', () => {
  assert.ok(looksLikeSdp(ANSWER));
  assert.ok(!looksLikeSdp('hello'));
  assert.ok(!looksLikeSdp('v=0\r\ns=-\r\n'));
  assert.ok(!looksLikeSdp(undefined));
});

test('sending sections get a stream id; existing ones are kept and reported', () => {
  const offer = ANSWER.replace('a=mid:0', 'a=mid:0\r\na=sendonly').replace('a=mid:1', 'a=mid:1\r\na=msid:cam audio1');
  const { sdp, streams } = ensureStreamIds(offer);
  assert.deepEqual(streams.sort(), ['call-assistant', 'cam']);
  assert.match(sdp, /a=sendonly\r\n(.*\r\n)*a=msid:call-assistant video-0\r\nm=audio/);
  assert.equal(sdp.match(/a=msid:/g).length, 2);
  // "-" is no stream: replaced; recvonly sections send nothing and get none.
  assert.deepEqual(ensureStreamIds(ANSWER.replace('a=mid:0', 'a=mid:0\r\na=msid:- t')).streams, ['call-assistant']);
  assert.deepEqual(ensureStreamIds(ANSWER.replace(/a=mid:(\d)/g, 'a=mid:$1\r\na=recvonly')).streams, []);
});
