// SDP helpers for relaying a Matrix call's answer to the converter as one complete SDP
// (the flow contract has no trickle ICE): candidates that the remote party sent in
// m.call.candidates are merged into the media sections of its answer.

/** Split an SDP into its session part and media sections (arrays of lines, no CRLF). */
export function parseSections(sdp) {
  const lines = sdp.split(/\r?\n/).filter((l) => l.length > 0);
  const session = [];
  const media = [];
  for (const line of lines) {
    if (line.startsWith('m='))
      media.push([line]);
    else if (media.length)
      media[media.length - 1].push(line);
    else
      session.push(line);
  }
  return { session, media };
}

function mid(section) {
  const l = section.find((x) => x.startsWith('a=mid:'));
  return l ? l.slice('a=mid:'.length) : null;
}

/** Number of a=candidate lines in each media section. */
export function candidateCounts(sdp) {
  return parseSections(sdp).media.map((s) => s.filter((l) => l.startsWith('a=candidate:')).length);
}

/** True when every media section that is not rejected (port 0) has at least one candidate
 *  (with BUNDLE: the first one). */
export function hasCandidates(sdp) {
  const { session, media } = parseSections(sdp);
  const live = media.filter((s) => s[0].split(' ')[1] !== '0');
  // With BUNDLE every section shares the first one's transport.
  const need = session.some((l) => l.startsWith('a=group:BUNDLE ')) ? live.slice(0, 1) : live;
  return need.length > 0 && need.every((s) => s.some((l) => l.startsWith('a=candidate:')));
}

/**
 * Merge Matrix/WebRTC candidates ({candidate: "candidate:...", sdpMid, sdpMLineIndex}) into
 * sdp. A candidate goes to the section with its sdpMid, else the one at sdpMLineIndex; unknown
 * ones and duplicates are skipped. endOfCandidates adds a=end-of-candidates to every section.
 * Returns {sdp, added}.
 */
export function mergeCandidates(sdp, candidates, endOfCandidates = false) {
  const { session, media } = parseSections(sdp);
  let added = 0;
  for (const c of candidates) {
    if (!c || typeof c.candidate !== 'string' || c.candidate === '')
      continue;
    let idx = -1;
    if (typeof c.sdpMid === 'string')
      idx = media.findIndex((s) => mid(s) === c.sdpMid);
    if (idx < 0 && Number.isInteger(c.sdpMLineIndex) && c.sdpMLineIndex >= 0 && c.sdpMLineIndex < media.length)
      idx = c.sdpMLineIndex;
    if (idx < 0)
      continue;
    const text = c.candidate.replace(/^a=/, '').replace(/[\r\n]/g, '');
    if (!text.startsWith('candidate:'))
      continue;
    const line = `a=${text}`;
    const section = media[idx];
    if (section.includes(line))
      continue;
    // Before a=end-of-candidates if there is one, else at the end of the section.
    const end = section.indexOf('a=end-of-candidates');
    section.splice(end >= 0 ? end : section.length, 0, line);
    added++;
  }
  if (endOfCandidates)
    for (const s of media)
      if (!s.includes('a=end-of-candidates'))
        s.push('a=end-of-candidates');
  const out = [...session, ...media.flat()].join('\r\n') + '\r\n';
  return { sdp: out, added };
}

/** A light sanity check of an SDP offer or answer from a peer: version line and a media section. */
export function looksLikeSdp(sdp) {
  return typeof sdp === 'string' && sdp.startsWith('v=0') && /\r?\nm=/.test(sdp) && sdp.length <= 256 * 1024;
}

/**
 * Make sure every sending media section names its stream (a=msid): Matrix clients
 * (matrix-js-sdk, Element) ignore a remote track that belongs to no stream. Sections without
 * one get the stream "call-assistant". Returns {sdp, streams: [stream ids]}.
 */
export function ensureStreamIds(sdp) {
  const { session, media } = parseSections(sdp);
  const streams = new Set();
  media.forEach((section, i) => {
    const dir = section.find((l) => /^a=(sendonly|sendrecv|recvonly|inactive)$/.test(l)) || 'a=sendrecv';
    if (section[0].split(' ')[1] === '0' || dir === 'a=recvonly' || dir === 'a=inactive')
      return;
    const msid = section.find((l) => l.startsWith('a=msid:'));
    if (msid) {
      const id = msid.slice('a=msid:'.length).split(' ')[0];
      if (id && id !== '-') {
        streams.add(id);
        return;
      }
      section.splice(section.indexOf(msid), 1);
    }
    const kind = section[0].slice(2).split(' ')[0];
    section.push(`a=msid:call-assistant ${kind}-${mid(section) ?? i}`);
    streams.add('call-assistant');
  });
  return { sdp: [...session, ...media.flat()].join('\r\n') + '\r\n', streams: [...streams] };
}
