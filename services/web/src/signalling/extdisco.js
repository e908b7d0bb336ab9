// XEP-0215 external services (urn:xmpp:extdisco:2): the STUN and TURN servers the XMPP server
// hands out, with time-limited TURN credentials, turned into RTCPeerConnection iceServers the way
// lib-jitsi-meet does (stun:host:port, turn:host:port?transport=udp|tcp, turns:host:port?transport=tcp).
// No I/O.

import { attr, child, children } from './xml.js';

export const EXTDISCO_NS = 'urn:xmpp:extdisco:2';

/** The `<services>` IQ payload (all types). */
export function appendServicesRequest(builder) {
  return builder.c('services', { xmlns: EXTDISCO_NS }).up();
}

function hostPart(host) {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** The server's `<services>` answer as RTCIceServer objects; unusable entries are skipped. */
export function parseServices(iq) {
  const out = [];
  const services = child(iq, 'services', EXTDISCO_NS);
  if (!services) return out;
  for (const svc of children(services, 'service', EXTDISCO_NS)) {
    const type = attr(svc, 'type');
    const host = attr(svc, 'host');
    const port = Number(attr(svc, 'port') ?? (type === 'turns' ? 5349 : 3478));
    const transport = attr(svc, 'transport');
    if (!host || !/^[A-Za-z0-9.:[\]-]+$/.test(host) || !(port > 0 && port < 65536)) continue;
    if (type === 'stun') {
      out.push({ urls: `stun:${hostPart(host)}:${port}` });
    } else if (type === 'turn' || type === 'turns') {
      const username = attr(svc, 'username');
      const credential = attr(svc, 'password');
      if (!username || !credential) continue;
      const proto = type === 'turns' ? 'tcp' : (transport === 'tcp' ? 'tcp' : 'udp');
      out.push({ urls: `${type}:${hostPart(host)}:${port}?transport=${proto}`, username, credential });
    }
  }
  return out;
}
