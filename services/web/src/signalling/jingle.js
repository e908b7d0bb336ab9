// Jingle (XEP-0166/0167/0176/0320/0339/0294/0293, Jitsi's ssrc-info and Colibri web-socket)
// to and from a plain session model. The model is what sdp.js turns into SDP and back; nothing
// here does I/O. Element building goes through a Strophe-style builder (`.c()`, `.t()`, `.up()`).

import { attr, child, children, intAttr, JingleError, text } from './xml.js';

/** A session-terminate that moves us to another bridge (Jicofo: reason success, text "moving"). */
export function isMove(session) {
  const r = session.reason;
  return !!r && (r.condition === 'moving' || r.text === 'moving');
}

export const NS = Object.freeze({
  JINGLE: 'urn:xmpp:jingle:1',
  RTP: 'urn:xmpp:jingle:apps:rtp:1',
  RTCP_FB: 'urn:xmpp:jingle:apps:rtp:rtcp-fb:0',
  HDREXT: 'urn:xmpp:jingle:apps:rtp:rtp-hdrext:0',
  SSMA: 'urn:xmpp:jingle:apps:rtp:ssma:0',
  ICE_UDP: 'urn:xmpp:jingle:transports:ice-udp:1',
  DTLS: 'urn:xmpp:jingle:apps:dtls:0',
  GROUPING: 'urn:xmpp:jingle:apps:grouping:0',
  JITMEET: 'http://jitsi.org/jitmeet',
  COLIBRI: 'http://jitsi.org/protocol/colibri',
  SCTP: 'urn:xmpp:jingle:transports:dtls-sctp:1',
  FOCUS: 'http://jitsi.org/protocol/focus',
});

/**
 * @typedef {{ssrc: number, name?: string, owner?: string, msid?: string, videoType?: string}} Source
 * @typedef {{semantics: string, ssrcs: number[]}} SsrcGroup
 * @typedef {{id: number, name: string, clockrate: number, channels?: number,
 *            parameters: Record<string,string>, rtcpFb: {type: string, subtype?: string}[]}} PayloadType
 * @typedef {{foundation: string, component: number, protocol: string, priority: number, ip: string,
 *            port: number, type: string, generation?: number, relAddr?: string, relPort?: number,
 *            tcptype?: string}} Candidate
 * @typedef {{ufrag?: string, pwd?: string, fingerprints: {hash: string, setup?: string, value: string}[],
 *            candidates: Candidate[], webSocketUrl?: string, iceLite?: boolean, rtcpMux: boolean}} Transport
 * @typedef {{media: string, payloadTypes: PayloadType[], hdrExts: {id: number, uri: string}[],
 *            rtcpMux: boolean, extmapAllowMixed: boolean, sources: Source[], ssrcGroups: SsrcGroup[]}} Description
 * @typedef {{name: string, creator?: string, senders?: string, description?: Description,
 *            transport?: Transport, sctp?: boolean}} Content
 * @typedef {{action: string, sid: string, initiator?: string, responder?: string,
 *            contents: Content[], bundle: string[], reason?: {condition: string, text: string}}} JingleSession
 */

/** Parse a `<jingle>` element (or an `<iq>` holding one) into a JingleSession. */
export function parseJingle(el) {
  const jingle = el.localName === 'jingle' ? el : child(el, 'jingle', NS.JINGLE);
  if (!jingle) throw new JingleError('no <jingle xmlns="urn:xmpp:jingle:1"> element');
  const action = attr(jingle, 'action');
  if (!action) throw new JingleError('<jingle> lacks an action');
  const group = children(jingle, 'group', NS.GROUPING).find((g) => attr(g, 'semantics') === 'BUNDLE');
  const reasonEl = child(jingle, 'reason');
  const reasonChild = reasonEl ? children(reasonEl).find((c) => c.localName !== 'text') : null;
  const reasonText = reasonEl ? text(child(reasonEl, 'text')) : '';
  return {
    action,
    sid: attr(jingle, 'sid', ''),
    initiator: attr(jingle, 'initiator'),
    responder: attr(jingle, 'responder'),
    contents: children(jingle, 'content').map(parseContent),
    bundle: group ? children(group, 'content').map((c) => attr(c, 'name')) : [],
    reason: reasonEl ? { condition: reasonChild?.localName ?? '', text: reasonText } : undefined,
  };
}

