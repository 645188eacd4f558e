// Several server processes on one PostgreSQL database, as production runs them:
// - `latchkey serve --workers 2`: one port, two worker processes (node:cluster) that both serve,
//   a worker killed is replaced, SIGTERM to the primary stops them all, workers that cannot
//   start make the primary give up (exit 1), and the embedded database refuses more than one;
// - two instances behind one issuer with no sticky sessions, as a round-robin load balancer
//   sends a browser: a sign-in split between them, a refresh token rotated on one and replayed
//   on the other (inside and after REFRESH_REUSE_GRACE), sign-in budgets spent on both, and a
//   key rotation made by the CLI served and used by the other within KEY_CHECK_INTERVAL.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import * as jose from 'jose';
import * as oidc from 'openid-client';
import { Browser, asPage, isPage, type Page } from '../helpers/browser.ts';
import { freePort, startServer, stopChild, testDatabaseLocation, track, type TestServer, pidRunning } from '../helpers/server.ts';
import { REDIRECT, authorize, insecure, startAuthorization, throughInstance, type Credentials } from '../helpers/rp.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.ts');
const POSTGRES = Boolean(process.env.DATABASE_URL);
const NEEDS_POSTGRES = 'needs DATABASE_URL: the embedded PGlite database can be opened by one process only';
const OFFLINE = { scope: 'openid email offline_access', prompt: 'consent' };
/** Seconds; short so the replay-after-grace test waits little. */
const GRACE = 3;

type LogEntry = { event?: string; pid?: number; worker?: number; requestId?: string; method?: string; path?: string; status?: number; expected?: boolean; code?: number };

function entries(server: TestServer): LogEntry[] {
  return server.logs
    .join('')
    .split('\n')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as LogEntry];
      } catch {
        return [];
      }
    });
}

/** Waits (logs are written asynchronously) until `found` returns something for the server's log. */
async function waitForLog<T>(server: TestServer, what: string, found: (log: LogEntry[]) => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = found(entries(server));
    if (result !== undefined) return result;
    if (Date.now() > deadline) throw new Error(`no ${what} in the log within ${timeoutMs} ms:\n${server.logs.join('').slice(-3000)}`);
    await sleep(100);
  }
}

