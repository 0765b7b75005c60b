// The matrix module: Matrix rooms as call targets (matrix_room entities, media_in "webrtc").
//
// A flow that targets a room makes the module place a Matrix VoIP call there: the
// converter's SDP offer (ConnectEntity input) goes out in m.call.invite; the remote party's
// m.call.answer comes back to the orchestrator as ReportEvent(KIND_FLOW_SIGNAL) and on to the
// converter; media then flows between the converter and the remote party directly. A hang-up
// from the room ends the flow's step (KIND_FLOW_ENDED); DisconnectEntity hangs up.
//
// An incoming call (m.call.invite from someone else) is declined, ignored, or answered
// (incoming_calls: "answer"): the module asks the orchestrator for a flow from the room's
// answer_with source into the room (ReportEvent KIND_FLOW_REQUEST with the caller's offer and
// the call id); the converter's answer comes back as ConnectEntity(input = answer,
// request_id = call id) and goes out as m.call.answer. A refusal rejects the call.

import { ConfigError, errors, log } from '../runtime/module-runtime.js';

import { IncomingCall, OutgoingCall, declineContent, newId } from './call.js';
import { CONFIG_SCHEMA, answerSource, validateConfig } from './config.js';
import { HomeserverLink } from './homeserver.js';
import { looksLikeSdp } from './sdp.js';

export const INFO = {
  name: 'matrix',
  version: '1.0.0',
  description: 'Matrix rooms as call targets (VoIP calls with matrix-js-sdk)',
  entityTypes: [{
    name: 'matrix_room',
    description: 'A Matrix room to call: a flow places a VoIP call in it',
    capabilities: ['call', 'video', 'audio'],
    mediaIn: ['webrtc'],
    mediaOut: [],
  }],
  configSchema: CONFIG_SCHEMA,
  configRequired: true,
};

export class MatrixModule {
  /** rt: the ModuleRuntime; deps: {createLink(config) -> HomeserverLink} for tests. */
  constructor(deps = {}) {
    this.rt = null;
    this.config = null;
    this.link = null;
    this.partyId = newId('p');
    this.calls = new Map(); // flow_id -> {call, entityId}
    this.incoming = new Map(); // call_id -> {call, entityId, flowId}: calls being answered or answered
    this.answeredIds = new Set(); // call ids taken up for answering (the last 256): a sync that delivers an invite again is ignored
    this.createLink = deps.createLink || ((config) => new HomeserverLink(config, { log, backoff: deps.backoff }));
    this.gatherTimeoutMs = deps.gatherTimeoutMs;
  }

  handlers() {
    return {
      applyConfig: (c) => this.applyConfig(c),
      connectEntity: (r) => this.connectEntity(r),
      disconnectEntity: (r) => this.disconnectEntity(r),
      stop: () => this.stop(),
    };
  }

  // ---- configuration ----

  async applyConfig(raw) {
    const { config, problems } = validateConfig(raw);
    if (problems.length)
      throw new ConfigError(problems);
    const same = this.config && JSON.stringify(this.config) === JSON.stringify(config);
    if (same)
      return;
    const names = new Set(config.rooms.map((r) => r.name));
    for (const [flowId, c] of this.calls)
      if (!names.has(c.entityId) || this.config.homeserver !== config.homeserver || this.config.user_id !== config.user_id) {
        // The room (or the account) it was placed with is gone: end the call.
        await c.call.end('the room was removed from the configuration');
        this.calls.delete(flowId);
      }
    for (const [callId, c] of this.incoming)
      if (!c.flowId && (!names.has(c.entityId) || this.config.homeserver !== config.homeserver
        || this.config.user_id !== config.user_id)) {
        this.incoming.delete(callId);
        await c.call.reject('the room was removed from the configuration');
      }
    // Only the call settings changed (incoming_calls, answer_with, invite_lifetime_ms): the
    // link to the homeserver stays as it is, and so do the calls.
    const linkKey = (c) => JSON.stringify([c.homeserver, c.user_id, c.access_token, c.rooms.map((r) => [r.name, r.room])]);
    const keepLink = this.link && this.config && linkKey(this.config) === linkKey(config);
    this.config = config;
    log.info(`configured: ${config.user_id} on ${config.homeserver}, ${config.rooms.length} room(s), incoming calls: ${config.incoming_calls}`);
    if (keepLink) {
      this.link.config = config;
      return;
    }
    for (const e of [...this.rt.entities.values()])
      if (!names.has(e.id))
        this.rt.removeEntity(e.id);
    for (const r of config.rooms)
      this.putRoom(r.name, { state: 'connecting', reason: 'connecting to the homeserver' });
    this.connect();
  }

