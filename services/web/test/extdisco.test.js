import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { $iq, Strophe } from 'strophe.js';

import { appendServicesRequest, parseServices } from '../src/signalling/extdisco.js';
import { xml } from './fixtures.js';

describe('XEP-0215 external services', () => {
  it('asks for every service', () => {
    const text = Strophe.serialize(appendServicesRequest($iq({ to: 'meet.jitsi', type: 'get' })).tree());
    assert.match(text, /<services xmlns="urn:xmpp:extdisco:2"\/>/);
  });

  it('turns the answer into iceServers', () => {
    const answer = xml(`<iq xmlns='jabber:client' type='result'><services xmlns='urn:xmpp:extdisco:2'>
      <service type='stun' host='turn.example.org' port='3478' transport='udp'/>
      <service type='turn' host='turn.example.org' port='3478' transport='udp' restricted='1' username='1800003600:a@meet.jitsi' password='c2VjcmV0'/>
      <service type='turn' host='turn.example.org' port='3478' transport='tcp' restricted='1' username='1800003600:a@meet.jitsi' password='c2VjcmV0'/>
      <service type='turns' host='turn.example.org' port='5349' transport='tcp' restricted='1' username='u' password='p'/>
      <service type='turn' host='no-credentials.example.org' port='3478' transport='udp'/>
      <service type='turn' host='bad host/x' port='3478' transport='udp' username='u' password='p'/>
      <service type='ftp' host='ftp.example.org' port='21'/>
    </services></iq>`);
    assert.deepEqual(parseServices(answer), [
      { urls: 'stun:turn.example.org:3478' },
      { urls: 'turn:turn.example.org:3478?transport=udp', username: '1800003600:a@meet.jitsi', credential: 'c2VjcmV0' },
      { urls: 'turn:turn.example.org:3478?transport=tcp', username: '1800003600:a@meet.jitsi', credential: 'c2VjcmV0' },
      { urls: 'turns:turn.example.org:5349?transport=tcp', username: 'u', credential: 'p' },
    ]);
  });

  it('gives nothing for an error or an empty answer', () => {
    assert.deepEqual(parseServices(xml("<iq xmlns='jabber:client' type='error'/>")), []);
  });
});
