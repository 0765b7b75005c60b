// The call-assistant module runtime for Node (@grpc/grpc-js + @grpc/proto-loader).
//
// Everything a module needs besides its own domain logic: the environment contract
// (GRPC_PORT, module id, orchestrator address, module token), the ModuleService server
// on 127.0.0.1:$GRPC_PORT with the token check on every incoming call, grpc.health.v1,
// states, entities and their events, flow signals, and a clean stop on SIGTERM, SIGINT or
// the Shutdown RPC. A module gives it a description and handlers (see docs/writing-a-module.md):
//
//   const rt = new ModuleRuntime({ name, version, description, entityTypes, configSchema,
//                                  configRequired, handlers: { applyConfig, connectEntity, ... } });
//   await rt.run();   // resolves once the module has stopped
//
// The protos are loaded at run time from ../proto (the build copies proto/ there).

import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

export const TOKEN_METADATA_KEY = 'x-call-assistant-module-token';
export const Status = grpc.status;

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const DEFAULT_PROTO_DIR = path.join(HERE, '..', 'proto');

// ---- logging ------------------------------------------------------------------------------

const PRIORITY = { debug: 7, info: 6, warn: 4, error: 3 };
let debugEnabled = false;

/** stderr logging; journald reads a "<N>" prefix as the line's priority. */
export const log = {
  setDebug(on) { debugEnabled = on; },
  write(level, args) {
    if (level === 'debug' && !debugEnabled)
      return;
    const text = args.map((a) => (a instanceof Error ? (a.stack || a.message) : String(a))).join(' ');
    const journal = !!process.env.JOURNAL_STREAM;
    for (const line of text.split('\n'))
      process.stderr.write(journal ? `<${PRIORITY[level]}>${line}\n` : `${level.toUpperCase()}: ${line}\n`);
  },
  debug(...a) { this.write('debug', a); },
  info(...a) { this.write('info', a); },
  warn(...a) { this.write('warn', a); },
  error(...a) { this.write('error', a); },
};

// ---- errors -------------------------------------------------------------------------------

/** An error that becomes a gRPC status: throw it from a handler. */
export class ModuleError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** A refused configuration: [{pointer: "/rooms/0/room", message: "..."}, ...]. */
export class ConfigError extends ModuleError {
  constructor(problems) {
    super(Status.INVALID_ARGUMENT, problems.map((p) => `${p.pointer || '/'}: ${p.message}`).join('; '));
    this.problems = problems;
  }
}

export const errors = {
  invalid: (msg) => new ModuleError(Status.INVALID_ARGUMENT, msg),
  notFound: (msg) => new ModuleError(Status.NOT_FOUND, msg),
  precondition: (msg) => new ModuleError(Status.FAILED_PRECONDITION, msg),
  unavailable: (msg) => new ModuleError(Status.UNAVAILABLE, msg),
  unimplemented: (msg) => new ModuleError(Status.UNIMPLEMENTED, msg),
};

// ---- environment --------------------------------------------------------------------------

/** The module's token: $CALL_ASSISTANT_TOKEN_FILE, else $CREDENTIALS_DIRECTORY/module-token. */
export function readToken(env = process.env) {
  let file = env.CALL_ASSISTANT_TOKEN_FILE;
  if (!file && env.CREDENTIALS_DIRECTORY)
    file = path.join(env.CREDENTIALS_DIRECTORY, 'module-token');
  if (!file)
    return null;
  try {
    const token = readFileSync(file, 'utf8').trim();
    return token || null;
  } catch (e) {
    if (e.code !== 'ENOENT')
      log.warn(`cannot read the module token ${file}: ${e.message}, ignoring`);
    return null;
  }
}

/** What the orchestrator tells a module through its environment. Throws on a bad GRPC_PORT. */
export function readEnvironment(defaultId, env = process.env) {
  const raw = env.GRPC_PORT || '';
  const port = /^[0-9]+$/.test(raw) ? Number(raw) : NaN;
  if (!(port >= 1 && port <= 65535))
    throw new Error(`GRPC_PORT must be a port number in 1..65535, got '${raw}': modules are started by call-assistant`);
  return {
    port,
    moduleId: env.CALL_ASSISTANT_MODULE_ID || defaultId,
    // host:port or unix:/path: handed to gRPC as the target unchanged.
    orchestrator: env.CALL_ASSISTANT_ORCHESTRATOR || null,
    token: readToken(env),
  };
}

