// Runs in headless Chromium: a real Matrix client (matrix-js-sdk, bundled by build-bundle.js)
// that is the remote party of the module's calls. It answers a ringing call with real WebRTC
// (Chromium's fake camera and microphone), or places a video call itself, counts the video
// frames it decodes from the other side, and can hang up. window.remoteParty is driven by harness.js through playwright-core.
import * as sdk from 'matrix-js-sdk';
import { CallErrorCode, MatrixCall } from 'matrix-js-sdk/lib/webrtc/call.js';
import { CallEventHandlerEvent } from 'matrix-js-sdk/lib/webrtc/callEventHandler.js';

const state = { ready: false, calls: [], log: [] };

function log(msg) {
  state.log.push(`${new Date().toISOString()} ${msg}`);
}

// matrix-js-sdk's call handler swallows errors of initWithInvite that are no CallError:
// record them, or a call that cannot start would fail without a word.
const initWithInvite = MatrixCall.prototype.initWithInvite;
MatrixCall.prototype.initWithInvite = async function (...args) {
  try {
    return await initWithInvite.apply(this, args);
  } catch (e) {
    log(`initWithInvite failed: ${e?.stack || e}`);
    throw e;
  }
};

/** Follow a call (incoming or placed by us) in state.calls; it becomes the current one. */
function track(call, direction) {
  const entry = { callId: call.callId, direction, state: call.state, hangupParty: null, hangupReason: null, answered: false };
  state.calls.push(entry);
  call.on(sdk.CallEvent.State, (s) => {
    // matrix-js-sdk sets hangupParty before it enters 'ended' and emits Hangup only after
    // the state change: read it here so a waiter on 'ended' sees who hung up.
    if (s === 'ended') {
      entry.hangupParty = call.hangupParty;
      entry.hangupReason = call.hangupReason;
    }
    entry.state = s;
    log(`call ${call.callId}: ${s}`);
  });
  call.on(sdk.CallEvent.Hangup, () => {
    entry.hangupParty = call.hangupParty;
    entry.hangupReason = call.hangupReason;
    log(`call ${call.callId} hung up by ${call.hangupParty}: ${call.hangupReason}`);
  });
  call.on(sdk.CallEvent.Error, (e) => log(`call ${call.callId} error: ${e.code} ${e.message}`));
  state.current = call;
  return entry;
}

window.remoteParty = {
  state,

  async start({ baseUrl, userId, accessToken, roomId, answer = true }) {
    const client = sdk.createClient({ baseUrl, userId, accessToken, deviceId: 'REMOTEPARTY', useAuthorizationHeader: true });
    state.client = client;
    client.on(sdk.ClientEvent.Sync, (s) => {
      if (s === 'PREPARED' || s === 'SYNCING')
        state.ready = true;
    });
    state.roomId = roomId;
    client.on(CallEventHandlerEvent.Incoming, (call) => {
      const entry = track(call, 'incoming');
      log(`incoming call ${call.callId} in ${call.roomId}`);
      if (answer)
        call.answer(true, true).then(() => { entry.answered = true; }, (e) => log(`answer failed: ${e.message}`));
    });
    await client.joinRoom(roomId);
    await client.startClient({ initialSyncLimit: 1 });
  },

  /** Video frames decoded from the caller so far (the answerer's inbound-rtp). */
  async framesDecoded() {
    const pc = state.current?.peerConn;
    if (!pc)
      return 0;
    let frames = 0;
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video')
        frames += r.framesDecoded || 0;
    });
    return frames;
  },

  /** Place a video call into the room (Chromium's fake camera and microphone); returns its number. */
  async placeCall() {
    const call = sdk.createNewMatrixCall(state.client, state.roomId);
    if (!call)
      throw new Error('matrix-js-sdk cannot make calls here (no WebRTC?)');
    track(call, 'outgoing');
    log(`placing call ${call.callId} in ${state.roomId}`);
    await call.placeVideoCall();
    return state.calls.length;
  },

  /** The current call's inbound video: frames decoded and their size. */
  async video() {
    const v = { frames: 0, width: 0, height: 0 };
    const pc = state.current?.peerConn;
    if (pc)
      (await pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video')
          Object.assign(v, { frames: v.frames + (r.framesDecoded || 0), width: r.frameWidth || v.width,
            height: r.frameHeight || v.height });
      });
    return v;
  },

  hangup() {
    state.current?.hangup(CallErrorCode.UserHangup, false);
  },

  summary() {
    return { ready: state.ready, calls: state.calls.map((c) => ({ ...c })), log: state.log.slice(-30) };
  },
};
