// What the performance work must not break: cached clients still follow every change made by
// the CLI (in this process through the embedded bridge, in others through LISTEN/NOTIFY), and
// a flood of password sign-ins is refused fast with 503 + Retry-After instead of queueing.
import fs from 'node:fs';
import os from 'node:os';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { Browser, asPage, asRedirect, type Page } from '../helpers/browser.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { REDIRECT, insecure } from '../helpers/rp.ts';

const pg = Boolean(process.env.DATABASE_URL);

async function clientCredentials(base: string, id: string, secret: string): Promise<Response> {
  return fetch(`${base}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  });
}

/** Polls until `check` holds, for at most `ms`; returns how long it took. */
async function within(ms: number, check: () => Promise<boolean>, what: string): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - started;
}

describe('password hashing runs below the event loop', { skip: process.platform === 'linux' ? false : 'thread nice values are Linux only' }, () => {
  const niceOfWorkers = (pid: number) =>
    fs
      .readdirSync(`/proc/${pid}/task`)
      .map((tid) => ({ comm: fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(), stat: fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8') }))
      .filter((t) => t.comm === 'libuv-worker')
      // Field 19 of stat is the nice value; the fields after the command name start at 3.
      .map((t) => Number(t.stat.slice(t.stat.lastIndexOf(')') + 2).split(' ')[16]));

  test('the server\'s libuv worker threads run at ARGON2_NICE, the event loop does not', async () => {
    const server = await startServer({ ARGON2_NICE: '7' });
    try {
      const pid = server.child().pid!;
      const nices = await (async () => {
        for (let i = 0; i < 50; i++) {
          const found = niceOfWorkers(pid);
          if (found.length && found.every((n) => n === 7)) return found;
          await new Promise((r) => setTimeout(r, 100));
        }
        return niceOfWorkers(pid);
      })();
      assert.ok(nices.length >= 1, 'the pool has threads');
      assert.deepEqual(nices, nices.map(() => 7));
      assert.equal(os.getPriority(pid), 0, 'the main thread keeps its priority');
    } finally {
      await server.stop();
    }
  });
});

describe('cached clients follow changes', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => server?.stop());

  test('a client deleted by the CLI gets no more tokens, within a second', async () => {
    const created = (await server.cli(['clients', 'create', '--id', 'svc', '--grant-type', 'client_credentials'])) as { client_secret: string };
    // Served twice: the second answer comes from the cache.
    for (let i = 0; i < 2; i++) assert.equal((await clientCredentials(server.url, 'svc', created.client_secret)).status, 200);
    await server.cli(['clients', 'delete', 'svc']);
    await within(1000, async () => (await clientCredentials(server.url, 'svc', created.client_secret)).status === 401, 'deleted client refused');
  });

  test('a client created again under the same id is served with its new secret (no stale entry)', async () => {
    const first = (await server.cli(['clients', 'create', '--id', 'again', '--grant-type', 'client_credentials'])) as { client_secret: string };
    assert.equal((await clientCredentials(server.url, 'again', first.client_secret)).status, 200);
    await server.cli(['clients', 'delete', 'again']);
    const second = (await server.cli(['clients', 'create', '--id', 'again', '--grant-type', 'client_credentials'])) as { client_secret: string };
    await within(1000, async () => (await clientCredentials(server.url, 'again', second.client_secret)).status === 200, 'new secret accepted');
    assert.equal((await clientCredentials(server.url, 'again', first.client_secret)).status, 401, 'the old secret is refused');
  });

  test('another instance on the same database hears the change (LISTEN/NOTIFY)', { skip: pg ? false : 'PostgreSQL only: one process owns the embedded database' }, async () => {
    const other = await server.startAnother();
    try {
      const created = (await server.cli(['clients', 'create', '--id', 'shared', '--grant-type', 'client_credentials'])) as { client_secret: string };
      for (const base of [server.url, other.url]) assert.equal((await clientCredentials(base, 'shared', created.client_secret)).status, 200);
      // The CLI is a process of its own: the servers learn of the change only through the trigger's notification.
      const res = await other.cliRaw(['clients', 'delete', 'shared']);
      assert.equal(res.code, 0, res.stderr);
      for (const base of [server.url, other.url]) {
        await within(1000, async () => (await clientCredentials(base, 'shared', created.client_secret)).status === 401, `${base} refuses the deleted client`);
      }
    } finally {
      await other.stop();
    }
  });
});

describe('a flood of password sign-ins', { skip: pg ? false : 'PostgreSQL only: needs requests truly in flight at once' }, () => {
  let server: TestServer;
  let rp: oidc.Configuration;
  const USER = { email: 'flood@example.com', password: 'correct pebble password' };

  before(async () => {
    // One hash at a time, one waiting, and slow hashes: a burst of 12 must overflow.
    // Budgets out of the way: this is about the pool, not the brute-force limits.
    server = await startServer({ ARGON2_MAX_CONCURRENCY: '1', ARGON2_MAX_QUEUE: '1', ARGON2_MEMORY_KIB: '65536', ARGON2_TIME_COST: '3', LOGIN_RATE_LIMIT_PER_ACCOUNT: '1000', LOGIN_RATE_LIMIT_PER_IP: '1000' });
    await server.cli(['users', 'create', '--email', USER.email, '--password', USER.password]);
    const created = (await server.cli(['clients', 'create', '--id', 'rp', '--first-party', '--redirect-uri', REDIRECT])) as { client_secret: string };
    rp = await oidc.discovery(new URL(server.issuer), 'rp', created.client_secret, undefined, insecure);
  });
  after(async () => server?.stop());

  async function loginPage(browser: Browser): Promise<Page> {
    const url = oidc.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT,
      scope: 'openid',
      code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    });
    return asPage(await browser.get(url.href));
  }

  test('excess sign-ins get a fast 503 page with Retry-After; the rest succeed; the refused can retry', async () => {
    const browsers = Array.from({ length: 12 }, () => new Browser());
    const pages = await Promise.all(browsers.map(loginPage));
    const outcomes = await Promise.all(
      browsers.map(async (browser, i) => {
        const started = Date.now();
        const result = await browser.submit(pages[i]!, 'form[action$="/login"]', USER);
        return { result, ms: Date.now() - started };
      }),
    );
    const refused = outcomes.filter((o) => 'status' in o.result && o.result.status === 503);
    const signedIn = outcomes.filter((o) => !('status' in o.result));
    assert.ok(refused.length > 0, 'some sign-ins were refused');
    assert.ok(signedIn.length >= 2, `at least the running and the queued one finished (${signedIn.length})`);
    const other = outcomes.filter((o) => 'status' in o.result && o.result.status !== 503).map((o) => asPage(o.result));
    assert.equal(refused.length + signedIn.length, 12, `nothing else happened: ${other.map((p) => `${p.status} ${p.url} ${p.doc.querySelector('[role=alert]')?.text.trim() ?? ''}`).join('; ')}`);
    const slowest = Math.max(...signedIn.map((o) => o.ms));
    for (const { result, ms } of refused) {
      const page = asPage(result);
      assert.ok(Number(page.headers.get('retry-after')) >= 1, 'Retry-After');
      assert.match(page.doc.querySelector('[role=alert]')!.text, /try again in a moment/i);
      assert.ok(page.doc.querySelector('form[action$="/login"] input[name="_csrf"]'), 'the sign-in form is shown again');
      assert.ok(ms < slowest, `refused (${ms} ms) before the slowest sign-in finished (${slowest} ms)`);
    }
    // The refused browser's interaction is intact: it signs in once the burst is over.
    const i = outcomes.findIndex((o) => 'status' in o.result && o.result.status === 503);
    assert.match(asRedirect(await browsers[i]!.submit(asPage(outcomes[i]!.result), 'form[action$="/login"]', USER)), /\?code=/);
  });

  test('a program asking for JSON gets temporarily_unavailable', async () => {
    const browsers = Array.from({ length: 8 }, () => new Browser());
    const pages = await Promise.all(browsers.map(loginPage));
    const responses = await Promise.all(
      browsers.map(async (browser, i) => {
        const form = pages[i]!.doc.querySelector('form[action$="/login"]')!;
        const body = new URLSearchParams({ _csrf: form.querySelector('input[name="_csrf"]')!.getAttribute('value')!, ...USER });
        const res = await browser.request(new URL(form.getAttribute('action')!, pages[i]!.url).toString(), { method: 'POST', body, headers: { accept: 'application/json' } });
        return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.text() };
      }),
    );
    const refused = responses.filter((r) => r.status === 503);
    assert.ok(refused.length > 0, `some refused: ${responses.map((r) => r.status).join(',')}`);
    for (const r of refused) {
      assert.equal(JSON.parse(r.body).error, 'temporarily_unavailable');
      assert.ok(Number(r.retryAfter) >= 1);
    }
  });
});
