// Stanzas and SDP shaped like the real ones: a session-initiate as jicofo's JingleOfferFactory
// builds it (docs/protocols.md#join), and an answer as Chrome produces it for that offer.

export const ROOM = 'standup@muc.meet.jitsi';
export const ALICE = `${ROOM}/a1b2c3d4`;
export const BOB = `${ROOM}/b0b0b0b0`;
export const ME = `${ROOM}/me000001`;


const transport = `
  <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='2f1a' pwd='4s8rjl3kq5n0hhm9bfg0g1h2i3'>
    <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>8F:2B:3C:AA:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:1A:1B:1C</fingerprint>
    <candidate component='1' foundation='1' generation='0' id='c1' ip='127.0.0.1' network='0' port='10000' priority='2130706431' protocol='udp' type='host'/>
    <candidate component='1' foundation='2' generation='0' id='c2' ip='203.0.113.7' network='0' port='10000' priority='1694498815' protocol='udp' type='srflx' rel-addr='127.0.0.1' rel-port='10000'/>
    <web-socket xmlns='http://jitsi.org/protocol/colibri' url='ws://127.0.0.1:8000/colibri-ws/jvb1/c0ffee/me000001?pwd=4s8rjl3kq5n0hhm9bfg0g1h2i3'/>
    <ice-lite xmlns='http://jitsi.org/protocol/colibri'/>
    <rtcp-mux/>
  </transport>`;

export const SESSION_INITIATE = `
<iq xmlns='jabber:client' from='${ROOM}/focus' to='guest@meet.jitsi/r1' type='set' id='j1'>
 <jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' initiator='focus@auth.meet.jitsi/focus' sid='6d4k2j'>
  <content creator='initiator' name='audio' senders='both'>
   <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
    <payload-type id='111' name='opus' clockrate='48000' channels='2'>
      <parameter name='minptime' value='10'/>
      <parameter name='useinbandfec' value='1'/>
      <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='transport-cc'/>
    </payload-type>
    <payload-type id='126' name='telephone-event' clockrate='8000'/>
    <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='1' uri='urn:ietf:params:rtp-hdrext:ssrc-audio-level'/>
    <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='5' uri='http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01'/>
    <extmap-allow-mixed xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0'/>
    <rtcp-mux/>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1111' name='a1b2c3d4-a0'>
      <parameter name='msid' value='a1b2c3d4-audio-1 audio-track-1'/>
      <ssrc-info xmlns='http://jitsi.org/jitmeet' owner='${ALICE}'/>
    </source>
   </description>
   ${transport}
  </content>
  <content creator='initiator' name='video' senders='both'>
   <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>
    <payload-type id='100' name='VP8' clockrate='90000'>
      <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='ccm' subtype='fir'/>
      <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack'/>
      <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack' subtype='pli'/>
      <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='transport-cc'/>
    </payload-type>
    <payload-type id='96' name='rtx' clockrate='90000'>
      <parameter name='apt' value='100'/>
    </payload-type>
    <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='3' uri='http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time'/>
    <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='5' uri='http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01'/>
    <rtcp-mux/>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2221' name='a1b2c3d4-v0' videoType='camera'>
      <ssrc-info xmlns='http://jitsi.org/jitmeet' owner='${ALICE}'/>
    </source>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2222' name='a1b2c3d4-v0'>
      <ssrc-info xmlns='http://jitsi.org/jitmeet' owner='${ALICE}'/>
    </source>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2223' name='a1b2c3d4-v0'>
      <ssrc-info xmlns='http://jitsi.org/jitmeet' owner='${ALICE}'/>
    </source>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2231' name='a1b2c3d4-v0'>
      <ssrc-info xmlns='http://jitsi.org/jitmeet' owner='${ALICE}'/>
    </source>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2232' name='a1b2c3d4-v0'>
      <ssrc-info xmlns='http://jitsi.org/jitmeet' owner='${ALICE}'/>
    </source>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2233' name='a1b2c3d4-v0'>
      <ssrc-info xmlns='http://jitsi.org/jitmeet' owner='${ALICE}'/>
    </source>
    <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='SIM'>
      <source ssrc='2221'/><source ssrc='2222'/><source ssrc='2223'/>
    </ssrc-group>
    <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
      <source ssrc='2221'/><source ssrc='2231'/>
    </ssrc-group>
    <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
      <source ssrc='2222'/><source ssrc='2232'/>
    </ssrc-group>
    <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
      <source ssrc='2223'/><source ssrc='2233'/>
    </ssrc-group>
   </description>
   ${transport}
  </content>
  <group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'>
    <content name='audio'/><content name='video'/>
  </group>
 </jingle>
</iq>`;

