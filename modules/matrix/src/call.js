// One outgoing Matrix VoIP call (Client-Server API, "Voice over IP", version "1") placed for
// one flow: m.call.invite carries the converter's SDP offer; the first m.call.answer is
// selected (m.call.select_answer) and relayed as one complete SDP, with the remote party's
// m.call.candidates merged in; m.call.hangup / m.call.reject from the remote party, the
// invite's lifetime running out, or hangup() end it.
//
// Pure logic: sending goes through the send(type, content) it is given, time through
// setTimeout, so the unit tests drive it without a homeserver.

import { randomBytes } from 'node:crypto';

import { ensureStreamIds, hasCandidates, looksLikeSdp, mergeCandidates } from './sdp.js';

export const VOIP_VERSION = '1';

export function newId(prefix) {
  return `${prefix}${randomBytes(12).toString('hex')}`;
}

export class OutgoingCall {
  /**
   * opts: flowId, roomId, offerSdp, partyId (ours), lifetimeMs, send(type, content) -> Promise,
   *       onAnswer(sdp), onEnded(reason), log, gatherTimeoutMs (how long to wait for the
   *       remote party's candidates when its answer carries none; default 2000)
   */
  constructor(opts) {
    Object.assign(this, { gatherTimeoutMs: 2000 }, opts);
    this.callId = opts.callId || newId('ca');
    this.state = 'new'; // new -> ringing -> answered -> connected -> ended
    this.answerParty = null;
    this.answerSdp = null;
    this.candidates = new Map(); // party_id -> [candidate]
    this.endOfCandidates = new Set(); // party_ids that sent an empty candidate
    this.lateCandidates = 0;
    this.timers = [];
  }

  base() {
    return { call_id: this.callId, party_id: this.partyId, version: VOIP_VERSION };
  }

  timer(ms, fn) {
    const t = setTimeout(fn, ms);
    this.timers.push(t);
    return t;
  }

  /** Send the invite; throws if it could not be sent. */
  async invite() {
    this.state = 'ringing';
    // Streams named, and described (MSC3077, what Element and matrix-js-sdk read): a track
    // without a stream is dropped by those clients.
    const { sdp, streams } = ensureStreamIds(this.offerSdp);
    const metadata = Object.fromEntries(streams.map((id) => [id, { purpose: 'm.usermedia', audio_muted: false,
      video_muted: false }]));
    await this.send('m.call.invite', { ...this.base(), lifetime: this.lifetimeMs,
      offer: { type: 'offer', sdp }, 'org.matrix.msc3077.sdp_stream_metadata': metadata });
    if (this.state === 'ringing')
      this.lifetimeTimer = this.timer(this.lifetimeMs, () => {
        if (this.state !== 'ringing')
          return;
        this.log.info(`call ${this.callId}: no answer within ${this.lifetimeMs / 1000} s, hanging up`);
        this.end(`no answer within ${this.lifetimeMs / 1000} s`, 'invite_timeout');
      });
  }

  /** An m.call.* event of our room; returns true if it belonged to this call. */
  handle(type, content, sender) {
    if (!content || content.call_id !== this.callId || this.state === 'ended')
      return false;
    if (content.party_id === this.partyId)
      return true; // our own echo
    switch (type) {
    case 'm.call.answer':
      this.onAnswerEvent(content, sender);
      break;
    case 'm.call.candidates':
      this.onCandidates(content);
      break;
    case 'm.call.reject':
      // An answer seen before the reject wins (spec).
      if (this.state === 'ringing')
        this.finish(`${sender} declined the call`);
      break;
    case 'm.call.hangup':
      if (this.state === 'ringing' || content.party_id === this.answerParty)
        this.finish(`${sender} hung up${content.reason ? ` (${content.reason})` : ''}`);
      break;
    default:
      break; // m.call.negotiate, m.call.select_answer of others, ...: nothing to do for us
    }
    return true;
  }

  onAnswerEvent(content, sender) {
    if (this.state !== 'ringing')
      return; // another device answered too late; our select_answer tells it
    const sdp = content.answer?.sdp;
    if (content.answer?.type !== 'answer' || !looksLikeSdp(sdp)) {
      this.log.warn(`call ${this.callId}: ignoring a malformed m.call.answer from ${sender}`);
      return;
    }
    this.state = 'answered';
    clearTimeout(this.lifetimeTimer);
    this.answerParty = content.party_id ?? null;
    this.answerSdp = sdp;
    this.log.info(`call ${this.callId}: answered by ${sender}`);
    this.send('m.call.select_answer', { ...this.base(), selected_party_id: this.answerParty })
      .catch((e) => this.log.warn(`call ${this.callId}: ${e.message}, ignoring`));
    this.maybeRelay();
    if (this.state === 'answered')
      this.timer(this.gatherTimeoutMs, () => this.relay());
  }