/** A GET on a new connection (no keep-alive), so the cluster hands each one to the next worker. */
function getFresh(url: string): Promise<{ status: number; requestId: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, requestId: String(res.headers['x-request-id']) }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${url} timed out`)));
  });
}


function exitOf(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: string | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`process ${child.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

let userCounter = 0;
async function createUser(server: TestServer, prefix: string): Promise<Credentials> {
  const email = `${prefix}${++userCounter}@example.com`;
  const password = `violet teapot orbit ${userCounter}`;
  await server.cli(['users', 'create', '--email', email, '--password', password, '--verified']);
  return { email, password };
}

async function createRp(server: TestServer, id: string) {
  const created = (await server.cli([
    'clients', 'create', '--id', id, '--first-party', '--redirect-uri', REDIRECT,
    '--grant-type', 'authorization_code', '--grant-type', 'refresh_token',
  ])) as { client_secret: string };
  const config = await oidc.discovery(new URL(server.issuer), id, created.client_secret, undefined, insecure);
  return { config, secret: created.client_secret };
}

describe('serve --workers 2', { skip: POSTGRES ? false : NEEDS_POSTGRES }, () => {
  let server: TestServer;
  let rp: oidc.Configuration;
  const listening = (log: LogEntry[]) => log.filter((e) => e.event === 'server.listening');

  before(async () => {
    server = await startServer({}, { args: ['--workers', '2'] });
    ({ config: rp } = await createRp(server, 'rp'));
  });
  after(async () => {
    await server?.stop();
  });

  test('two worker processes, neither of them the primary, take turns serving requests on one port', async () => {
    const primary = server.child().pid!;
    const started = await waitForLog(server, 'two cluster.worker_started', (log) => {
      const found = log.filter((e) => e.event === 'cluster.worker_started');
      return found.length >= 2 ? found : undefined;
    });
    const workers = await waitForLog(server, 'two workers listening', (log) => {
      const pids = new Set(listening(log).map((e) => e.pid!));
      return pids.size >= 2 ? pids : undefined;
    });
    assert.equal(workers.size, 2);
    assert.ok(!workers.has(primary), 'the primary serves nothing itself');
    assert.deepEqual(new Set(started.map((e) => e.pid)), workers, 'the workers the primary started are the ones listening');
    for (const pid of workers) assert.ok(pidRunning(pid));

    const requestIds: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await getFresh(`${server.url}/healthz`);
      assert.equal(res.status, 200);
      requestIds.push(res.requestId);
    }
    const servedBy = await waitForLog(server, 'the access log of six requests', (log) => {
      const lines = log.filter((e) => e.event === 'http.request' && requestIds.includes(e.requestId!));
      return lines.length === requestIds.length ? new Set(lines.map((e) => e.worker)) : undefined;
    });
    assert.equal(servedBy.size, 2, 'both workers served some of the requests');
  });

  test('a full sign-in and code exchange', async () => {
    const user = await createUser(server, 'cluster');
    const outcome = await authorize(rp, new Browser(), user, OFFLINE);
    assert.ok(outcome.tokens, `tokens after ${outcome.pages.join(' → ')}`);
    assert.equal(outcome.tokens.claims()!.email, user.email);
    const refreshed = await oidc.refreshTokenGrant(rp, outcome.tokens.refresh_token!);
    assert.equal((await oidc.fetchUserInfo(rp, refreshed.access_token, outcome.tokens.claims()!.sub)).email, user.email);
  });

  test('a worker killed with SIGKILL: the other keeps answering, and a replacement starts', async () => {
    const earlier = listening(entries(server)).map((e) => e.pid!);
    const victim = earlier.find(pidRunning)!;
    process.kill(victim, 'SIGKILL');
    const exit = await waitForLog(server, 'cluster.worker_exited', (log) => log.find((e) => e.event === 'cluster.worker_exited' && e.pid === victim));
    assert.equal(exit.expected, false);
    for (let i = 0; i < 4; i++) assert.equal((await getFresh(`${server.url}/readyz`)).status, 200, 'answered while one worker is down');
    const replacement = await waitForLog(server, 'a replacement worker listening', (log) => listening(log).find((e) => !earlier.includes(e.pid!))?.pid);
    assert.ok(pidRunning(replacement));
    assert.ok(entries(server).some((e) => e.event === 'cluster.worker_restarting'));
    assert.equal((await getFresh(`${server.url}/readyz`)).status, 200);
  });

  test('SIGTERM to the primary stops every worker; the primary exits 0', async () => {
    const child = server.child();
    const workers = [...new Set(listening(entries(server)).map((e) => e.pid!))].filter(pidRunning);
    assert.equal(workers.length, 2);
    child.kill('SIGTERM');
    const { code } = await exitOf(child, 40_000);
    assert.equal(code, 0);
    for (const pid of workers) assert.equal(pidRunning(pid), false, `worker ${pid} is gone`);
    const log = entries(server);
    assert.equal(log.filter((e) => e.event === 'server.stopping').length >= 2, true, 'each worker shut down gracefully');
    assert.ok(log.some((e) => e.event === 'cluster.stopped' && e.code === 0));
  });

  test('workers that cannot start (their port is taken): the primary gives up with exit 1', async () => {
    const location = await testDatabaseLocation();
    const port = await freePort();
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(port, '0.0.0.0', resolve));
    const output: string[] = [];
    const child = track(
      spawn(process.execPath, [MAIN, 'serve', '--workers', '2'], {
        env: { ...process.env, NODE_ENV: 'test', DATABASE_URL: location.databaseUrl, DATA_DIR: location.dataDir, PORT: String(port), LATCHKEY_SECRET: 'test-secret-0123456789abcdefghijklmnopqrstuvwxyz' },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    child.stdout!.on('data', (d) => output.push(String(d)));
    child.stderr!.on('data', (d) => output.push(String(d)));
    try {
      const { code } = await exitOf(child, 120_000);
      assert.equal(code, 1, output.join('').slice(-2000));
      assert.match(output.join(''), /"event":"cluster.crash_loop"/);
      assert.match(output.join(''), /EADDRINUSE/);
    } finally {
      await stopChild(child);
      blocker.close();
      await location.cleanup();
    }
  });
});

describe('serve --workers on the embedded database', () => {
  test('more than one worker is refused with a clear message', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-workers-'));
    try {
      const child = track(spawn(process.execPath, [MAIN, 'serve', '--workers', '2'], { env: { ...process.env, DATABASE_URL: '', DATA_DIR: dataDir, NODE_ENV: 'test' }, stdio: ['ignore', 'pipe', 'pipe'] }));
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += String(d)));
      const { code } = await exitOf(child, 30_000);
      assert.equal(code, 1);
      assert.match(stderr, /cannot run 2 workers on the embedded database: PGlite can be opened by one process only/);
      assert.ok(!fs.existsSync(path.join(dataDir, 'pglite')), 'the database was not opened');
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('two instances behind one issuer, no sticky sessions', { skip: POSTGRES ? false : NEEDS_POSTGRES }, () => {
  let a: TestServer;
  let b: TestServer;
  let viaA: oidc.Configuration;
  let viaB: oidc.Configuration;

  /** `url` (on the shared issuer) as the load balancer would send it to `server`. */
  const on = (server: TestServer, url: string) => {
    const u = new URL(url);
    const target = new URL(server.url);
    u.host = target.host;
    return u.toString();
  };
  const isOn = (server: TestServer, url: string) => new URL(url).port === new URL(server.url).port;

  /** Submits a form of `page` to `server`, as a person's browser would (fields read from the HTML). */
  async function submitTo(browser: Browser, server: TestServer, page: Page, selector: string, fields: Record<string, string>, headers: Record<string, string> = {}) {
    const form = page.doc.querySelector(selector);
    assert.ok(form, `no form ${selector} on ${page.url}`);
    const body = new URLSearchParams();
    for (const input of form.querySelectorAll('input')) {
      const name = input.getAttribute('name');
      if (name) body.set(name, input.getAttribute('value') ?? '');
    }
    for (const [k, v] of Object.entries(fields)) body.set(k, v);
    const action = on(server, new URL(form.getAttribute('action') ?? page.url, page.url).toString());
    return browser.follow(action, { method: 'POST', body, headers }, new URL(server.url).origin);
  }

  /** Follows redirects on the issuer through `server` until the RP's callback; returns its URL. */
  async function followVia(browser: Browser, server: TestServer, step: Page | { redirect: string }): Promise<URL> {
    for (let i = 0; i < 10; i++) {
      if (isPage(step)) throw new Error(`expected a redirect, got ${step.url} (${step.status}):\n${step.doc.querySelector('main')?.text.trim().slice(0, 400)}`);
      const next = new URL(step.redirect);
      if (next.origin === new URL(REDIRECT).origin) return next;
      assert.equal(next.origin, new URL(a.issuer).origin, `redirected outside the issuer: ${next}`);
      step = await browser.get(on(server, next.toString()), new URL(server.url).origin);
    }
    throw new Error('too many redirects');
  }

  /** The sign-in page on `server`, for a new authorization request. */
  async function loginPageOn(server: TestServer, browser: Browser): Promise<Page> {
    const url = oidc.buildAuthorizationUrl(viaA, {
      redirect_uri: REDIRECT,
      scope: 'openid',
      code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    });
    const page = asPage(await browser.get(on(server, url.href), new URL(server.url).origin));
    assert.ok(page.doc.querySelector('form[action$="/login"]'), `a sign-in page on ${page.url}`);
    return page;
  }

  /** One session on `server` (half of a sign-in split): page and POST on the same instance. */
  async function attemptOn(server: TestServer, email: string, password: string, ip: string) {
    const browser = new Browser();
    const page = await loginPageOn(server, browser);
    const step = await submitTo(browser, server, page, 'form[action$="/login"]', { email, password }, { 'x-forwarded-for': ip });
    return isPage(step) ? step.status : 302;
  }

  /** A sign-in whose authorization request and sign-in page are served by A, everything after by B. */
  async function splitSignIn(user: Credentials, params: Record<string, string> = {}) {
    const browser = new Browser();
    const { step, verifier, state } = await startAuthorization(browser, viaA, params);
    const page = asPage(step);
    assert.ok(isOn(a, page.url), `the sign-in page comes from A: ${page.url}`);
    assert.ok(page.doc.querySelector('form[action$="/login"]'), 'the sign-in page');
    const posted = await submitTo(browser, b, page, 'form[action$="/login"]', { email: user.email, password: user.password });
    const callback = await followVia(browser, b, posted);
    assert.equal(callback.searchParams.get('error'), null, callback.search);
    const tokens = await oidc.authorizationCodeGrant(viaB, callback, { pkceCodeVerifier: verifier, expectedState: state });
    return { tokens, uid: new URL(page.url).pathname.split('/')[2]! };
  }

  const isInvalidGrant = (err: oidc.ResponseBodyError) => err.error === 'invalid_grant';
  const active = async (config: oidc.Configuration, token: string) => (await oidc.tokenIntrospection(config, token)).active;
  const publishedKids = async (server: TestServer) => {
    const res = await fetch(`${server.url}/jwks`);
    assert.equal(res.status, 200);
    return ((await res.json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
  };

  before(async () => {
    a = await startServer({
      KEY_CHECK_INTERVAL: '1',
      REFRESH_REUSE_GRACE: String(GRACE),
      LOGIN_RATE_LIMIT_PER_ACCOUNT: '3',
      LOGIN_RATE_LIMIT_PER_IP: '8',
      // Behind the (simulated) load balancer: the client IP comes from X-Forwarded-For.
      TRUST_PROXY: 'true',
    });
    let secret: string;
    [b, { config: viaA, secret }] = await Promise.all([a.startAnother({ shareIssuer: true }), createRp(a, 'rp')]);
    viaB = throughInstance(viaA, b.url, secret);
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
  });

  test('a sign-in started on A (request, sign-in page) and finished on B (form POST, redirects, code)', async () => {
    const user = await createUser(a, 'split');
    const { tokens, uid } = await splitSignIn(user);
    assert.equal(tokens.claims()!.iss, a.issuer);
    assert.equal(tokens.claims()!.email, user.email);
    assert.equal((await oidc.fetchUserInfo(viaB, tokens.access_token, tokens.claims()!.sub)).email, user.email);
    // Each instance's access log shows its half.
    const served = (method: string, suffix: string) => (log: LogEntry[]) =>
      log.some((e) => e.event === 'http.request' && e.method === method && e.path === `/interaction/${uid}${suffix}`) || undefined;
    await waitForLog(a, 'the sign-in page served by A', served('GET', ''));
    await waitForLog(b, 'the form POST served by B', served('POST', '/login'));
    assert.equal(served('POST', '/login')(entries(a)), undefined, 'A never saw the POST');
  });

  test('a refresh token from A, rotated on B and replayed on A: a retry inside the grace, reuse after it', async () => {
    const user = await createUser(a, 'refresh');
    const outcome = await authorize(viaA, new Browser(), user, OFFLINE);
    assert.ok(outcome.tokens?.refresh_token, `tokens after ${outcome.pages.join(' → ')}`);
    const first = outcome.tokens;

    const rotatedOnB = await oidc.refreshTokenGrant(viaB, first.refresh_token!);
    // Inside the grace: a retry (a lost response), served with a fresh token set; B's stay valid.
    const retriedOnA = await oidc.refreshTokenGrant(viaA, first.refresh_token!);
    assert.ok(retriedOnA.access_token && retriedOnA.refresh_token);
    assert.notEqual(retriedOnA.refresh_token, rotatedOnB.refresh_token);
    assert.equal(await active(viaA, rotatedOnB.access_token), true, 'the tokens of the rotation on B stay valid');
    assert.equal(await active(viaB, retriedOnA.access_token), true);

    // After the grace: reuse. Refused, and the whole family is revoked on both instances.
    await sleep((GRACE + 1) * 1000);
    await assert.rejects(oidc.refreshTokenGrant(viaA, first.refresh_token!), isInvalidGrant);
    for (const config of [viaA, viaB]) {
      assert.equal(await active(config, rotatedOnB.access_token), false);
      assert.equal(await active(config, retriedOnA.access_token), false);
    }
    await assert.rejects(oidc.refreshTokenGrant(viaB, rotatedOnB.refresh_token!), isInvalidGrant, 'B\'s rotated refresh token died with the family');
    await assert.rejects(oidc.refreshTokenGrant(viaA, retriedOnA.refresh_token!), isInvalidGrant);
  });

  test('failed sign-ins alternating between A and B spend the same per-account budget as on one instance', async () => {
    const victim = await createUser(a, 'victim');
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push(await attemptOn(i % 2 ? b : a, victim.email, `wrong guess ${i}`, '203.0.113.10'));
    assert.deepEqual(statuses, [401, 401, 401, 429, 429], 'LOGIN_RATE_LIMIT_PER_ACCOUNT=3 over both instances');
    // Even the right password is not checked now, on either instance.
    assert.equal(await attemptOn(a, victim.email, victim.password, '203.0.113.11'), 429);
    assert.equal(await attemptOn(b, victim.email, victim.password, '203.0.113.12'), 429);
  });

  test('failed sign-ins from one IP alternating between A and B spend one per-IP budget', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 10 && statuses.at(-1) !== 429; i++) statuses.push(await attemptOn(i % 2 ? b : a, `nobody${i}@example.com`, 'guess', '198.51.100.7'));
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 401, 401, 401, 429], 'LOGIN_RATE_LIMIT_PER_IP=8 over both instances');
    // Another client IP is not affected.
    assert.equal(await attemptOn(b, 'nobody@example.com', 'guess', '198.51.100.8'), 401);
  });

  test('keys rotated by the CLI: B publishes and signs with the new keys within KEY_CHECK_INTERVAL', async () => {
    const old = await publishedKids(b);
    const rotated = (await a.cli(['keys', 'rotate'])) as { created: { kid: string; alg: string }[]; rotated: string[] };
    const rotatedAt = Date.now();
    const newRs256 = rotated.created.find((k) => k.alg === 'RS256')!.kid;
    for (const server of [a, b]) {
      const deadline = rotatedAt + 15_000;
      let kids = await publishedKids(server);
      while (!rotated.created.every((k) => kids.includes(k.kid)) && Date.now() < deadline) {
        await sleep(200);
        kids = await publishedKids(server);
      }
      assert.ok(rotated.created.every((k) => kids.includes(k.kid)), `${server.url} publishes the new keys`);
      for (const kid of old) assert.ok(kids.includes(kid), 'the previous keys stay published');
    }
    // Picked up within KEY_CHECK_INTERVAL (1 s), with room for a loaded machine.
    assert.ok(Date.now() - rotatedAt < 15_000);

    const user = await createUser(a, 'rotation');
    const { tokens } = await splitSignIn(user);
    assert.equal(jose.decodeProtectedHeader(tokens.id_token!).kid, newRs256, 'B signed the ID token with the new key');
    const viaAOutcome = await authorize(viaA, new Browser(), user);
    assert.equal(jose.decodeProtectedHeader(viaAOutcome.tokens!.id_token!).kid, newRs256, 'A signs with it too');
  });
});
