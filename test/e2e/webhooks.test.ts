// Operator webhooks: a loopback receiver (allowed by OUTBOUND_ALLOW_ORIGINS, nothing else is)
// subscribed to login.failed gets a signed JSON delivery for a failed sign-in; a 500 is retried
// with the same delivery id; both signatures verify with the secret; the body carries the public
// event name and the subject, never the address, IP or user agent; an unsubscribed event is not
// sent; an operator-chosen secret from stdin signs account.locked; a webhook on a loopback
// origin that is not allowed is refused by the outbound guard; list and remove.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as oidc from 'openid-client';
import { Browser, asPage } from '../helpers/browser.ts';
import { REDIRECT, authorize, insecure, type Credentials } from '../helpers/rp.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.ts');
const UA = 'Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0';

interface Delivery {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  status: number;
}

/** The operator's endpoint: records each delivery; `failNext` answers 500 that many times. */
class Receiver {
  received: Delivery[] = [];
  failNext = 0;
  origin = '';
  private server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const status = this.failNext > 0 ? (this.failNext--, 500) : 200;
      this.received.push({ path: req.url ?? '', headers: req.headers, body, status });
      res.writeHead(status).end();
    });
  });
  async start() {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  stop() {
    return new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
  async waitFor(match: (d: Delivery) => boolean, timeoutMs = 15_000): Promise<Delivery> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const found = this.received.find(match);
      if (found) return found;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no matching delivery; received ${JSON.stringify(this.received.map((d) => [d.path, d.status, d.body]))}`);
  }
}

/** What a receiver does with `Latchkey-Signature: t=…, v1=…` (Stripe's scheme). */
function verifyLatchkeySignature(header: string | undefined, body: string, secret: string): boolean {
  const parts = Object.fromEntries((header ?? '').split(',').map((p) => p.trim().split('=') as [string, string]));
  if (!parts.t || !parts.v1) return false;
  if (Math.abs(Date.now() / 1000 - Number(parts.t)) > 300) return false;
  const expected = crypto.createHmac('sha256', secret).update(`${parts.t}.${body}`).digest('hex');
  return crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(parts.v1.padEnd(expected.length).slice(0, expected.length)));
}

/** Standard Webhooks: v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>, key = base64 after whsec_. */
function verifyStandardSignature(d: Delivery, secret: string): boolean {
  const key = secret.startsWith('whsec_') ? Buffer.from(secret.slice(6), 'base64') : Buffer.from(secret);
  const expected = crypto.createHmac('sha256', key).update(`${d.headers['webhook-id']}.${d.headers['webhook-timestamp']}.${d.body}`).digest('base64');
  return String(d.headers['webhook-signature']).split(' ').includes(`v1,${expected}`);
}

let server: TestServer;
let receiver: Receiver;
let rp: oidc.Configuration;
const alice: Credentials = { email: 'alice@example.com', password: 'correct amber password' };
let aliceId: string;
let secret: string;
let hookId: string;
let lockedHookId: string;

async function failedSignIn(email: string) {
  const url = oidc.buildAuthorizationUrl(rp, {
    redirect_uri: REDIRECT,
    scope: 'openid',
    code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
  });
  const browser = new Browser(UA);
  const page = asPage(await browser.get(url.href));
  return asPage(await browser.submit(page, 'form[action$="/login"]', { email, password: 'a wrong password' }));
}

before(async () => {
  receiver = new Receiver();
  await receiver.start();
  server = await startServer({
    OUTBOUND_ALLOW_ORIGINS: receiver.origin,
    EVENTS_POLL_INTERVAL: '1',
    EVENTS_RETRY_BASE: '1',
    LOGIN_RATE_LIMIT_PER_ACCOUNT: '3',
  });
  aliceId = ((await server.cli(['users', 'create', '--email', alice.email, '--password', alice.password])) as { id: string }).id;
  const created = (await server.cli(['clients', 'create', '--id', 'rp', '--first-party', '--redirect-uri', REDIRECT])) as { client_secret: string };
  rp = await oidc.discovery(new URL(server.issuer), 'rp', created.client_secret, undefined, insecure);
});
after(async () => {
  await server?.stop();
  await receiver?.stop();
});

describe('operator webhooks', () => {
  test('webhooks add prints the secret once; list shows the hook without it', async () => {
    const added = (await server.cli(['webhooks', 'add', '--url', `${receiver.origin}/hooks/failed`, '--events', 'login.failed'])) as { id: string; secret: string; events: string[] };
    assert.match(added.secret, /^whsec_[A-Za-z0-9+/=]{40,}$/);
    assert.deepEqual(added.events, ['login.failed']);
    secret = added.secret;
    hookId = added.id;
    const list = (await server.cli(['webhooks', 'list'])) as Record<string, unknown>[];
    assert.deepEqual(list.map((h) => [h.id, h.url]), [[hookId, `${receiver.origin}/hooks/failed`]]);
    assert.ok(!JSON.stringify(list).includes(secret.slice(6)), 'the secret is not listed');
    const bad = await server.cliRaw(['webhooks', 'add', '--url', 'ftp://example.com/x', '--json']);
    assert.notEqual(bad.code, 0);
  });

  test('a failed sign-in is delivered signed; a 500 is retried with the same id; the body holds no personal data', async () => {
    await authorize(rp, new Browser(UA), alice); // login.succeeded: not subscribed, never sent
    receiver.failNext = 1;
    assert.equal((await failedSignIn(alice.email)).status, 401);
    const ok = await receiver.waitFor((d) => d.path === '/hooks/failed' && d.status === 200);
    const attempts = receiver.received.filter((d) => d.headers['webhook-id'] === ok.headers['webhook-id']);
    assert.deepEqual(attempts.map((d) => d.status), [500, 200], 'the first answer was 500; the retry was accepted');
    assert.equal(ok.headers['content-type'], 'application/json');

    assert.ok(verifyLatchkeySignature(ok.headers['latchkey-signature'] as string, ok.body, secret), 'Latchkey-Signature verifies with the secret');
    assert.ok(!verifyLatchkeySignature(ok.headers['latchkey-signature'] as string, ok.body, 'whsec_another'), 'and not with another');
    assert.ok(!verifyLatchkeySignature(ok.headers['latchkey-signature'] as string, ok.body.replace('password', 'passkey'), secret), 'an edited body fails');
    assert.ok(verifyStandardSignature(ok, secret), 'the Standard Webhooks signature verifies too');

    const payload = JSON.parse(ok.body) as { id: string; type: string; version: number; created_at: string; data: Record<string, unknown> };
    assert.equal(payload.type, 'login.failed');
    assert.equal(payload.version, 1);
    assert.equal(payload.id, ok.headers['webhook-id']);
    assert.equal(payload.data.subject, aliceId);
    assert.equal(payload.data.client_id, 'rp');
    assert.equal(payload.data.method, 'password');
    assert.ok(Math.abs(Date.parse(payload.created_at) - Date.now()) < 60_000);
    for (const personal of [alice.email, '127.0.0.1', 'Firefox', 'emailRef']) assert.ok(!ok.body.includes(personal), `no ${personal} in the body`);
    assert.ok(receiver.received.every((d) => (JSON.parse(d.body) as { type: string }).type === 'login.failed'), 'only subscribed events');
  });

  test('an operator secret from stdin signs account.locked when the account budget is spent', async () => {
    const chosen = 'an operator chosen secret 0123456789';
    const run = spawnSync(process.execPath, [MAIN, 'webhooks', 'add', '--url', `${receiver.origin}/hooks/locked`, '--events', 'account.locked', '--secret-from-stdin', '--json'], {
      env: { ...process.env, ...server.env },
      input: `${chosen}\n`,
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stderr);
    const added = JSON.parse(run.stdout) as { id: string; secret: string };
    assert.equal(added.secret, chosen);
    lockedHookId = added.id;
    // One failure spent already (previous test); two more spend the budget of 3.
    for (let i = 0; i < 2; i++) assert.equal((await failedSignIn(alice.email)).status, 401);
    const locked = await receiver.waitFor((d) => d.path === '/hooks/locked' && d.status === 200);
    assert.ok(verifyLatchkeySignature(locked.headers['latchkey-signature'] as string, locked.body, chosen));
    const payload = JSON.parse(locked.body) as { type: string; data: Record<string, unknown> };
    assert.equal(payload.type, 'account.locked');
    assert.equal(payload.data.subject, aliceId);
    assert.equal(receiver.received.filter((d) => d.path === '/hooks/locked').length, 1, 'locked once, not on every failure');
  });

  test('the outbound guard refuses a loopback origin that is not allowed; remove stops deliveries', async () => {
    const port = Number(new URL(receiver.origin).port);
    const other = (await server.cli(['webhooks', 'add', '--url', `http://127.0.0.1:${port === 65535 ? 1 : port + 1}/x`, '--events', 'login.failed'])) as { id: string };
    assert.deepEqual(await server.cli(['webhooks', 'remove', hookId]), { id: hookId, removed: true });
    const before = receiver.received.length;
    const logsBefore = server.logs.length;
    await failedSignIn('nobody@example.com');
    const retryLine = () => server.logs.slice(logsBefore).join('').split('\n').find((l) => l.includes('"webhook.retry"'));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !retryLine()) await new Promise((r) => setTimeout(r, 100));
    const retry = retryLine();
    assert.match(retry ?? '', /private or special-use address/, 'refused by the guard, not connected to');
    assert.equal(receiver.received.length, before, 'the removed hook got nothing');
    const list = (await server.cli(['webhooks', 'list'])) as { id: string }[];
    assert.deepEqual(list.map((h) => h.id).sort(), [lockedHookId, other.id].sort());
    assert.equal((await server.cliRaw(['webhooks', 'remove', hookId, '--json'])).code, 1, 'removing it again fails');
  });
});
