import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DOMParser } from '@xmldom/xmldom';
import sdpTransform from 'sdp-transform';
import { $iq, Strophe } from 'strophe.js';

import { appendContents, NS, parseJingle } from '../src/signalling/jingle.js';
import { answerToContents, RemoteOffer } from '../src/signalling/sdp.js';
import { CHROME_ANSWER, ME, SESSION_INITIATE, xml } from './fixtures.js';

// The focus with enable-sctp adds a `data` content: the bridge's transport with an sctpmap.
const DATA_CONTENT = `
  <content creator='initiator' name='data' senders='both'>
   <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='application'/>
   <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='2f1a' pwd='4s8rjl3kq5n0hhm9bfg0g1h2i3'>
    <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>8F:2B:3C:AA:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:1A:1B:1C</fingerprint>
    <sctpmap xmlns='urn:xmpp:jingle:transports:dtls-sctp:1' number='5000' protocol='webrtc-datachannel' streams='1024'/>
   </transport>
  </content>
  <group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'>`;

const WITH_DATA = SESSION_INITIATE.replace(
  "<group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'>", DATA_CONTENT,
).replace("<content name='video'/>", "<content name='video'/><content name='data'/>");

// Chrome's answer to that offer: the base m-lines plus the data channel's.
const ANSWER_WITH_DATA = CHROME_ANSWER.replace('a=group:BUNDLE audio video video-0', 'a=group:BUNDLE audio video data video-0')
  .replace('m=video 9 UDP/TLS/RTP/SAVPF 100 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:Zq9P', [
    'm=application 9 UDP/DTLS/SCTP webrtc-datachannel',
    'c=IN IP4 0.0.0.0',
    'a=ice-ufrag:Zq9P',
    'a=ice-pwd:h1Xo2bX8jFz5cVw6Gg7Hh8Ii',
    'a=fingerprint:sha-256 11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00',
    'a=setup:active',
    'a=mid:data',
    'a=sctp-port:5000',
    'a=max-message-size:262144',
    'm=video 9 UDP/TLS/RTP/SAVPF 100 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:Zq9P',
  ].join('\r\n'));

describe('the bridge data channel (focus enable-sctp)', () => {
  it('reads the sctpmap of the data content', () => {
    const data = parseJingle(xml(WITH_DATA)).contents.find((c) => c.name === 'data');
    assert.equal(data.transport.sctpPort, 5000);
    assert.equal(parseJingle(xml(SESSION_INITIATE)).contents[0].transport.sctpPort, undefined);
  });

  it('offers the browser an application m-line after the base ones, in the BUNDLE', () => {
    const offer = new RemoteOffer(parseJingle(xml(WITH_DATA)), { localOwner: ME });
    assert.deepEqual(offer.answeredContents, ['audio', 'video', 'data']);
    const sdp = sdpTransform.parse(offer.toSdp());
    assert.deepEqual(sdp.media.slice(0, 3).map((m) => `${m.type}:${m.mid}`), ['audio:audio', 'video:video', 'application:data']);
    const app = sdp.media[2];
    assert.equal(app.protocol, 'UDP/DTLS/SCTP');
    assert.equal(String(app.payloads), 'webrtc-datachannel');
    assert.equal(app.sctpPort, 5000);
    assert.equal(app.iceUfrag, '2f1a');
    assert.ok(sdp.groups[0].mids.split(' ').includes('data'));
    // the remote tracks come after it, so its place never changes on renegotiation
    assert.ok(sdp.media.slice(3).every((m) => m.type !== 'application'));
  });

  it('has no application m-line without the data content', () => {
    const offer = new RemoteOffer(parseJingle(xml(SESSION_INITIATE)), { localOwner: ME });
    assert.deepEqual(offer.answeredContents, ['audio', 'video']);
    assert.ok(!offer.toSdp().includes('m=application'));
  });

  it('answers with a data content carrying the sctpmap, which round-trips through Jingle', () => {
    const contents = answerToContents(ANSWER_WITH_DATA, { contentNames: ['audio', 'video', 'data'], owner: ME, endpointId: 'me000001' });
    assert.deepEqual(contents.map((c) => c.name), ['audio', 'video', 'data']);
    const data = contents[2];
    assert.equal(data.description, undefined);
    assert.equal(data.transport.sctpPort, 5000);
    assert.equal(data.transport.ufrag, 'Zq9P');
    const iq = $iq({ to: 'standup@muc.meet.jitsi/focus', type: 'set' })
      .c('jingle', { xmlns: NS.JINGLE, action: 'session-accept', sid: '6d4k2j' });
    appendContents(iq, contents, { bundle: contents.map((c) => c.name) });
    const back = parseJingle(new DOMParser().parseFromString(Strophe.serialize(iq.tree()), 'text/xml').documentElement);
    const parsed = back.contents.find((c) => c.name === 'data');
    assert.ok(parsed.sctp);
    assert.equal(parsed.transport.sctpPort, 5000);
    assert.deepEqual(back.bundle, ['audio', 'video', 'data']);
  });
});