function parseContent(el) {
  const name = attr(el, 'name');
  if (!name) throw new JingleError('<content> lacks a name');
  const descEl = child(el, 'description', NS.RTP);
  const transEl = child(el, 'transport', NS.ICE_UDP);
  return {
    name,
    creator: attr(el, 'creator'),
    senders: attr(el, 'senders'),
    description: descEl ? parseDescription(descEl, name) : undefined,
    transport: transEl ? parseTransport(transEl) : undefined,
    sctp: !!transEl && !!child(transEl, 'sctpmap', NS.SCTP),
  };
}

function parseDescription(el, contentName) {
  const sourcesByssrc = new Map();
  for (const s of children(el, 'source', NS.SSMA)) {
    const ssrc = intAttr(s, 'ssrc');
    const params = Object.fromEntries(children(s, 'parameter').map((p) => [attr(p, 'name'), attr(p, 'value', '')]));
    const info = child(s, 'ssrc-info', NS.JITMEET);
    sourcesByssrc.set(ssrc, {
      ssrc,
      name: attr(s, 'name'),
      owner: attr(info, 'owner'),
      msid: params.msid || undefined,
      videoType: attr(s, 'videoType'),
    });
  }
  return {
    media: attr(el, 'media', contentName),
    payloadTypes: children(el, 'payload-type', NS.RTP).map(parsePayloadType),
    hdrExts: children(el, 'rtp-hdrext', NS.HDREXT).map((h) => ({ id: intAttr(h, 'id'), uri: attr(h, 'uri', '') })),
    rtcpMux: !!child(el, 'rtcp-mux', NS.RTP),
    extmapAllowMixed: !!child(el, 'extmap-allow-mixed', NS.HDREXT),
    sources: [...sourcesByssrc.values()],
    ssrcGroups: children(el, 'ssrc-group', NS.SSMA).map((g) => ({
      semantics: attr(g, 'semantics', ''),
      ssrcs: children(g, 'source').map((s) => intAttr(s, 'ssrc')),
    })),
  };
}

function parsePayloadType(el) {
  const channels = attr(el, 'channels');
  return {
    id: intAttr(el, 'id'),
    name: attr(el, 'name', ''),
    clockrate: intAttr(el, 'clockrate', 90000),
    ...(channels ? { channels: Number(channels) } : {}),
    // a nameless parameter (RED's `111/111`, RFC 2198) is kept under the name ''
    parameters: Object.fromEntries(children(el, 'parameter').map((p) => [attr(p, 'name', ''), attr(p, 'value', '')])),
    rtcpFb: children(el, 'rtcp-fb', NS.RTCP_FB).map((f) => {
      const subtype = attr(f, 'subtype');
      return subtype ? { type: attr(f, 'type', ''), subtype } : { type: attr(f, 'type', '') };
    }),
  };
}

function parseTransport(el) {
  const ws = child(el, 'web-socket', NS.COLIBRI);
  return {
    ufrag: attr(el, 'ufrag'),
    pwd: attr(el, 'pwd'),
    fingerprints: children(el, 'fingerprint', NS.DTLS).map((f) => ({
      hash: attr(f, 'hash', 'sha-256'),
      setup: attr(f, 'setup'),
      value: text(f),
    })),
    candidates: children(el, 'candidate', NS.ICE_UDP).map(parseCandidate),
    webSocketUrl: attr(ws, 'url'),
    sctpPort: child(el, 'sctpmap', NS.SCTP) ? intAttr(child(el, 'sctpmap', NS.SCTP), 'number', 5000) : undefined,
    iceLite: !!child(el, 'ice-lite', NS.COLIBRI),
    rtcpMux: !!child(el, 'rtcp-mux', NS.ICE_UDP),
  };
}

function parseCandidate(el) {
  const cand = {
    foundation: attr(el, 'foundation', '1'),
    component: intAttr(el, 'component', 1),
    protocol: attr(el, 'protocol', 'udp').toLowerCase(),
    priority: intAttr(el, 'priority'),
    ip: attr(el, 'ip'),
    port: intAttr(el, 'port'),
    type: attr(el, 'type', 'host'),
    generation: intAttr(el, 'generation', 0),
  };
  if (!cand.ip) throw new JingleError('<candidate> lacks an ip');
  const relAddr = attr(el, 'rel-addr');
  if (relAddr) {
    cand.relAddr = relAddr;
    cand.relPort = intAttr(el, 'rel-port', 0);
  }
  const tcptype = attr(el, 'tcptype');
  if (tcptype) cand.tcptype = tcptype;
  return cand;
}

/** Every remote source of a session or source-add/remove, with the content it came in. */
export function sourcesOf(session) {
  const out = [];
  for (const content of session.contents) {
    const desc = content.description;
    if (!desc) continue;
    for (const source of desc.sources) out.push({ ...source, media: desc.media });
  }
  return out;
}