  onCandidates(content) {
    const party = content.party_id ?? null;
    const list = Array.isArray(content.candidates) ? content.candidates.slice(0, 64) : [];
    if (this.state === 'connected') {
      if (party === this.answerParty)
        this.lateCandidates += list.filter((c) => c?.candidate).length;
      return;
    }
    if (!this.candidates.has(party))
      this.candidates.set(party, []);
    for (const c of list) {
      if (c && c.candidate === '')
        this.endOfCandidates.add(party);
      else if (c && typeof c.candidate === 'string')
        this.candidates.get(party).push(c);
    }
    if (this.state === 'answered' && party === this.answerParty)
      this.maybeRelay();
  }

  /** Relay the answer now if it is complete: it has candidates, or the party said it has no more. */
  maybeRelay() {
    const merged = this.mergedAnswer();
    if (this.endOfCandidates.has(this.answerParty) || hasCandidates(merged))
      this.relay();
  }

  mergedAnswer() {
    return mergeCandidates(this.answerSdp, this.candidates.get(this.answerParty) || [],
      this.endOfCandidates.has(this.answerParty)).sdp;
  }

  relay() {
    if (this.state !== 'answered')
      return;
    this.state = 'connected';
    this.onAnswer(this.mergedAnswer());
  }

  finish(reason) {
    if (this.state === 'ended')
      return;
    this.state = 'ended';
    for (const t of this.timers)
      clearTimeout(t);
    this.onEnded(reason);
  }

  /** End from our side: m.call.hangup (if the call still lives), then onEnded(reason). */
  async end(reason, hangupReason = 'user_hangup') {
    if (this.state === 'ended')
      return;
    const wasLive = this.state !== 'new';
    this.finish(reason);
    if (wasLive)
      await this.send('m.call.hangup', { ...this.base(), reason: hangupReason })
        .catch((e) => this.log.warn(`call ${this.callId}: ${e.message}, ignoring`));
  }

  /** Hang up without telling the owner (DisconnectEntity: the orchestrator asked for it). */
  async hangup(hangupReason = 'user_hangup') {
    const onEnded = this.onEnded;
    this.onEnded = () => {};
    try {
      await this.end('disconnected', hangupReason);
    } finally {
      this.onEnded = onEnded;
    }
  }
}

/** The stream metadata of MSC3077 for our streams in sdp (after ensureStreamIds). */
function streamMetadata(streams) {
  return Object.fromEntries(streams.map((id) => [id, { purpose: 'm.usermedia', audio_muted: false, video_muted: false }]));
}

/**
 * One incoming Matrix VoIP call that the module answers (incoming_calls: "answer"): the
 * caller's offer, completed with the candidates it sends in m.call.candidates (at once if it
 * carries some, else when the caller signals their end, else after gatherTimeoutMs), is handed
 * to onOffer(sdp) for the orchestrator; answer(sdp) sends m.call.answer with the converter's
 * answer; reject() turns the call away. The caller's m.call.hangup, its select_answer of
 * another party, or the invite's lifetime running out before we answered end it (onEnded).
 * The same interface as OutgoingCall for the module: state, roomId, handle(), hangup(), end().
 */
export class IncomingCall {
  /**
   * opts: invite (the m.call.invite content), sender, roomId, partyId (ours), lifetimeMs (the
   *       invite's, already less its age), send(type, content) -> Promise, onOffer(sdp),
   *       onEnded(reason), log, gatherTimeoutMs (default 2000)
   */
  constructor(opts) {
    Object.assign(this, { gatherTimeoutMs: 2000 }, opts);
    this.callId = opts.invite.call_id;
    this.callerParty = opts.invite.party_id ?? null;
    this.version = String(opts.invite.version ?? '0');
    this.offerSdp = opts.invite.offer?.sdp;
    this.state = 'ringing'; // ringing -> (offered) -> connected -> ended
    this.offered = false;
    this.candidates = [];
    this.endOfCandidates = false;
    this.timers = [];
  }

  timer(ms, fn) {
    const t = setTimeout(fn, ms);
    this.timers.push(t);
    return t;
  }

  base() {
    return this.version === '0' ? { call_id: this.callId, version: 0 }
      : { call_id: this.callId, party_id: this.partyId, version: VOIP_VERSION };
  }

