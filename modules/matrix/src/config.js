// The matrix module's configuration: its JSON Schema (checked by the orchestrator's config
// service first) and the module's own, final check with every problem by JSON pointer.
//
//   {
//     "homeserver": "https://matrix.example.org",  // http(s) URL of the Client-Server API
//     "user_id": "@doorbell:example.org",           // the account the module calls as
//     "access_token": "syt_...",                    // secret (writeOnly): never logged or listed
//     "rooms": [{"name": "family", "room": "!abc:example.org"}],  // or "#alias:example.org"
//     "incoming_calls": "decline",                  // or "ignore": leave them to other devices,
//                                                   // or "answer": with the picture of answer_with
//     "answer_with": "onvif-discovery/cam-1",       // MODULE/ENTITY, the source; a room may have its own
//     "invite_lifetime_ms": 60000                   // how long an outgoing call rings
//   }

export const ROOM_NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const USER_ID_RE = /^@[^:\s]+:[^\s]+$/;
const ROOM_RE = /^[!#][^:\s]+:[^\s]+$/;
// MODULE/ENTITY: a module name, then the entity's id (which may hold any printable character).
const SOURCE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\/[\x21-\x7e]{1,256}$/;
const SOURCE_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/[!-~]{1,256}$';
export const INCOMING = ['decline', 'ignore', 'answer'];

export const DEFAULTS = { incoming_calls: 'decline', invite_lifetime_ms: 60000 };

export const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['homeserver', 'user_id', 'access_token'],
  properties: {
    homeserver: { type: 'string', minLength: 1, maxLength: 2048, pattern: '^https?://',
      description: 'Base URL of the homeserver (Client-Server API)' },
    user_id: { type: 'string', minLength: 3, maxLength: 255, pattern: '^@[^:]+:.+$' },
    access_token: { type: 'string', minLength: 1, maxLength: 4096, writeOnly: true },
    rooms: {
      type: 'array', maxItems: 256, default: [],
      items: {
        type: 'object', additionalProperties: false, required: ['name', 'room'],
        properties: {
          name: { type: 'string', pattern: '^[a-z0-9][a-z0-9_.-]*$', maxLength: 64,
            description: 'The entity id of this room' },
          room: { type: 'string', minLength: 4, maxLength: 255, pattern: '^[!#][^:]+:.+$',
            description: 'Room id (!id:server) or alias (#alias:server)' },
          answer_with: { type: 'string', maxLength: 321, pattern: SOURCE_PATTERN,
            description: 'For incoming_calls "answer": the source (MODULE/ENTITY) whose picture answers calls in this room' },
        },
      },
    },
    incoming_calls: { type: 'string', enum: INCOMING, default: DEFAULTS.incoming_calls,
      description: 'Calls from others in a room: decline them, ignore them (other devices may answer), or answer them with answer_with' },
    answer_with: { type: 'string', maxLength: 321, pattern: SOURCE_PATTERN,
      description: 'For incoming_calls "answer": the source (MODULE/ENTITY, e.g. onvif-discovery/cam-1) whose picture answers calls' },
    invite_lifetime_ms: { type: 'integer', minimum: 5000, maximum: 600000, default: DEFAULTS.invite_lifetime_ms },
  },
};

const KEYS = Object.keys(CONFIG_SCHEMA.properties);

function isUrl(s) {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && !!u.hostname && !u.username && !u.password;
  } catch {
    return false;
  }
}