/** Every ssrc-group of a session or source-add/remove, with the media it came in. */
export function ssrcGroupsOf(session) {
  const out = [];
  for (const content of session.contents) {
    const desc = content.description;
    if (!desc) continue;
    for (const group of desc.ssrcGroups) out.push({ ...group, media: desc.media });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Building: append the model's children to a Strophe builder positioned at the <jingle> element.

/** Append `<content>` elements (and the BUNDLE group) of `contents` to `builder` at <jingle>. */
export function appendContents(builder, contents, { bundle = [] } = {}) {
  for (const content of contents) {
    const contentAttrs = { creator: content.creator ?? 'responder', name: content.name };
    if (content.senders) contentAttrs.senders = content.senders;
    builder.c('content', contentAttrs);
    if (content.description) appendDescription(builder, content.description);
    if (content.transport) appendTransport(builder, content.transport);
    builder.up();
  }
  if (bundle.length) {
    builder.c('group', { xmlns: NS.GROUPING, semantics: 'BUNDLE' });
    for (const name of bundle) builder.c('content', { name }).up();
    builder.up();
  }
  return builder;
}

function appendDescription(builder, desc) {
  builder.c('description', { xmlns: NS.RTP, media: desc.media });
  for (const pt of desc.payloadTypes ?? []) {
    const ptAttrs = { id: pt.id, name: pt.name, clockrate: pt.clockrate };
    if (pt.channels) ptAttrs.channels = pt.channels;
    builder.c('payload-type', ptAttrs);
    for (const [name, value] of Object.entries(pt.parameters ?? {})) builder.c('parameter', name ? { name, value } : { value }).up();
    for (const fb of pt.rtcpFb ?? []) {
      builder.c('rtcp-fb', fb.subtype ? { xmlns: NS.RTCP_FB, type: fb.type, subtype: fb.subtype } : { xmlns: NS.RTCP_FB, type: fb.type }).up();
    }
    builder.up();
  }
  for (const ext of desc.hdrExts ?? []) builder.c('rtp-hdrext', { xmlns: NS.HDREXT, id: ext.id, uri: ext.uri }).up();
  if (desc.extmapAllowMixed) builder.c('extmap-allow-mixed', { xmlns: NS.HDREXT }).up();
  for (const source of desc.sources ?? []) {
    const sourceAttrs = { xmlns: NS.SSMA, ssrc: source.ssrc };
    if (source.name) sourceAttrs.name = source.name;
    if (source.videoType) sourceAttrs.videoType = source.videoType;
    builder.c('source', sourceAttrs);
    if (source.msid) builder.c('parameter', { name: 'msid', value: source.msid }).up();
    if (source.owner) builder.c('ssrc-info', { xmlns: NS.JITMEET, owner: source.owner }).up();
    builder.up();
  }
  for (const group of desc.ssrcGroups ?? []) {
    builder.c('ssrc-group', { xmlns: NS.SSMA, semantics: group.semantics });
    for (const ssrc of group.ssrcs) builder.c('source', { ssrc }).up();
    builder.up();
  }
  if (desc.rtcpMux) builder.c('rtcp-mux').up();
  builder.up();
}

function appendTransport(builder, transport) {
  const tAttrs = { xmlns: NS.ICE_UDP };
  if (transport.ufrag) tAttrs.ufrag = transport.ufrag;
  if (transport.pwd) tAttrs.pwd = transport.pwd;
  builder.c('transport', tAttrs);
  for (const fp of transport.fingerprints ?? []) {
    const fpAttrs = { xmlns: NS.DTLS, hash: fp.hash };
    if (fp.setup) fpAttrs.setup = fp.setup;
    builder.c('fingerprint', fpAttrs).t(fp.value).up();
  }
  for (const c of transport.candidates ?? []) {
    const cAttrs = {
      component: c.component, foundation: c.foundation, generation: c.generation ?? 0,
      id: c.id ?? `${c.foundation}-${c.component}-${c.port}`, ip: c.ip, network: 0, port: c.port,
      priority: c.priority, protocol: c.protocol, type: c.type,
    };
    if (c.relAddr) Object.assign(cAttrs, { 'rel-addr': c.relAddr, 'rel-port': c.relPort });
    if (c.tcptype) cAttrs.tcptype = c.tcptype;
    builder.c('candidate', cAttrs).up();
  }
  if (transport.sctpPort) {
    builder.c('sctpmap', { xmlns: NS.SCTP, number: transport.sctpPort, protocol: 'webrtc-datachannel', streams: 1024 }).up();
  }
  if (transport.rtcpMux) builder.c('rtcp-mux').up();
  builder.up();
}
