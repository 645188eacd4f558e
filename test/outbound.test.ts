// The outbound-request guard: special-use addresses refused unless the exact origin is allowed,
// no redirects followed, bounded responses.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createOutbound, isPublicAddress, OutboundRefusedError } from '../src/security/outbound.ts';

let server: http.Server;
let origin: string;

before(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/redirect') return res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end();
    if (req.url === '/big') return res.end('x'.repeat(4096));
    res.end('hello');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server.close());

describe('outbound requests', () => {
  test('classifies addresses', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '0.0.0.0']) assert.equal(isPublicAddress(a), false, a);
    for (const a of ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946']) assert.equal(isPublicAddress(a), true, a);
  });

  test('loopback, private and metadata addresses are refused by default, by literal and by name', async () => {
    const fetchOut = createOutbound([]);
    for (const url of [`${origin}/`, 'http://localhost:9/', 'http://[::1]:9/', 'http://169.254.169.254/latest', 'ftp://example.com/', 'http://user:pw@example.com/']) {
      await assert.rejects(fetchOut(url), OutboundRefusedError, url);
    }
  });

  test('an allowed origin is reached; redirects are not followed; responses are bounded', async () => {
    const fetchOut = createOutbound([origin]);
    assert.equal((await fetchOut(`${origin}/`)).body, 'hello');
    const redirected = await fetchOut(`${origin}/redirect`);
    assert.equal(redirected.status, 302, 'the redirect is returned, not followed');
    await assert.rejects(fetchOut(`${origin}/big`, { maxBytes: 100 }), /larger than 100 bytes/);
    // Only that exact origin: another port on the same host is still refused.
    await assert.rejects(createOutbound([origin])('http://127.0.0.1:9/'), OutboundRefusedError);
  });
});
