// A Matrix call end to end, with real WebRTC at both ends: the matrix module (its real process,
// matrix-js-sdk) against the homeserver double (tests/doubles), a remote party that is
// matrix-js-sdk in headless Chromium (tests/remote-party), and a WebRTC offerer in Chromium in
// the converter's place. The test plays the orchestrator's side of the flow contract
// (docs/protocol.md): ConnectEntity(offer) -> m.call.invite -> the remote party answers ->
// KIND_FLOW_SIGNAL(answer) -> the offerer takes the answer -> video frames decoded by the remote
// party; hang-ups either way end the flow.
//
// It runs in a network namespace of its own with only loopback (it re-executes itself under
// `unshare --net`; needs root): nothing it does can reach another machine.
import { execFileSync, spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

const BUILD = process.env.CA_BUILD_ROOT;
const SOURCE = process.env.CA_SOURCE_ROOT;

if (process.env.CA_MATRIX_NETNS !== '1') {
  if (process.getuid() !== 0) {
    console.log('needs root for a network namespace: skipped');
    process.exit(77);
  }
  const child = spawn('unshare', ['--net', '--', process.execPath, ...process.execArgv, process.argv[1]],
    { stdio: 'inherit', env: { ...process.env, CA_MATRIX_NETNS: '1' } });
  child.on('exit', (code, sig) => process.exit(sig ? 1 : code));
} else {
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  await run();
}

async function run() {
  const { MatrixHomeserverDouble } = await import(path.join(SOURCE, 'tests/doubles/matrix-homeserver.js'));
  const helpers = await import(path.join(BUILD, 'modules/matrix/test/helpers.js'));
  const { launchBrowser, RemoteParty, WebRtcOfferer } = await import(path.join(BUILD, 'tests/remote-party/harness.js'));
  const { freePort, moduleClient, startRecorder, tokenFile, waitFor } = helpers;

  const TOKEN = 'module-token-' + Math.random().toString(36).slice(2);
  const BOT = '@doorbell:double.test';
  const ALICE = '@alice:double.test';
  const ROOM = '!family:double.test';
  let hs, rec, mod, client, browser, party;

  before(async () => {
    hs = new MatrixHomeserverDouble();
    await hs.start();
    hs.addUser(BOT, 'bot-access');
    hs.addUser(ALICE, 'alice-access');
    hs.addRoom(ROOM, { alias: '#family:double.test', invite: [BOT, ALICE] });
    rec = await startRecorder(TOKEN);
    const port = await freePort();
    mod = spawn(process.execPath, [path.join(BUILD, 'modules/matrix/src/main.js')], {
      cwd: path.join(BUILD, 'modules/matrix'), stdio: ['ignore', 'inherit', 'inherit'],
      env: { PATH: process.env.PATH, GRPC_PORT: String(port), CALL_ASSISTANT_MODULE_ID: 'matrix',
        CALL_ASSISTANT_TOKEN_FILE: tokenFile(TOKEN), CALL_ASSISTANT_ORCHESTRATOR: rec.address } });
    client = moduleClient(port, TOKEN);
    await waitFor(() => rec.states.length > 0, 20000, 'the module to report its state');
    await client.call('ApplyConfig', { config_json: JSON.stringify({ homeserver: hs.url, user_id: BOT,
      access_token: 'bot-access', rooms: [{ name: 'family', room: '#family:double.test' }] }) });
    await waitFor(async () => (await client.call('ListEntities', {})).entities.find((e) => e.id === 'family' && e.state === 'idle'),
      20000, 'the room to be joined');
    browser = await launchBrowser();
    party = await RemoteParty.start(browser, { baseUrl: hs.url, userId: ALICE, accessToken: 'alice-access', roomId: ROOM });
  });

  after(async () => {
    await browser?.close();
    client?.close();
    if (mod && mod.exitCode === null) {
      mod.kill('SIGTERM');
      const code = await new Promise((r) => mod.on('exit', (c) => r(c)));
      assert.equal(code, 0, 'the module exits with 0 on SIGTERM');
    }
    await hs?.stop();
    await rec?.close();
    helpers.unrefTimers();
  });

  async function call(flowId, n) {
    const offerer = await WebRtcOfferer.start(browser);
    const offer = await offerer.offer();
    assert.match(offer, /a=candidate:/, 'the offer is complete (ICE gathered)');
    const resp = await client.call('ConnectEntity', { id: 'family', flow_id: flowId,
      input: { media: 'webrtc', sdp: offer, sdp_type: 'offer' } });
    assert.equal(resp.entity.state, 'ringing');
    await party.waitForCall(n);
    const signal = await waitFor(() => rec.eventsOf('KIND_FLOW_SIGNAL').find((e) => e.flow_id === flowId), 20000,
      `FLOW_SIGNAL for ${flowId}`).catch(async (e) => {
      throw new Error(`${e.message}\nremote party: ${JSON.stringify(await party.summary(), null, 1)}\n` +
        `events in the room: ${JSON.stringify(hs.events.filter((x) => x.type.startsWith('m.call.')).map((x) => [x.sender, x.type, x.content.call_id]))}`);
    });
    assert.equal(signal.link.sdp_type, 'answer');
    assert.match(signal.link.sdp, /a=candidate:/, 'the relayed answer carries candidates');
    await offerer.setAnswer(signal.link.sdp);
    return offerer;
  }

  test('the remote party answers, receives video, and hangs up: the flow ends', async () => {
    const offerer = await call('flow-1', 1);
    const frames = await party.waitForFrames(5);
    assert.ok(frames >= 5);
    assert.equal(await offerer.connectionState(), 'connected');
    await waitFor(async () => (await client.call('ListEntities', {})).entities.find((e) => e.state === 'in_call'), 10000, 'in_call');
    await party.hangup();
    const ended = await waitFor(() => rec.eventsOf('KIND_FLOW_ENDED').find((e) => e.flow_id === 'flow-1'), 20000, 'FLOW_ENDED');
    assert.match(ended.reason, /@alice:double.test hung up/);
  });

  test('DisconnectEntity hangs up the call at the remote party', async () => {
    await call('flow-2', 2);
    await party.waitForFrames(1);
    await client.call('DisconnectEntity', { id: 'family', flow_id: 'flow-2' });
    const c = await party.waitForCallState(2, 'ended');
    assert.equal(c.hangupParty, 'remote');
    assert.ok(!rec.eventsOf('KIND_FLOW_ENDED').some((e) => e.flow_id === 'flow-2'));
  });
}