  connect() {
    if (this.link) {
      this.link.removeAllListeners();
      this.link.stop();
    }
    const link = this.createLink(this.config);
    this.link = link;
    link.on('status', ({ ok, reason }) => {
      if (link !== this.link)
        return;
      if (ok)
        this.rt.setState('READY', `connected to ${this.config.homeserver} as ${this.config.user_id}`);
      else
        // The module itself works: health stays SERVING (a restart would not help);
        // the state says what is wrong with the homeserver, and it retries by itself.
        this.rt.setState('ERROR', reason);
      for (const r of this.config.rooms)
        this.refreshRoom(r.name);
    });
    link.on('room', (name) => {
      if (link === this.link)
        this.refreshRoom(name);
    });
    link.on('call', (roomId, ev) => {
      if (link === this.link)
        this.onCallEvent(roomId, ev);
    });
    link.start();
  }

  // ---- entities ----

  putRoom(name, { state, reason }) {
    const r = this.config.rooms.find((x) => x.name === name);
    if (!r)
      return;
    const ringing = this.callsIn(name);
    const attributes = { room: r.room, room_id: this.link?.rooms.get(name)?.roomId || '',
      calls: String(ringing.length) };
    if (reason)
      attributes.reason = reason;
    this.rt.putEntity({ id: name, type: 'matrix_room', name: r.room, config: { room: r.room }, state, attributes });
  }

  /** The calls in room name: placed for flows, and incoming ones being answered. */
  callsIn(name) {
    const all = new Set([...this.calls.values(), ...this.incoming.values()]);
    return [...all].filter((c) => c.entityId === name && c.call.state !== 'ended');
  }

  /** The entity's state from the link's and its calls' state. */
  refreshRoom(name) {
    const room = this.link?.rooms.get(name);
    if (!this.link || !room)
      return;
    if (!this.link.ok)
      return this.putRoom(name, { state: 'unavailable', reason: this.link.reason });
    if (!room.joined)
      return this.putRoom(name, { state: 'unavailable', reason: room.reason });
    const calls = this.callsIn(name).map((c) => c.call.state);
    const state = calls.includes('connected') || calls.includes('answered') ? 'in_call'
      : calls.includes('ringing') ? 'ringing' : 'idle';
    this.putRoom(name, { state, reason: '' });
  }

  // ---- flows ----

