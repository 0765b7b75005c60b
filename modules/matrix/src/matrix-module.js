// The matrix module: Matrix rooms as call targets (matrix_room entities, media_in "webrtc").
//
// A flow that targets a room makes the module place a Matrix VoIP call there: the
// converter's SDP offer (ConnectEntity input) goes out in m.call.invite; the remote party's
// m.call.answer comes back to the orchestrator as ReportEvent(KIND_FLOW_SIGNAL) and on to the
// converter; media then flows between the converter and the remote party directly. A hang-up
// from the room ends the flow's step (KIND_FLOW_ENDED); DisconnectEntity hangs up.

import { ConfigError, errors, log } from '../runtime/module-runtime.js';

import { OutgoingCall, declineContent, newId } from './call.js';
import { CONFIG_SCHEMA, validateConfig } from './config.js';
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
    this.config = config;
    log.info(`configured: ${config.user_id} on ${config.homeserver}, ${config.rooms.length} room(s), incoming calls: ${config.incoming_calls}`);
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
    const ringing = [...this.calls.values()].filter((c) => c.entityId === name);
    const attributes = { room: r.room, room_id: this.link?.rooms.get(name)?.roomId || '',
      calls: String(ringing.length) };
    if (reason)
      attributes.reason = reason;
    this.rt.putEntity({ id: name, type: 'matrix_room', name: r.room, config: { room: r.room }, state, attributes });
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
    const calls = [...this.calls.values()].filter((c) => c.entityId === name).map((c) => c.call.state);
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
      // ConnectEntity again for the same flow replaces the call.
      this.calls.delete(req.flow_id);
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

  async disconnectEntity({ id, flow_id: flowId }) {
    const c = this.calls.get(flowId);
    if (!c || c.entityId !== id)
      return; // idempotent
    this.calls.delete(flowId);
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
    if (type !== 'm.call.invite' || sender === this.link.userId)
      return;
    // An incoming call for us: nothing in a flow answers it, so decline it or leave it be.
    const lifetime = Number.isFinite(content.lifetime) ? content.lifetime : 60000;
    if (ageMs !== undefined && ageMs > lifetime)
      return; // an old invite from the history: already expired
    const name = this.link.roomNameOf(roomId);
    if (this.config.incoming_calls === 'ignore') {
      log.info(`incoming call from ${sender} in room ${name}: ignored (incoming_calls: ignore)`);
      return;
    }
    const { type: replyType, content: reply } = declineContent(content, this.partyId);
    log.info(`incoming call from ${sender} in room ${name}: declined (${replyType})`);
    this.link.send(roomId, replyType, reply).catch((e) => log.warn(`declining the call from ${sender}: ${e.message}`));
  }

  async stop() {
    // Hang up what rings or runs: the remote party should not wait for a module that left.
    const calls = [...this.calls.values()];
    this.calls.clear();
    await Promise.allSettled(calls.map((c) => c.call.hangup()));
    if (this.link)
      this.link.stop();
  }
}
