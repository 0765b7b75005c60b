// The matrix module's configuration: its JSON Schema (checked by the orchestrator's config
// service first) and the module's own, final check with every problem by JSON pointer.
//
//   {
//     "homeserver": "https://matrix.example.org",  // http(s) URL of the Client-Server API
//     "user_id": "@doorbell:example.org",           // the account the module calls as
//     "access_token": "syt_...",                    // secret (writeOnly): never logged or listed
//     "rooms": [{"name": "family", "room": "!abc:example.org"}],  // or "#alias:example.org"
//     "incoming_calls": "decline",                  // or "ignore": leave them to other devices
//     "invite_lifetime_ms": 60000                   // how long an outgoing call rings
//   }

export const ROOM_NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const USER_ID_RE = /^@[^:\s]+:[^\s]+$/;
const ROOM_RE = /^[!#][^:\s]+:[^\s]+$/;

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
        },
      },
    },
    incoming_calls: { type: 'string', enum: ['decline', 'ignore'], default: DEFAULTS.incoming_calls },
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
        if (k !== 'name' && k !== 'room')
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
      if (ok) {
        seen.set(r.name, i);
        rooms.push({ name: r.name, room: r.room });
      }
    });
  }

  const incoming = raw.incoming_calls ?? DEFAULTS.incoming_calls;
  if (incoming !== 'decline' && incoming !== 'ignore')
    bad('/incoming_calls', 'must be "decline" or "ignore"');

  const lifetime = raw.invite_lifetime_ms ?? DEFAULTS.invite_lifetime_ms;
  if (!Number.isInteger(lifetime) || lifetime < 5000 || lifetime > 600000)
    bad('/invite_lifetime_ms', 'must be an integer in 5000..600000');

  if (problems.length)
    return { config: null, problems };
  return {
    config: { homeserver: raw.homeserver.replace(/\/+$/, ''), user_id: raw.user_id, access_token: raw.access_token,
      rooms, incoming_calls: incoming, invite_lifetime_ms: lifetime },
    problems: [],
  };
}

/** The configuration as it may be shown (entity listings, logs): no token. */
export function redacted(config) {
  const { access_token: _, ...rest } = config;
  return rest;
}