/** Returns {config, problems}: config normalized (defaults filled), problems [{pointer, message}]. */
export function validateConfig(raw) {
  const problems = [];
  const bad = (pointer, message) => problems.push({ pointer, message });
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    return { config: null, problems: [{ pointer: '/', message: 'must be a JSON object' }] };
  for (const k of Object.keys(raw))
    if (!KEYS.includes(k))
      bad(`/${k}`, 'unknown field');

  if (raw.homeserver === undefined)
    bad('/homeserver', 'is required');
  else if (typeof raw.homeserver !== 'string' || !isUrl(raw.homeserver))
    bad('/homeserver', 'must be an http:// or https:// URL without credentials');

  if (raw.user_id === undefined)
    bad('/user_id', 'is required');
  else if (typeof raw.user_id !== 'string' || !USER_ID_RE.test(raw.user_id) || raw.user_id.length > 255)
    bad('/user_id', 'must be a Matrix user id like @name:server');

  // Never quote the token in a message: it is a secret.
  if (raw.access_token === undefined)
    bad('/access_token', 'is required');
  else if (typeof raw.access_token !== 'string' || raw.access_token.length === 0 || /\s/.test(raw.access_token))
    bad('/access_token', 'must be a non-empty string without spaces');

  const rooms = [];
  const rawRooms = raw.rooms ?? [];
  if (!Array.isArray(rawRooms)) {
    bad('/rooms', 'must be an array');
  } else {
    const seen = new Map();
    rawRooms.forEach((r, i) => {
      const at = `/rooms/${i}`;
      if (r === null || typeof r !== 'object' || Array.isArray(r)) {
        bad(at, 'must be an object');
        return;
      }
      for (const k of Object.keys(r))
        if (k !== 'name' && k !== 'room' && k !== 'answer_with')
          bad(`${at}/${k}`, 'unknown field');
      let ok = true;
      if (typeof r.name !== 'string' || !ROOM_NAME_RE.test(r.name)) {
        bad(`${at}/name`, r.name === undefined ? 'is required' : 'must be 1-64 of a-z 0-9 _ . - starting with a-z or 0-9');
        ok = false;
      } else if (seen.has(r.name)) {
        bad(`${at}/name`, `duplicate of /rooms/${seen.get(r.name)}/name`);
        ok = false;
      }
      if (typeof r.room !== 'string' || !ROOM_RE.test(r.room) || r.room.length > 255) {
        bad(`${at}/room`, r.room === undefined ? 'is required' : 'must be a room id (!id:server) or alias (#alias:server)');
        ok = false;
      }
      if (r.answer_with !== undefined && !validSource(r.answer_with)) {
        bad(`${at}/answer_with`, SOURCE_MESSAGE);
        ok = false;
      }
      if (ok) {
        seen.set(r.name, i);
        rooms.push(r.answer_with !== undefined ? { name: r.name, room: r.room, answer_with: r.answer_with }
          : { name: r.name, room: r.room });
      }
    });
  }

  const incoming = raw.incoming_calls ?? DEFAULTS.incoming_calls;
  if (!INCOMING.includes(incoming))
    bad('/incoming_calls', 'must be "decline", "ignore" or "answer"');
  const answerWith = raw.answer_with;
  if (answerWith !== undefined && !validSource(answerWith))
    bad('/answer_with', SOURCE_MESSAGE);
  else if (incoming === 'answer' && answerWith === undefined && Array.isArray(rawRooms))
    rawRooms.forEach((r, i) => {
      if (r && typeof r === 'object' && r.answer_with === undefined)
        bad(`/rooms/${i}/answer_with`, 'is required when incoming_calls is "answer" and there is no /answer_with');
    });

  const lifetime = raw.invite_lifetime_ms ?? DEFAULTS.invite_lifetime_ms;
  if (!Number.isInteger(lifetime) || lifetime < 5000 || lifetime > 600000)
    bad('/invite_lifetime_ms', 'must be an integer in 5000..600000');

  if (problems.length)
    return { config: null, problems };
  return {
    config: { homeserver: raw.homeserver.replace(/\/+$/, ''), user_id: raw.user_id, access_token: raw.access_token,
      rooms, incoming_calls: incoming, ...(answerWith !== undefined ? { answer_with: answerWith } : {}),
      invite_lifetime_ms: lifetime },
    problems: [],
  };
}

const SOURCE_MESSAGE = 'must be MODULE/ENTITY, e.g. onvif-discovery/cam-1 (a module name, "/", the entity id)';

function validSource(s) {
  return typeof s === 'string' && SOURCE_RE.test(s);
}

/** The source that answers calls in room (a configured room): {module, id}, or null. */
export function answerSource(config, room) {
  const s = room?.answer_with ?? config.answer_with;
  if (!s)
    return null;
  const at = s.indexOf('/');
  return { module: s.slice(0, at), id: s.slice(at + 1) };
}

/** The configuration as it may be shown (entity listings, logs): no token. */
export function redacted(config) {
  const { access_token: _, ...rest } = config;
  return rest;
}