  /** Wait for the caller's candidates if its offer has none, then hand the offer on. */
  start() {
    this.lifetimeTimer = this.timer(Math.max(0, this.lifetimeMs), () => {
      if (this.state === 'ringing')
        this.end(`not answered within the invite's lifetime`, 'invite_timeout');
    });
    this.maybeOffer();
    if (!this.offered)
      this.timer(this.gatherTimeoutMs, () => this.offer());
  }

  mergedOffer() {
    return mergeCandidates(this.offerSdp, this.candidates, this.endOfCandidates).sdp;
  }

  maybeOffer() {
    if (this.endOfCandidates || hasCandidates(this.mergedOffer()))
      this.offer();
  }

  offer() {
    if (this.offered || this.state !== 'ringing')
      return;
    this.offered = true;
    this.onOffer(this.mergedOffer());
  }

  /** An m.call.* event of our room; returns true if it belonged to this call. */
  handle(type, content, sender) {
    if (!content || content.call_id !== this.callId || this.state === 'ended')
      return false;
    if (content.party_id !== undefined && content.party_id === this.partyId)
      return true; // our own echo
    switch (type) {
    case 'm.call.candidates':
      if (this.callerParty !== null && content.party_id !== this.callerParty)
        break;
      for (const c of Array.isArray(content.candidates) ? content.candidates.slice(0, 64) : []) {
        if (c && c.candidate === '')
          this.endOfCandidates = true;
        else if (c && typeof c.candidate === 'string' && !this.offered && this.candidates.length < 64)
          this.candidates.push(c);
      }
      if (!this.offered)
        this.maybeOffer();
      break;
    case 'm.call.hangup':
      if (this.callerParty === null || content.party_id === undefined || content.party_id === this.callerParty)
        this.finish(`${sender} hung up${content.reason ? ` (${content.reason})` : ''}`);
      break;
    case 'm.call.select_answer':
      if (content.selected_party_id !== this.partyId)
        this.finish(`${sender} took the call on another device`);
      break;
    default:
      break; // another device of ours answering or rejecting, m.call.negotiate: nothing to do
    }
    return true;
  }

  /** Answer with the converter's SDP (complete: no trickle). Throws if it could not be sent. */
  async answer(sdp) {
    if (this.state !== 'ringing')
      throw new Error(this.state === 'ended' ? 'the call has ended' : 'the call was answered already');
    const { sdp: named, streams } = ensureStreamIds(sdp);
    this.state = 'connected';
    clearTimeout(this.lifetimeTimer);
    await this.send('m.call.answer', { ...this.base(), answer: { type: 'answer', sdp: named },
      'org.matrix.msc3077.sdp_stream_metadata': streamMetadata(streams) });
  }

  finish(reason) {
    if (this.state === 'ended')
      return;
    this.state = 'ended';
    this.endReason = reason;
    for (const t of this.timers)
      clearTimeout(t);
    this.onEnded(reason);
  }

  /** End from our side: m.call.reject if not answered yet (m.call.hangup for VoIP v0, or once
   *  answered), then onEnded(reason). */
  async end(reason, hangupReason = 'user_hangup') {
    if (this.state === 'ended')
      return;
    const answered = this.state === 'connected';
    this.finish(reason);
    const { type, content } = answered ? { type: 'm.call.hangup', content: { ...this.base(), reason: hangupReason } }
      : declineContent({ call_id: this.callId, version: this.version }, this.partyId);
    await this.send(type, content).catch((e) => this.log.warn(`call ${this.callId}: ${e.message}, ignoring`));
  }

  /** Turn it away (the orchestrator refused the flow): onEnded is not called. */
  reject(reason) {
    return this.hangup(reason);
  }

  /** Hang up (or reject) without telling the owner (DisconnectEntity: the orchestrator asked). */
  async hangup(reason = 'disconnected') {
    const onEnded = this.onEnded;
    this.onEnded = () => {};
    try {
      await this.end(reason);
    } finally {
      this.onEnded = onEnded;
    }
  }
}

/** The answer to an incoming invite we do not take: m.call.reject (v1) or m.call.hangup (v0). */
export function declineContent(invite, partyId) {
  if (String(invite.version) === '0' || invite.version === undefined)
    return { type: 'm.call.hangup', content: { call_id: invite.call_id, version: 0, reason: 'user_busy' } };
  return { type: 'm.call.reject', content: { call_id: invite.call_id, party_id: partyId, version: VOIP_VERSION } };
}