export const SOURCE_ADD_BOB = `
<iq xmlns='jabber:client' type='set' id='j2'>
 <jingle xmlns='urn:xmpp:jingle:1' action='source-add' sid='6d4k2j'>
  <content name='audio'>
   <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='3331' name='b0b0b0b0-a0'>
      <ssrc-info xmlns='http://jitsi.org/jitmeet' owner='${BOB}'/>
    </source>
   </description>
  </content>
  <content name='video'>
   <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='4441' name='b0b0b0b0-v0'>
      <ssrc-info xmlns='http://jitsi.org/jitmeet' owner='${BOB}'/>
    </source>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='4442' name='b0b0b0b0-v0'>
      <ssrc-info xmlns='http://jitsi.org/jitmeet' owner='${BOB}'/>
    </source>
    <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
      <source ssrc='4441'/><source ssrc='4442'/>
    </ssrc-group>
   </description>
  </content>
 </jingle>
</iq>`;

export const SOURCE_REMOVE_ALICE = `
<iq xmlns='jabber:client' type='set' id='j3'>
 <jingle xmlns='urn:xmpp:jingle:1' action='source-remove' sid='6d4k2j'>
  <content name='audio'>
   <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1111'/>
   </description>
  </content>
  <content name='video'>
   <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2221'/><source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2222'/>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2223'/><source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2231'/>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2232'/><source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2233'/>
   </description>
  </content>
 </jingle>
</iq>`;

export const SESSION_TERMINATE_MOVING = `
<iq xmlns='jabber:client' type='set' id='j4'>
 <jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='6d4k2j'>
  <reason><success/><text>moving</text></reason>
 </jingle>
</iq>`;

// What Chrome answers to the offer above (base m-lines only shown in full).
export const CHROME_ANSWER = [
  'v=0',
  'o=- 4611731400430051336 2 IN IP4 127.0.0.1',
  's=-',
  't=0 0',
  'a=group:BUNDLE audio video video-0',
  'a=extmap-allow-mixed',
  'a=msid-semantic: WMS',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111 126',
  'c=IN IP4 0.0.0.0',
  'a=rtcp:9 IN IP4 0.0.0.0',
  'a=candidate:3442447574 1 udp 2122260223 127.0.0.1 51234 typ host generation 0 network-id 1',
  'a=ice-ufrag:Zq9P',
  'a=ice-pwd:h1Xo2bX8jFz5cVw6Gg7Hh8Ii',
  'a=ice-options:trickle',
  'a=fingerprint:sha-256 11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00',
  'a=setup:active',
  'a=mid:audio',
  'a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level',
  'a=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
  'a=sendonly',
  'a=msid:stream-1 track-a',
  'a=rtcp-mux',
  'a=rtpmap:111 opus/48000/2',
  'a=rtcp-fb:111 transport-cc',
  'a=fmtp:111 minptime=10;useinbandfec=1',
  'a=rtpmap:126 telephone-event/8000',
  'a=ssrc:90001 cname:abcd',
  'a=ssrc:90001 msid:stream-1 track-a',
  'm=video 9 UDP/TLS/RTP/SAVPF 100 96',
  'c=IN IP4 0.0.0.0',
  'a=rtcp:9 IN IP4 0.0.0.0',
  'a=ice-ufrag:Zq9P',
  'a=ice-pwd:h1Xo2bX8jFz5cVw6Gg7Hh8Ii',
  'a=ice-options:trickle',
  'a=fingerprint:sha-256 11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00',
  'a=setup:active',
  'a=mid:video',
  'a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
  'a=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
  'a=sendonly',
  'a=msid:stream-1 track-v',
  'a=rtcp-mux',
  'a=rtpmap:100 VP8/90000',
  'a=rtcp-fb:100 ccm fir',
  'a=rtcp-fb:100 nack',
  'a=rtcp-fb:100 nack pli',
  'a=rtcp-fb:100 transport-cc',
  'a=rtpmap:96 rtx/90000',
  'a=fmtp:96 apt=100',
  'a=ssrc-group:FID 80001 80002',
  'a=ssrc:80001 cname:abcd',
  'a=ssrc:80001 msid:stream-1 track-v',
  'a=ssrc:80002 cname:abcd',
  'a=ssrc:80002 msid:stream-1 track-v',
  'm=video 9 UDP/TLS/RTP/SAVPF 100 96',
  'c=IN IP4 0.0.0.0',
  'a=ice-ufrag:Zq9P',
  'a=ice-pwd:h1Xo2bX8jFz5cVw6Gg7Hh8Ii',
  'a=fingerprint:sha-256 11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00',
  'a=setup:active',
  'a=mid:video-0',
  'a=recvonly',
  'a=rtcp-mux',
  'a=rtpmap:100 VP8/90000',
  'a=rtpmap:96 rtx/90000',
  'a=fmtp:96 apt=100',
  '',
].join('\r\n');