  async connectEntity(req) {
    const name = req.id;
    const input = req.input;
    if (req.output_media)
      throw errors.invalid(`output_media: a matrix_room is a call target and gives no media (asked for '${req.output_media}')`);
    if (req.request_id)
      return this.answerCall(req);
    if (!input || input.media !== 'webrtc' || input.sdp_type !== 'offer')
      throw errors.invalid('input: a matrix_room takes a WebRTC offer (media "webrtc", sdp_type "offer")');
    if (!looksLikeSdp(input.sdp))
      throw errors.invalid('input.sdp: not an SDP offer (must start with v=0 and have a media section)');
    const roomId = this.link?.roomIdOf(name);
    if (!this.link?.ok)
      throw errors.unavailable(`room ${name}: ${this.link?.reason || 'not connected'}`);
    if (!roomId)
      throw errors.unavailable(`room ${name} is not joined: ${this.link.rooms.get(name)?.reason || 'unknown'}`);

    const old = this.calls.get(req.flow_id);
    if (old) {
      // ConnectEntity again for the same flow replaces the call (an answered one too: a heal).
      this.calls.delete(req.flow_id);
      if (old.call instanceof IncomingCall)
        this.incoming.delete(old.call.callId);
      await old.call.hangup();
    }
    const flowId = req.flow_id;
    const call = new OutgoingCall({
      flowId, roomId, offerSdp: input.sdp, partyId: this.partyId, lifetimeMs: this.config.invite_lifetime_ms,
      gatherTimeoutMs: this.gatherTimeoutMs, log,
      send: (type, content) => this.link.send(roomId, type, content),
      onAnswer: (sdp) => {
        this.rt.reportFlowSignal(flowId, name, { media: 'webrtc', sdp, sdp_type: 'answer' });
        this.refreshRoom(name);
      },
      onEnded: (reason) => {
        if (this.calls.get(flowId)?.call !== call)
          return;
        this.calls.delete(flowId);
        log.info(`call for flow ${flowId} in room ${name} ended: ${reason}`);
        this.rt.reportFlowEnded(flowId, name, reason);
        this.refreshRoom(name);
      },
    });
    this.calls.set(flowId, { call, entityId: name });
    try {
      await call.invite();
    } catch (e) {
      this.calls.delete(flowId);
      this.refreshRoom(name);
      throw errors.unavailable(`room ${name}: ${e.message}`);
    }
    log.info(`calling room ${name} for flow ${flowId} (call ${call.callId})`);
    this.refreshRoom(name);
    return {}; // the answer comes later, with KIND_FLOW_SIGNAL
  }

  /** ConnectEntity of a flow we requested: the converter's answer to the caller's offer. */
  async answerCall(req) {
    const name = req.id;
    const input = req.input;
    if (!input || input.media !== 'webrtc' || input.sdp_type !== 'answer' || !looksLikeSdp(input.sdp))
      throw errors.invalid('input: the flow answers a call: a WebRTC answer (media "webrtc", sdp_type "answer") is required');
    const entry = this.incoming.get(req.request_id);
    if (!entry || entry.entityId !== name || entry.call.state === 'ended')
      throw errors.precondition(`room ${name}: no incoming call ${req.request_id} to answer (it ended)`);
    if (entry.flowId && entry.flowId !== req.flow_id)
      throw errors.precondition(`room ${name}: call ${req.request_id} belongs to flow ${entry.flowId}`);
    if (entry.call.state !== 'ringing')
      throw errors.precondition(`room ${name}: call ${req.request_id} was answered already`);
    entry.flowId = req.flow_id;
    this.calls.set(req.flow_id, entry);
    try {
      await entry.call.answer(input.sdp);
    } catch (e) {
      this.calls.delete(req.flow_id);
      this.incoming.delete(req.request_id);
      await entry.call.hangup('cannot answer');
      this.refreshRoom(name);
      throw errors.unavailable(`room ${name}: cannot answer call ${req.request_id}: ${e.message}`);
    }
    log.info(`answered the call ${req.request_id} in room ${name} for flow ${req.flow_id}`);
    this.refreshRoom(name);
    return {};
  }

  async disconnectEntity({ id, flow_id: flowId }) {
    const c = this.calls.get(flowId);
    if (!c || c.entityId !== id)
      return; // idempotent
    this.calls.delete(flowId);
    if (c.call instanceof IncomingCall)
      this.incoming.delete(c.call.callId);
    log.info(`hanging up the call for flow ${flowId} in room ${id}`);
    await c.call.hangup();
    this.refreshRoom(id);
  }

  onCallEvent(roomId, { type, content, sender, ageMs }) {
    if (!content || typeof content.call_id !== 'string')
      return;
    for (const { call } of this.calls.values())
      if (call.roomId === roomId && call.handle(type, content, sender))
        return;
    for (const { call } of this.incoming.values())
      if (call.roomId === roomId && call.handle(type, content, sender))
        return;
    if (type !== 'm.call.invite' || sender === this.link.userId)
      return;
    // An incoming call for us: answer it with a flow, decline it or leave it be.
    const lifetime = Number.isFinite(content.lifetime) ? content.lifetime : 60000;
    if (ageMs !== undefined && ageMs > lifetime)
      return; // an old invite from the history: already expired
    const name = this.link.roomNameOf(roomId);
    if (this.config.incoming_calls === 'ignore') {
      log.info(`incoming call from ${sender} in room ${name}: ignored (incoming_calls: ignore)`);
      return;
    }
    if (this.config.incoming_calls === 'answer' && name) {
      this.answerIncoming(roomId, name, content, sender, lifetime - (ageMs ?? 0));
      return;
    }
    const { type: replyType, content: reply } = declineContent(content, this.partyId);
    log.info(`incoming call from ${sender} in room ${name}: declined (${replyType})`);
    this.link.send(roomId, replyType, reply).catch((e) => log.warn(`declining the call from ${sender}: ${e.message}`));
  }