/** Constant-time check of an incoming call's token metadata. */
export function tokenMatches(expected, metadata) {
  if (!expected)
    return false;
  const got = metadata.get(TOKEN_METADATA_KEY);
  if (got.length !== 1 || typeof got[0] !== 'string')
    return false;
  const a = Buffer.from(got[0]);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

// ---- protos -------------------------------------------------------------------------------

let protoCache = null;

/** callassistant.v1 and grpc.health.v1, loaded from protoDir. */
export function loadProtos(protoDir = DEFAULT_PROTO_DIR) {
  if (protoCache && protoCache.dir === protoDir)
    return protoCache.pkg;
  const def = protoLoader.loadSync(
    ['callassistant/v1/module.proto', 'callassistant/v1/orchestrator.proto', 'grpc/health/v1/health.proto'],
    { includeDirs: [protoDir], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def);
  protoCache = { dir: protoDir, pkg };
  return pkg;
}

// ---- the orchestrator client --------------------------------------------------------------

/** ReportState/ReportEvent on the orchestrator's module endpoint, in order, best effort. */
export class OrchestratorClient {
  constructor(pkg, address, token, { timeoutMs = 5000 } = {}) {
    this.address = address;
    this.token = token;
    this.timeoutMs = timeoutMs;
    this.client = address && token
      ? new pkg.callassistant.v1.OrchestratorService(address, grpc.credentials.createInsecure())
      : null;
    this.queue = Promise.resolve();
  }

  get connected() { return this.client !== null; }

  call(method, request) {
    return this.exchange(method, request).then(({ err }) => {
      if (err)
        log.warn(`${method} to ${this.address} failed: ${Status[err.code] || err.code}: ${err.details}, ignoring`);
      return !err;
    });
  }

  /** The call in order with the others; resolves {err, resp} (err: the gRPC error, or null). */
  exchange(method, request) {
    if (!this.client)
      return Promise.resolve({ err: { code: Status.UNAVAILABLE, details: 'no orchestrator to report to' }, resp: null });
    // One after the other: a READY must not overtake the ERROR before it.
    const p = this.queue.then(() => new Promise((resolve) => {
      const md = new grpc.Metadata();
      md.set(TOKEN_METADATA_KEY, this.token);
      this.client[method](request, md, { deadline: Date.now() + this.timeoutMs }, (err, resp) => {
        resolve({ err: err || null, resp: resp || null });
      });
    }));
    this.queue = p;
    return p;
  }

  reportState(state, message = '') { return this.call('ReportState', { state, message }); }
  reportEvent(event) { return this.call('ReportEvent', event); }

  close() {
    if (this.client) {
      this.client.close();
      this.client = null;
    }
  }
}

// ---- entities -----------------------------------------------------------------------------

function sameEntity(a, b) {
  return a.type === b.type && a.name === b.name && a.config_json === b.config_json && a.state === b.state &&
    JSON.stringify(a.attributes) === JSON.stringify(b.attributes);
}

function normalizeEntity(e) {
  const attributes = {};
  for (const [k, v] of Object.entries(e.attributes || {}))
    if (v !== undefined && v !== null)
      attributes[k] = String(v);
  return {
    id: String(e.id), type: String(e.type), name: String(e.name || e.id),
    config_json: typeof e.config_json === 'string' ? e.config_json : JSON.stringify(e.config ?? {}),
    state: String(e.state || ''), attributes,
  };
}

// ---- the runtime --------------------------------------------------------------------------

const MODULE_SERVICE_METHODS = ['RegisterModule', 'ApplyConfig', 'CreateEntity', 'ConfigureEntity', 'DestroyEntity',
  'ListEntities', 'ConnectEntity', 'DisconnectEntity', 'Shutdown'];

export class ModuleRuntime {
  /**
   * info: { name, version, description, entityTypes: [{name, description, capabilities,
   *         configSchema (object), mediaIn, mediaOut}], configSchema (object), configRequired }
   * handlers (all optional, may be async; throw ModuleError/ConfigError to refuse):
   *   applyConfig(config)                    the parsed JSON object
   *   createEntity({type, name, config})     -> entity; configureEntity({id, config}) -> entity
   *   destroyEntity({id})
   *   connectEntity(request)                 -> {output?: MediaLink} (request as in the proto)
   *   disconnectEntity({id, flow_id})
   *   stop()                                 before the server stops (SIGTERM, Shutdown)
   * options: { env (process.env), protoDir, stopGraceMs }
   */
  constructor(info, handlers = {}, options = {}) {
    this.info = info;
    this.handlers = handlers;
    this.options = options;
    this.env = readEnvironment(info.name, options.env || process.env);
    this.pkg = loadProtos(options.protoDir);
    this.orchestrator = new OrchestratorClient(this.pkg, this.env.orchestrator, this.env.token);
    this.state = 'MODULE_STATE_STARTING';
    this.stateMessage = '';
    this.configured = false;
    this.serving = true;
    this.entities = new Map();
    this.healthWatchers = new Set();
    this.server = null;
    this.stopping = false;
    this.stopped = null;
    this.resolveStopped = null;
    if (this.env.orchestrator && !this.env.token)
      log.warn('no module token ($CALL_ASSISTANT_TOKEN_FILE or $CREDENTIALS_DIRECTORY/module-token): ' +
        'no state reports, and every ModuleService call is refused');
  }

  // -- state and health --

  /** Report a state change (MODULE_STATE_READY, ...); a repeated state with a new message is sent too. */
  setState(state, message = '') {
    if (!state.startsWith('MODULE_STATE_'))
      state = `MODULE_STATE_${state}`;
    if (state === this.state && message === this.stateMessage)
      return Promise.resolve(true);
    this.state = state;
    this.stateMessage = message;
    log.info(`state ${state.replace('MODULE_STATE_', '')}${message ? ` (${message})` : ''}`);
    return this.orchestrator.reportState(state, message);
  }

  /** Health: false makes grpc.health.v1 answer NOT_SERVING, and the orchestrator restarts the
   *  module after a few failed checks. Only for a module that cannot recover by itself. */
  setServing(serving) {
    if (serving === this.serving)
      return;
    this.serving = serving;
    for (const w of this.healthWatchers)
      w();
  }

  healthStatus() { return this.serving ? 'SERVING' : 'NOT_SERVING'; }

  // -- entities --

  /** Add or update an entity; reports KIND_ENTITY_ADDED/CHANGED when something changed. */
  putEntity(entity) {
    const e = normalizeEntity(entity);
    const old = this.entities.get(e.id);
    if (old && sameEntity(old, e))
      return old;
    this.entities.set(e.id, e);
    this.reportEvent({ kind: old ? 'KIND_ENTITY_CHANGED' : 'KIND_ENTITY_ADDED', entity: e });
    return e;
  }

  removeEntity(id) {
    const e = this.entities.get(id);
    if (!e)
      return false;
    this.entities.delete(id);
    this.reportEvent({ kind: 'KIND_ENTITY_REMOVED', entity: e });
    return true;
  }

  getEntity(id) { return this.entities.get(id) || null; }

  reportEvent(event) {
    return this.orchestrator.reportEvent({ module: this.env.moduleId, timestamp_usec: String(Date.now() * 1000), ...event });
  }

  /** A link for a flow later than the ConnectEntity answer (a WebRTC answer once a call is picked up). */
  reportFlowSignal(flowId, entityId, link) {
    return this.reportEvent({ kind: 'KIND_FLOW_SIGNAL', flow_id: flowId, entity: this.entities.get(entityId) || { id: entityId }, link });
  }

  /**
   * Ask the orchestrator for a flow from source ({module, id}) into our own entity entityId,
   * answering the remote party's WebRTC offer (link): Event.KIND_FLOW_REQUEST. Resolves with
   * the flow's id; the answer comes as ConnectEntity(entityId, input = answer, request_id).
   * Rejects with a ModuleError (code, details) when the orchestrator refuses.
   */
  async requestFlow(entityId, source, requestId, link) {
    const { err, resp } = await this.orchestrator.exchange('ReportEvent', { module: this.env.moduleId,
      timestamp_usec: String(Date.now() * 1000), kind: 'KIND_FLOW_REQUEST',
      entity: this.entities.get(entityId) || { id: entityId }, flow_source: source, request_id: requestId, link });
    if (err)
      throw new ModuleError(err.code, err.details);
    return resp.flow_id;
  }

  /** The entity stopped serving the flow on its own (hang-up, device gone). */
  reportFlowEnded(flowId, entityId, reason) {
    return this.reportEvent({ kind: 'KIND_FLOW_ENDED', flow_id: flowId, entity: this.entities.get(entityId) || { id: entityId }, reason });
  }

  // -- the gRPC services --

  registerResponse() {
    return {
      name: this.info.name, version: this.info.version, description: this.info.description || '',
      entity_types: (this.info.entityTypes || []).map((t) => ({
        name: t.name, description: t.description || '', capabilities: t.capabilities || [],
        config_schema: t.configSchema ? JSON.stringify(t.configSchema) : '',
        media_in: t.mediaIn || [], media_out: t.mediaOut || [],
      })),
      config_schema: this.info.configSchema ? JSON.stringify(this.info.configSchema) : '',
      config_required: !!this.info.configRequired,
      state: this.state, state_message: this.stateMessage,
    };
  }

  parseJson(text, what) {
    try {
      const v = JSON.parse(text || '{}');
      if (v === null || typeof v !== 'object' || Array.isArray(v))
        throw new ConfigError([{ pointer: '/', message: `${what} must be a JSON object` }]);
      return v;
    } catch (e) {
      if (e instanceof ModuleError)
        throw e;
      throw new ConfigError([{ pointer: '/', message: `not JSON (${e.message})` }]);
    }
  }

  requireReady() {
    if (this.info.configRequired && !this.configured)
      throw errors.precondition('module is not configured yet (WAITING_FOR_CONFIG)');
  }

  async dispatch(method, request) {
    const h = this.handlers;
    switch (method) {
    case 'RegisterModule':
      return this.registerResponse();
    case 'ApplyConfig': {
      const config = this.parseJson(request.config_json, 'the configuration');
      if (h.applyConfig)
        await h.applyConfig(config);
      this.configured = true;
      if (this.state === 'MODULE_STATE_STARTING' || this.state === 'MODULE_STATE_WAITING_FOR_CONFIG')
        await this.setState('MODULE_STATE_READY', 'configured');
      return { state: this.state };
    }
    case 'CreateEntity':
      this.requireReady();
      if (!h.createEntity)
        throw errors.precondition(`entities of ${this.info.name} come from its configuration`);
      return normalizeEntity(await h.createEntity({ type: request.type, name: request.name,
        config: this.parseJson(request.config_json, 'the entity configuration') }));
    case 'ConfigureEntity':
      this.requireReady();
      if (!this.entities.has(request.id))
        throw errors.notFound(`no entity '${request.id}'`);
      if (!h.configureEntity)
        throw errors.precondition(`entities of ${this.info.name} are configured through the module configuration`);
      return normalizeEntity(await h.configureEntity({ id: request.id,
        config: this.parseJson(request.config_json, 'the entity configuration') }));
    case 'DestroyEntity':
      this.requireReady();
      if (!this.entities.has(request.id))
        throw errors.notFound(`no entity '${request.id}'`);
      if (!h.destroyEntity)
        throw errors.precondition(`entities of ${this.info.name} are removed through the module configuration`);
      await h.destroyEntity({ id: request.id });
      return {};
    case 'ListEntities':
      return { entities: [...this.entities.values()].filter((e) => !request.type || e.type === request.type) };
    case 'ConnectEntity': {
      if (!h.connectEntity)
        throw errors.unimplemented(`${this.info.name} takes no part in flows`);
      this.requireReady();
      if (!request.flow_id)
        throw errors.invalid('flow_id: required');
      if (!this.entities.has(request.id))
        throw errors.notFound(`no entity '${request.id}'`);
      const r = (await h.connectEntity(request)) || {};
      return { output: r.output || null, entity: this.entities.get(request.id) };
    }
    case 'DisconnectEntity':
      if (!h.disconnectEntity)
        throw errors.unimplemented(`${this.info.name} takes no part in flows`);
      if (!this.entities.has(request.id))
        throw errors.notFound(`no entity '${request.id}'`);
      await h.disconnectEntity({ id: request.id, flow_id: request.flow_id });
      return {};
    case 'Shutdown':
      log.info('shutdown requested by the orchestrator');
      setImmediate(() => this.stop());
      return {};
    default:
      throw errors.unimplemented(method);
    }
  }

  moduleServiceImpl() {
    const impl = {};
    for (const method of MODULE_SERVICE_METHODS) {
      impl[method] = (call, callback) => {
        // Only the orchestrator may call a module: it sends the module's own token.
        if (!tokenMatches(this.env.token, call.metadata)) {
          callback({ code: Status.UNAUTHENTICATED,
            details: this.env.token ? `missing or wrong ${TOKEN_METADATA_KEY}` : 'this module has no token: it accepts no calls' });
          return;
        }
        this.dispatch(method, call.request).then((resp) => callback(null, resp), (e) => {
          if (e instanceof ModuleError) {
            log.debug(`${method}: ${Status[e.code]}: ${e.message}`);
            callback({ code: e.code, details: e.message });
          } else {
            log.error(`${method} failed:`, e);
            callback({ code: Status.INTERNAL, details: `${method}: ${e.message}` });
          }
        });
      };
    }
    return impl;
  }

  healthImpl() {
    const known = (s) => s === '' || s === 'callassistant.v1.ModuleService';
    return {
      Check: (call, callback) => {
        if (!known(call.request.service))
          callback({ code: Status.NOT_FOUND, details: `unknown service '${call.request.service}'` });
        else
          callback(null, { status: this.healthStatus() });
      },
      Watch: (call) => {
        const send = () => call.write({ status: known(call.request.service) ? this.healthStatus() : 'SERVICE_UNKNOWN' });
        this.healthWatchers.add(send);
        call.on('cancelled', () => this.healthWatchers.delete(send));
        send();
      },
    };
  }

  // -- lifecycle --

  /** Serve on 127.0.0.1:$GRPC_PORT; resolves with the bound port. */
  async start() {
    this.server = new grpc.Server({ 'grpc.so_reuseport': 0 });
    this.server.addService(this.pkg.callassistant.v1.ModuleService.service, this.moduleServiceImpl());
    this.server.addService(this.pkg.grpc.health.v1.Health.service, this.healthImpl());
    const address = `127.0.0.1:${this.env.port}`;
    const port = await new Promise((resolve, reject) => {
      this.server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(
        new Error(`cannot listen on ${address}: ${err.message}`)) : resolve(p)));
    });
    log.info(`${this.info.name} ${this.info.version} serving on ${address}`);
    this.stopped = new Promise((resolve) => { this.resolveStopped = resolve; });
    if (this.info.configRequired && !this.configured)
      this.setState('MODULE_STATE_WAITING_FOR_CONFIG', 'waiting for configuration');
    else if (this.state === 'MODULE_STATE_STARTING')
      this.setState('MODULE_STATE_READY');
    return port;
  }

  installSignalHandlers() {
    for (const sig of ['SIGTERM', 'SIGINT'])
      process.on(sig, () => {
        log.info(`received ${sig}, stopping`);
        this.stop();
      });
  }

  /** Stop: the module's own stop handler, then the server (in-flight calls get a grace period). */
  async stop() {
    if (this.stopping)
      return this.stopped;
    this.stopping = true;
    const grace = this.options.stopGraceMs ?? 3000;
    if (this.handlers.stop) {
      try {
        await Promise.race([this.handlers.stop(), new Promise((r) => setTimeout(r, grace).unref())]);
      } catch (e) {
        log.warn('stop handler failed:', e);
      }
    }
    for (const w of this.healthWatchers)
      w();
    if (this.server) {
      await new Promise((resolve) => {
        const t = setTimeout(() => { this.server.forceShutdown(); resolve(); }, grace);
        t.unref();
        this.server.tryShutdown(() => { clearTimeout(t); resolve(); });
      });
    }
    await Promise.race([this.orchestrator.queue, new Promise((r) => setTimeout(r, 1000).unref())]);
    this.orchestrator.close();
    log.info('stopped');
    if (this.resolveStopped)
      this.resolveStopped();
    return this.stopped;
  }

  /** start(), signal handlers, and wait until stopped. */
  async run() {
    this.installSignalHandlers();
    await this.start();
    await this.stopped;
  }
}