  /** incoming_calls "answer": ask the orchestrator for a flow from answer_with into the room. */
  answerIncoming(roomId, name, invite, sender, lifetimeMs) {
    const source = answerSource(this.config, this.config.rooms.find((r) => r.name === name));
    const callId = invite.call_id;
    const turnAway = (why) => {
      log.warn(`incoming call ${callId} from ${sender} in room ${name}: not answered: ${why}`);
      const { type, content } = declineContent(invite, this.partyId);
      this.link.send(roomId, type, content).catch((e) => log.warn(`declining the call from ${sender}: ${e.message}`));
    };
    if (this.incoming.has(callId) || this.answeredIds.has(callId))
      return; // the same invite again (a sync after a reconnect repeated it)
    if (!source)
      return turnAway('the room has no answer_with');
    if (invite.offer?.type !== 'offer' || !looksLikeSdp(invite.offer?.sdp))
      return turnAway('the invite carries no SDP offer');
    this.answeredIds.add(callId);
    if (this.answeredIds.size > 256)
      this.answeredIds.delete(this.answeredIds.values().next().value);
    const entry = { call: null, entityId: name, flowId: null };
    const call = new IncomingCall({
      invite, sender, roomId, partyId: this.partyId, lifetimeMs, gatherTimeoutMs: this.gatherTimeoutMs, log,
      send: (type, content) => this.link.send(roomId, type, content),
      onOffer: (sdp) => this.requestFlow(entry, source, sdp, sender),
      onEnded: (reason) => {
        if (this.incoming.get(callId) === entry)
          this.incoming.delete(callId);
        log.info(`incoming call ${callId} in room ${name} ended: ${reason}`);
        if (entry.flowId && this.calls.get(entry.flowId) === entry) {
          this.calls.delete(entry.flowId);
          this.rt.reportFlowEnded(entry.flowId, name, reason);
        }
        this.refreshRoom(name);
      },
    });
    entry.call = call;
    this.incoming.set(callId, entry);
    log.info(`incoming call ${callId} from ${sender} in room ${name}: answering with ${source.module}/${source.id}`);
    call.start();
    this.refreshRoom(name);
  }

  async requestFlow(entry, source, sdp, sender) {
    const { call, entityId: name } = entry;
    let flowId;
    try {
      flowId = await this.rt.requestFlow(name, source, call.callId, { media: 'webrtc', sdp_type: 'offer', sdp });
    } catch (e) {
      log.warn(`incoming call ${call.callId} from ${sender} in room ${name}: not answered: the orchestrator refused: ${e.message}`);
      if (this.incoming.get(call.callId) === entry)
        this.incoming.delete(call.callId);
      await call.reject('refused');
      this.refreshRoom(name);
      return;
    }
    if (entry.flowId && entry.flowId !== flowId)
      return; // cannot happen: the orchestrator names one flow per request
    entry.flowId = flowId;
    if (call.state === 'ended') {
      // The caller hung up while the orchestrator was asked: end the flow too.
      this.rt.reportFlowEnded(flowId, name, call.endReason || 'the call ended');
      return;
    }
    this.calls.set(flowId, entry);
    log.info(`incoming call ${call.callId} in room ${name}: flow ${flowId} answers it`);
  }

  async stop() {
    // Hang up what rings or runs: the remote party should not wait for a module that left.
    const calls = [...new Set([...this.calls.values(), ...this.incoming.values()])];
    this.calls.clear();
    this.incoming.clear();
    await Promise.allSettled(calls.map((c) => c.call.hangup()));
    if (this.link)
      this.link.stop();
  }
}
