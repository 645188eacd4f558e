// `npm run bench`: Latchkey against the bare library it is built on, on this machine, in the same
// run. Latchkey (production settings, one process, PostgreSQL when DATABASE_URL is set, else the
// embedded PGlite, labelled so) and a bare oidc-provider of the same version with its in-memory
// adapter (bench/bare-provider.ts, one process) take the same load from the same generator
// (autocannon: keep-alive, fixed connections and duration), a warm-up first, then alternating
// rounds A/B/A/B so that drift on a shared machine hits both sides alike: the ratios are the
// result, the absolute numbers move with the machine. Sign-ins have no bare equivalent (its dev
// interactions check no password): they are compared with the raw argon2id ceiling instead.
// Loopback only, fixed durations; every child process is stopped on every exit path.
//
// Environment: BENCH_SECONDS (per round, 5), BENCH_ROUNDS (per side, 2), BENCH_WARMUP_SECONDS (2),
// BENCH_CONNECTIONS (10), BENCH_SIGNIN_CONNECTIONS (8), BENCH_USERS (200), BENCH_STARTUP_RUNS (3),
// BENCH_KEEP_LOGS (keep the servers' log files), BENCH_ONLY (comma-separated figure keys, e.g.
// client_credentials,password_sign_in: those figures only, no latency targets, no results file),
// BENCH_CPU_PROF (Latchkey runs with --cpu-prof; the profile is kept with the logs), UV_THREADPOOL_SIZE (argon2's threads, 4), DATABASE_URL (postgres://… of a server on which the
// benchmark may create and drop a database).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import argon2 from 'argon2';
import autocannon, { type Request as AcRequest } from 'autocannon';
import pg from 'pg';
import { freePort, START_FLAGS, testDatabaseLocation } from '../test/helpers/server.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.join(ROOT, 'src/main.ts');
const NODE = process.execPath;
const run = promisify(execFile);

const num = (name: string, def: number) => {
  const value = Number(process.env[name] ?? def);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  return value;
};
const SECONDS = num('BENCH_SECONDS', 5);
const ROUNDS = Math.max(2, Math.round(num('BENCH_ROUNDS', 2)));
const WARMUP = num('BENCH_WARMUP_SECONDS', Math.min(2, SECONDS));
const CONNECTIONS = Math.round(num('BENCH_CONNECTIONS', 10));
const SIGNIN_CONNECTIONS = Math.round(num('BENCH_SIGNIN_CONNECTIONS', 8));
const USERS = Math.round(num('BENCH_USERS', 200));
const STARTUP_RUNS = Math.round(num('BENCH_STARTUP_RUNS', 3));
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((k) => k.trim())) : undefined;
const CPU_PROF = Boolean(process.env.BENCH_CPU_PROF);
// argon2 runs on libuv's thread pool: the server and the ceiling get the same size.
const THREADS = Math.round(num('UV_THREADPOOL_SIZE', 4));
const ARGON2 = { memoryCost: 19456, timeCost: 2, parallelism: 1 }; // OWASP, Latchkey's default
const POSTGRES = Boolean(process.env.DATABASE_URL);
const DATABASE = POSTGRES ? 'postgresql' : 'embedded-pglite';
const PASSWORD = 'correct horse battery staple 42';
const REDIRECT = 'http://localhost:1/callback'; // never followed: the code is read from Location
const CLIENT_ID = 'bench';
const CLIENT_SECRET = crypto.randomBytes(32).toString('base64url');
const BASIC = `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`;
const FORM = 'application/x-www-form-urlencoded';
// One PKCE pair for every sign-in: the server checks the pair, not its freshness.
const VERIFIER = crypto.randomBytes(32).toString('base64url');
const CHALLENGE = crypto.createHash('sha256').update(VERIFIER).digest('base64url');

// ---------------------------------------------------------------------------------------------
// Child processes: all tracked, all stopped on every exit path, and a deadline over the whole run.

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
const DEADLINE_MS = 20 * 60_000;
setTimeout(() => {
  console.error(`bench: still running after ${DEADLINE_MS / 60_000} minutes, giving up`);
  process.exit(1);
}, DEADLINE_MS).unref();

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

async function waitFor(url: string, child: ChildProcess, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      /* not listening yet */
    }
    await sleep(50);
  }
  throw new Error(`${what} did not answer ${url} within ${timeoutMs / 1000} s`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Peak and current resident memory of a process, in MB, from /proc (Linux). */
function memoryOf(pid: number | undefined): { peakRssMB: number | null; rssMB: number | null } {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { peakRssMB: Math.round(kb('VmHWM') / 1024), rssMB: Math.round(kb('VmRSS') / 1024) };
  } catch {
    return { peakRssMB: null, rssMB: null };
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP flows (cookies, redirects, forms) written once, driven by fetch during set-up and by
// autocannon under load, so that the measured sign-in is the flow checked during set-up.

type HeaderMap = Record<string, string | string[]>;
interface FlowContext {
  [key: string]: unknown;
  jar: Record<string, string>;
  started?: number;
  location?: string;
  csrf?: string;
  code?: string;
  email?: string;
  tokens?: TokenSet;
}
interface TokenSet {
  access_token: string;
  refresh_token?: string;
}
interface Step {
  method: 'GET' | 'POST';
  path(ctx: FlowContext): string | undefined;
  body?(ctx: FlowContext): string;
  basic?: boolean;
  /** Reads what the next step needs; false when the response is not the expected one. */
  accept(status: number, body: string, headers: HeaderMap, ctx: FlowContext): boolean;
}

function header(headers: HeaderMap, name: string): string[] {
  const found = Object.entries(headers).filter(([k]) => k.toLowerCase() === name).flatMap(([, v]) => v);
  return found;
}

function storeCookies(headers: HeaderMap, jar: Record<string, string>): void {
  for (const line of header(headers, 'set-cookie')) {
    const [pair, ...attributes] = line.split(';');
    const at = pair!.indexOf('=');
    const name = pair!.slice(0, at).trim();
    const expired = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a) || (/^\s*expires=/i.test(a) && Date.parse(a.split('=')[1]!) < Date.now()));
    if (expired) delete jar[name];
    else jar[name] = pair!.slice(at + 1).trim();
  }
}

/** Path scoping is ignored: every cookie goes with every request; the server reads only its own. */
const cookieHeader = (jar: Record<string, string>) => Object.entries(jar).map(([k, v]) => `${k}=${v}`).join('; ');

function redirectTo(status: number, headers: HeaderMap, ctx: FlowContext, pattern: RegExp): boolean {
  const location = header(headers, 'location')[0];
  if (status < 300 || status > 399 || !location) return false;
  const url = new URL(location, 'http://localhost');
  if (!pattern.test(url.pathname)) return false;
  ctx.location = url.pathname + url.search;
  return true;
}

function codeFrom(status: number, headers: HeaderMap, ctx: FlowContext): boolean {
  const location = header(headers, 'location')[0];
  if (status < 300 || status > 399 || !location?.startsWith(REDIRECT)) return false;
  const code = new URL(location).searchParams.get('code');
  if (!code) return false;
  ctx.code = code;
  return true;
}

function authorizePath(scope: string, prompt?: string): string {
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT,
    scope,
    state: 'bench',
    code_challenge: CHALLENGE,
    code_challenge_method: 'S256',
    ...(prompt ? { prompt } : {}),
  });
  return `/auth?${query}`;
}

const codeExchange: Step = {
  method: 'POST',
  path: () => '/token',
  basic: true,
  body: (ctx) => new URLSearchParams({ grant_type: 'authorization_code', code: ctx.code!, redirect_uri: REDIRECT, code_verifier: VERIFIER }).toString(),
  accept(status, body, _headers, ctx) {
    if (status !== 200) return false;
    ctx.tokens = JSON.parse(body) as TokenSet;
    return true;
  },
};

/** The sign-in page: keeps its CSRF token. */
function latchkeyPage(action: string): Step {
  return {
    method: 'GET',
    path: (ctx) => ctx.location,
    accept(status, body, _headers, ctx) {
      ctx.csrf = /name="_csrf" value="([^"]+)"/.exec(body)?.[1];
      return status === 200 && Boolean(ctx.csrf) && body.includes(`action="${ctx.location}/${action}"`);
    },
  };
}

/**
 * Latchkey's hosted sign-in: authorize → sign-in page → POST email + password → resume → code →
 * token; with prompt=consent (offline_access needs it) a consent interaction, given without a
 * page to a first-party client, comes before the code.
 */
function latchkeySignIn(scope: string, prompt?: 'consent'): Step[] {
  const toResume = /^\/auth\/[^/]+$/;
  const toInteraction = /^\/interaction\/[^/]+$/;
  return [
    { method: 'GET', path: () => authorizePath(scope, prompt), accept: (s, _b, h, ctx) => redirectTo(s, h, ctx, toInteraction) },
    latchkeyPage('login'),
    {
      method: 'POST',
      path: (ctx) => `${ctx.location}/login`,
      body: (ctx) => new URLSearchParams({ _csrf: ctx.csrf!, email: ctx.email!, password: PASSWORD }).toString(),
      accept: (s, _b, h, ctx) => redirectTo(s, h, ctx, toResume),
    },
    // The first-party client's grant covers the request, so the resume issues the code; only
    // prompt=consent (needed for offline_access) records it in a second interaction, no page.
    ...(prompt === 'consent'
      ? [
          { method: 'GET', path: (ctx) => ctx.location, accept: (s, _b, h, ctx) => redirectTo(s, h, ctx, toInteraction) } satisfies Step,
          { method: 'GET', path: (ctx) => ctx.location, accept: (s, _b, h, ctx) => redirectTo(s, h, ctx, toResume) } satisfies Step,
        ]
      : []),
    { method: 'GET', path: (ctx) => ctx.location, accept: (s, _b, h, ctx) => codeFrom(s, h, ctx) },
    codeExchange,
  ];
}

/** The bare provider's devInteractions (any login, no password): login form, consent form, code, token. */
function bareSignIn(scope: string): Step[] {
  const page: Step = { method: 'GET', path: (ctx) => ctx.location, accept: (s, b) => s === 200 && b.includes('name="prompt"') };
  const resume: Step = { method: 'GET', path: (ctx) => ctx.location, accept: (s, _b, h, ctx) => redirectTo(s, h, ctx, /^\/interaction\/[^/]+$/) };
  const resumeToCode: Step = { method: 'GET', path: (ctx) => ctx.location, accept: (s, _b, h, ctx) => codeFrom(s, h, ctx) };
  return [
    { method: 'GET', path: () => authorizePath(scope, 'consent'), accept: (s, _b, h, ctx) => redirectTo(s, h, ctx, /^\/interaction\/[^/]+$/) },
    page,
    { method: 'POST', path: (ctx) => ctx.location, body: (ctx) => new URLSearchParams({ prompt: 'login', login: ctx.email!, password: 'x' }).toString(), accept: (s, _b, h, ctx) => redirectTo(s, h, ctx, /^\/auth\/[^/]+$/) },
    resume,
    page,
    { method: 'POST', path: (ctx) => ctx.location, body: () => 'prompt=consent', accept: (s, _b, h, ctx) => redirectTo(s, h, ctx, /^\/auth\/[^/]+$/) },
    resumeToCode,
    codeExchange,
  ];
}

function requestHeaders(step: Step, ctx: FlowContext, host: string): Record<string, string> {
  return {
    host,
    ...(Object.keys(ctx.jar).length ? { cookie: cookieHeader(ctx.jar) } : {}),
    ...(step.method === 'POST' ? { 'content-type': FORM } : {}),
    ...(step.basic ? { authorization: BASIC } : {}),
  };
}

/** Runs a flow once with fetch (set-up), throwing with the step and response when it goes astray. */
async function runFlow(target: Target, steps: Step[], ctx: FlowContext): Promise<FlowContext> {
  for (const [i, step] of steps.entries()) {
    const p = step.path(ctx)!;
    const res = await fetch(`${target.base}${p}`, { method: step.method, redirect: 'manual', headers: requestHeaders(step, ctx, target.host), body: step.body?.(ctx) });
    const body = await res.text();
    const headers: HeaderMap = { 'set-cookie': res.headers.getSetCookie() };
    res.headers.forEach((value, name) => name !== 'set-cookie' && (headers[name] = value));
    storeCookies(headers, ctx.jar);
    if (!step.accept(res.status, body, headers, ctx)) {
      const where = (u: unknown) => String(u ?? '').split('?')[0]!.replace(/\/(interaction|auth)\/[^/]+/, '/$1/:uid');
      throw new Error(`${target.name}: sign-in step ${i + 1} (${step.method} ${where(p)}) answered ${res.status} ${where(headers.location)}\n${body.slice(0, 500)}`);
    }
  }
  return ctx;
}

// ---------------------------------------------------------------------------------------------
// Load: one autocannon run per round; latencies collected per response (or per completed flow).

interface Target {
  name: string;
  label: string;
  base: string;
  host: string;
  port: number;
  pid(): number | undefined;
}

interface Scenario {
  /** Builds one round's requests; `done(latencyMs)` counts a success, `failed()` a failure. */
  requests(done: (latencyMs?: number) => void, failed: (why: string) => void): AcRequest[] | Promise<AcRequest[]>;
  connections: number;
  /** True when a success is a whole multi-request flow, timed end to end by `done`. */
  flow?: boolean;
}

interface RoundResult {
  side: string;
  seconds: number;
  ok: number;
  failed: number;
  perSecond: number;
  requestsPerSecond: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** Why flows failed: step, method, status (and where a redirect went). */
  failures?: Record<string, number>;
  latencies: number[];
  dbBefore?: DbDelta;
  db?: DbDelta;
}

async function loadRound(target: Target, scenario: Scenario, seconds: number, counters?: pg.Client): Promise<RoundResult> {
  let ok = 0;
  let failed = 0;
  const failures: Record<string, number> = {};
  const latencies: number[] = [];
  // Single requests are judged in onResponse, which autocannon calls right before it reports the
  // same response's latency: the flag carries the verdict across.
  let accepted = false;
  const requests = await scenario.requests(
    (latency) => {
      ok++;
      if (latency !== undefined) latencies.push(latency);
      else accepted = true;
    },
    (why) => {
      failed++;
      failures[why] = (failures[why] ?? 0) + 1;
    },
  );
  // Set-up work (sign-ins for refresh chains) is not the figure's: count from here.
  const dbBefore = await dbCounters(counters);
  const instance = autocannon({ url: target.base, connections: scenario.connections, duration: seconds, pipelining: 1, timeout: 10, requests });
  instance.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => {
    if (accepted) latencies.push(ms);
    accepted = false;
  });
  const result = await instance;
  const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, s]) => [code, s.count]));
  return {
    side: target.name,
    seconds: result.duration,
    ok,
    failed,
    perSecond: ok / result.duration,
    requestsPerSecond: result.requests.total / result.duration,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    ...(Object.keys(failures).length ? { failures } : {}),
    latencies,
    dbBefore,
  };
}

function percentile(sorted: number[], p: number): number | null {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

interface SideSummary {
  perSecond: number;
  p50: number | null;
  p99: number | null;
  ok: number;
  failed: number;
  errors: number;
  rounds: Array<Omit<RoundResult, 'latencies'> & { p50: number | null; p99: number | null }>;
  dbPerRequest?: { transactions: number; rowsInserted: number; rowsUpdated: number; rowsDeleted: number };
}

function summarise(rounds: RoundResult[]): SideSummary {
  const all = rounds.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const ok = rounds.reduce((n, r) => n + r.ok, 0);
  const seconds = rounds.reduce((n, r) => n + r.seconds, 0);
  const summary: SideSummary = {
    perSecond: round1(ok / seconds),
    p50: round2(percentile(all, 50)),
    p99: round2(percentile(all, 99)),
    ok,
    failed: rounds.reduce((n, r) => n + r.failed, 0),
    errors: rounds.reduce((n, r) => n + r.errors + r.timeouts, 0),
    rounds: rounds.map(({ latencies, dbBefore: _b, ...r }) => {
      const sorted = [...latencies].sort((a, b) => a - b);
      return { ...r, perSecond: round1(r.perSecond), requestsPerSecond: round1(r.requestsPerSecond), p50: round2(percentile(sorted, 50)), p99: round2(percentile(sorted, 99)) };
    }),
  };
  const withDb = rounds.filter((r) => r.db);
  if (withDb.length && ok) {
    const sum = (f: keyof DbDelta) => withDb.reduce((n, r) => n + r.db![f], 0);
    const requests = withDb.reduce((n, r) => n + r.ok + r.failed, 0);
    summary.dbPerRequest = {
      transactions: round2(sum('transactions') / requests)!,
      rowsInserted: round2(sum('rowsInserted') / requests)!,
      rowsUpdated: round2(sum('rowsUpdated') / requests)!,
      rowsDeleted: round2(sum('rowsDeleted') / requests)!,
    };
  }
  return summary;
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const round2 = (n: number | null) => (n === null ? null : Math.round(n * 100) / 100);

const why = (status: number, body: string) => `${status} ${body.slice(0, 120)}`;

/**
 * One request shape, judged by `check` on its body. `tokens` are fetched before each round (the
 * bare provider's in-memory store is an LRU of 1,000 entries: older tokens are gone) and handed
 * round-robin to `body` or, with `bearer`, to the Authorization header.
 */
function simple(options: {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  tokens?: () => Promise<string[]>;
  body?: (token: string) => string;
  bearer?: boolean;
  check(body: string): boolean;
}): Scenario {
  const { method, path: urlPath, headers, tokens, body, bearer, check } = options;
  return {
    connections: CONNECTIONS,
    requests: async (done, failed) => {
      const pool = tokens ? await tokens() : [''];
      let n = 0;
      return [
        {
          method,
          path: urlPath,
          headers,
          setupRequest: (req) => {
            const token = pool[n++ % pool.length]!;
            return { ...req, ...(body ? { body: body(token) } : {}), ...(bearer ? { headers: { ...req.headers, authorization: `Bearer ${token}` } } : {}) };
          },
          onResponse: (status, text) => (status === 200 && check(text) ? done() : failed(why(status, text))),
        },
      ];
    },
  };
}

/**
 * Refresh with rotation: each connection carries one refresh-token chain and always presents
 * the newest token of it. A connection has one request in flight, and autocannon records a
 * response before building that connection's next request, so a shared queue of chain heads
 * works: a token re-enters the queue only once the server has answered with it.
 */
function refreshScenario(chains: () => Promise<string[]>, host: string): Scenario {
  return {
    connections: CONNECTIONS,
    requests: async (done, failed) => {
      const heads = await chains();
      return [
        {
          method: 'POST',
          path: '/token',
          headers: { host, 'content-type': FORM, authorization: BASIC },
          setupRequest(req, context) {
            // A chain broken by a failed response leaves its connection without a token: it
            // then sends a spent one and counts as a failure, never as a success.
            const token = heads.shift() ?? 'chain-broken';
            context.token = token;
            return { ...req, body: `grant_type=refresh_token&refresh_token=${encodeURIComponent(token)}` };
          },
          onResponse(status, body) {
            const next = status === 200 ? (JSON.parse(body) as TokenSet).refresh_token : undefined;
            if (next) {
              heads.push(next);
              done();
            } else failed(why(status, body));
          },
        },
      ];
    },
  };
}

/** A whole flow as one autocannon request sequence per connection; a success is its last step. */
function flowScenario(target: Target, steps: (ctx: FlowContext) => Step[], setup: (ctx: FlowContext) => void, connections: number): Scenario {
  return {
    connections,
    flow: true,
    requests(done, failed) {
      const template = steps({ jar: {} });
      return template.map((step, index) => ({
        method: step.method,
        path: '/',
        setupRequest(req, raw) {
          const ctx = raw as FlowContext;
          if (index === 0) {
            ctx.jar = {};
            ctx.started = performance.now();
            setup(ctx);
          } else if (ctx.failedAt !== undefined) {
            return null; // back to the first step with a new context
          }
          const p = step.path(ctx);
          if (!p) return null;
          return { ...req, method: step.method, path: p, headers: requestHeaders(step, ctx, target.host), ...(step.body ? { body: step.body(ctx) } : {}) };
        },
        onResponse(status, body, raw, headers) {
          const ctx = raw as FlowContext;
          storeCookies(headers, ctx.jar);
          if (!step.accept(status, body, headers, ctx)) {
            ctx.failedAt = index;
            failed(`step ${index + 1} ${step.method} ${status}${status >= 300 && status < 400 ? ` → ${String(header(headers, 'location')[0]).split('?')[0]!.replace(/\/(interaction|auth)\/[^/]+/, '/$1/:uid')}` : ''}`);
          } else if (index === template.length - 1) {
            done(performance.now() - ctx.started!);
          }
        },
      }));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Paced (open-loop) load for the latency targets: requests start on a fixed schedule whether or
// not earlier ones have finished, and latency counts from the scheduled start, so a stalled
// server shows up in the figure instead of slowing the generator down (autocannon's rate limit
// sends each connection's quota in a burst at the start of every second). In flight: bounded.

interface PacedResult {
  offeredPerSecond: number;
  perSecond: number;
  ok: number;
  failed: number;
  /** Not started because `maxInFlight` were already waiting. */
  skipped: number;
  p50: number | null;
  p99: number | null;
  failures: Record<string, number>;
}

async function paced(rate: number, seconds: number, fire: () => Promise<string | undefined>, maxInFlight = 50): Promise<PacedResult> {
  const interval = 1000 / rate;
  const total = Math.max(1, Math.floor(rate * seconds));
  const started = performance.now();
  const latencies: number[] = [];
  const failures: Record<string, number> = {};
  const pending = new Set<Promise<void>>();
  let ok = 0;
  let failed = 0;
  let skipped = 0;
  for (let i = 0; i < total; i++) {
    const due = started + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    if (pending.size >= maxInFlight) {
      skipped++;
      continue;
    }
    const one: Promise<void> = fire()
      .catch((err: Error) => err.message.split('\n')[0]!.slice(0, 160))
      .then((reason) => {
        if (reason === undefined) {
          ok++;
          latencies.push(performance.now() - due);
        } else {
          failed++;
          failures[reason] = (failures[reason] ?? 0) + 1;
        }
      })
      .finally(() => pending.delete(one));
    pending.add(one);
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - started) / 1000;
  const sorted = latencies.sort((a, b) => a - b);
  return { offeredPerSecond: round1(rate), perSecond: round1(ok / elapsed), ok, failed, skipped, p50: round2(percentile(sorted, 50)), p99: round2(percentile(sorted, 99)), failures };
}

// ---------------------------------------------------------------------------------------------
// The database's own counters (PostgreSQL only): transactions and rows written per request.

interface DbDelta {
  transactions: number;
  rowsInserted: number;
  rowsUpdated: number;
  rowsDeleted: number;
}

async function dbCounters(client: pg.Client | undefined): Promise<DbDelta | undefined> {
  if (!client) return undefined;
  const { rows } = await client.query<{ x: string; i: string; u: string; d: string }>(
    'SELECT xact_commit + xact_rollback AS x, tup_inserted AS i, tup_updated AS u, tup_deleted AS d FROM pg_stat_database WHERE datname = current_database()',
  );
  const r = rows[0]!;
  return { transactions: Number(r.x), rowsInserted: Number(r.i), rowsUpdated: Number(r.u), rowsDeleted: Number(r.d) };
}

// ---------------------------------------------------------------------------------------------
// `npm start` to first served request, embedded database, fresh DATA_DIR.

async function startupOnce(command: 'node' | 'npm'): Promise<{ ms: number; serverStartupMs?: number }> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-bench-start-'));
  const port = await freePort();
  const { NODE_ENV: _omit, ...parentEnv } = process.env;
  const env = { ...parentEnv, DATABASE_URL: '', DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info' };
  const started = performance.now();
  const child = track(
    command === 'node'
      ? spawn(NODE, [...START_FLAGS, MAIN, 'serve'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('npm', ['start', '--silent'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true }),
  );
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${out}`);
      if (Date.now() > deadline) throw new Error(`no answer within 30 s:\n${out}`);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        await res.arrayBuffer();
        if (res.ok) break;
      } catch {
        /* not listening yet */
      }
      await sleep(5);
    }
    const ms = performance.now() - started;
    const listening = out.split('\n').find((l) => l.includes('"server.listening"'));
    return { ms: Math.round(ms), serverStartupMs: listening ? (JSON.parse(listening) as { startupMs?: number }).startupMs : undefined };
  } finally {
    if (command === 'npm' && child.pid && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(-child.pid, 'SIGTERM'); // npm, its shell and the server: one process group
      await exited;
    } else await stopChild(child);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------

function log(line: string) {
  process.stderr.write(`${line}\n`);
}

async function main() {
  const date = new Date();
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-bench-'));
  log(`bench: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, database ${DATABASE}, ${ROUNDS} rounds × ${SECONDS} s per side, ${CONNECTIONS} connections; logs in ${workDir}`);
  if (!POSTGRES) log('bench: DATABASE_URL is not set: every Latchkey figure below is on the embedded PGlite, not PostgreSQL');

  // 1. Cold start, before anything else loads the machine.
  const startup: { node: number[]; npm: number[]; serverStartupMs: (number | undefined)[] } = { node: [], npm: [], serverStartupMs: [] };
  for (let i = 0; i < (ONLY ? 0 : STARTUP_RUNS); i++) {
    const r = await startupOnce('node');
    startup.node.push(r.ms);
    startup.serverStartupMs.push(r.serverStartupMs);
  }
  try {
    if (!ONLY) startup.npm.push((await startupOnce('npm')).ms);
  } catch (err) {
    log(`bench: npm start not measured: ${(err as Error).message.split('\n')[0]}`);
  }
  log(`bench: start to first served request (embedded, fresh DATA_DIR): node src/main.ts serve ${startup.node.join(', ')} ms; npm start ${startup.npm.join(', ') || '-'} ms`);

  // 2. Latchkey, production settings, on a fresh database.
  const location = await testDatabaseLocation();
  const latchkeyPort = await freePort();
  const latchkeyLog = path.join(workDir, 'latchkey.log');
  const latchkeyEnv: Record<string, string> = {
    ...(process.env as Record<string, string>),
    NODE_ENV: 'production',
    WORKERS: '1', // one process, as the baseline: `serve` would otherwise start one per core
    HOST: '127.0.0.1',
    PORT: String(latchkeyPort),
    ISSUER: `http://localhost:${latchkeyPort}`,
    DATA_DIR: location.dataDir,
    DATABASE_URL: location.databaseUrl ?? '',
    LATCHKEY_SECRET: crypto.randomBytes(32).toString('base64url'),
    MAIL_TRANSPORT: 'log',
    LOG_LEVEL: 'info',
    UV_THREADPOOL_SIZE: String(THREADS),
    ARGON2_MEMORY_KIB: String(ARGON2.memoryCost),
    ARGON2_TIME_COST: String(ARGON2.timeCost),
    ARGON2_PARALLELISM: String(ARGON2.parallelism),
    // Rate limits stay on; the budgets are larger than the benchmark can spend.
    LOGIN_RATE_LIMIT_PER_IP: '1000000',
    LOGIN_RATE_LIMIT_PER_ACCOUNT: '1000000',
    FACTOR_RATE_LIMIT_PER_ATTEMPT: '1000000',
    FACTOR_RATE_LIMIT_PER_USER: '1000000',
    SIGNUP_RATE_LIMIT_PER_IP: '1000000',
    MAIL_RATE_LIMIT_PER_IP: '1000000',
    MAIL_RATE_LIMIT_PER_ADDRESS: '1000000',
  };
  let latchkeyChild: ChildProcess | undefined;
  let bareChild: ChildProcess | undefined;
  let stats: pg.Client | undefined;
  const startLatchkey = async () => {
    const fd = fs.openSync(latchkeyLog, 'a'); // JSON logs to a file, as in production
    const profile = CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${path.join(workDir, 'profile')}`] : [];
    latchkeyChild = track(spawn(NODE, [...START_FLAGS, ...profile, MAIN, 'serve'], { cwd: ROOT, env: latchkeyEnv, stdio: ['ignore', fd, fd] }));
    fs.closeSync(fd);
    await waitFor(`http://127.0.0.1:${latchkeyPort}/readyz`, latchkeyChild, 'Latchkey');
  };
  try {
    await startLatchkey();
    const cli = async (args: string[]) => JSON.parse((await run(NODE, [MAIN, ...args, '--json'], { cwd: ROOT, env: latchkeyEnv })).stdout) as unknown;
    await cli(['clients', 'create', '--id', CLIENT_ID, '--secret', CLIENT_SECRET, '--name', 'Benchmark', '--first-party', '--redirect-uri', REDIRECT,
      '--grant-type', 'authorization_code', '--grant-type', 'refresh_token', '--grant-type', 'client_credentials']);

    // Many distinct users, each with an argon2id hash of its own at the configured parameters.
    // Inserted directly: the CLI would start a process per user.
    log(`bench: hashing ${USERS} passwords (argon2id m=${ARGON2.memoryCost} KiB t=${ARGON2.timeCost} p=${ARGON2.parallelism})`);
    const users: Array<{ id: string; email: string; hash: string }> = [];
    for (let i = 0; i < USERS; i += THREADS) {
      const batch = Array.from({ length: Math.min(THREADS, USERS - i) }, (_, j) => i + j);
      users.push(...(await Promise.all(batch.map(async (n) => ({ id: crypto.randomUUID(), email: `bench-${n}@bench.example`, hash: await argon2.hash(PASSWORD, { type: argon2.argon2id, ...ARGON2 }) })))));
    }
    const insertSql = 'INSERT INTO users (id, email, name, email_verified, password_hash) SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::boolean[], $5::text[])';
    const insertArgs = [users.map((u) => u.id), users.map((u) => u.email), users.map((_, n) => `Bench User ${n}`), users.map(() => true), users.map((u) => u.hash)];
    if (location.databaseUrl) {
      stats = new pg.Client({ connectionString: location.databaseUrl });
      await stats.connect();
      await stats.query(insertSql, insertArgs);
    } else {
      // PGlite has one owner: stop the server, write, start it again.
      await stopChild(latchkeyChild!);
      const db = new PGlite({ dataDir: path.join(location.dataDir, 'pglite') });
      await db.query(insertSql, insertArgs);
      await db.close();
      await startLatchkey();
    }

    // 3. The bare library, in memory.
    const bareLog = fs.openSync(path.join(workDir, 'bare-provider.log'), 'a');
    bareChild = track(
      spawn(NODE, [path.join(ROOT, 'bench/bare-provider.ts')], {
        cwd: ROOT,
        env: { ...process.env, NODE_ENV: 'production', UV_THREADPOOL_SIZE: String(THREADS), BARE_CLIENT_SECRET: CLIENT_SECRET, BARE_REDIRECT_URI: REDIRECT },
        stdio: ['ignore', 'pipe', bareLog, 'ipc'],
      }),
    );
    fs.closeSync(bareLog);
    const barePort = await new Promise<number>((resolve, reject) => {
      let out = '';
      bareChild!.stdout!.on('data', (d) => {
        out += d;
        const line = out.split('\n').find((l) => l.includes('"listening"'));
        if (line) resolve((JSON.parse(line) as { port: number }).port);
      });
      bareChild!.once('exit', (code) => reject(new Error(`bare provider exited with ${code}; see ${workDir}/bare-provider.log`)));
    });

    const latchkey: Target = { name: 'latchkey', label: `Latchkey (${DATABASE})`, base: `http://127.0.0.1:${latchkeyPort}`, host: `localhost:${latchkeyPort}`, port: latchkeyPort, pid: () => latchkeyChild?.pid };
    const bare: Target = { name: 'bare', label: 'bare oidc-provider (memory)', base: `http://127.0.0.1:${barePort}`, host: `localhost:${barePort}`, port: barePort, pid: () => bareChild?.pid };
    await waitFor(`${bare.base}/.well-known/openid-configuration`, bareChild, 'bare provider');

    // User tokens from real sign-ins on each side (Latchkey: password; bare: devInteractions).
    let userIndex = 0;
    const nextEmail = () => users[userIndex++ % users.length]!.email;
    const userTokens = async (target: Target, n: number, scope: string) => {
      const sets: TokenSet[] = [];
      for (let i = 0; i < n; i++) {
        const flow = target === latchkey ? latchkeySignIn(scope, scope.includes('offline_access') ? 'consent' : undefined) : bareSignIn(scope);
        sets.push((await runFlow(target, flow, { jar: {}, email: nextEmail() })).tokens!);
      }
      return sets;
    };

    const tokenHeaders = (t: Target) => ({ host: t.host, 'content-type': FORM, authorization: BASIC });
    const isToken = (body: string) => body.includes('"access_token"');
    const userAccessTokens = async (t: Target) => (await userTokens(t, CONNECTIONS, 'openid email profile')).map((set) => set.access_token);
    const scenarios = (t: Target) => ({
      clientCredentials: simple({ method: 'POST', path: '/token', headers: tokenHeaders(t), body: () => 'grant_type=client_credentials', check: isToken }),
      refresh: refreshScenario(async () => (await userTokens(t, CONNECTIONS, 'openid email profile offline_access')).map((set) => set.refresh_token!), t.host),
      introspection: simple({ method: 'POST', path: '/token/introspection', headers: tokenHeaders(t), tokens: () => userAccessTokens(t), body: (token) => `token=${token}`, check: (b) => b.includes('"active":true') }),
      userinfo: simple({ method: 'GET', path: '/me', headers: { host: t.host }, tokens: () => userAccessTokens(t), bearer: true, check: (b) => b.includes('"sub"') }),
    });
    // The same token formats on both sides: opaque access tokens, checked rather than assumed.
    for (const t of [latchkey, bare]) {
      const res = await fetch(`${t.base}/token`, { method: 'POST', headers: tokenHeaders(t), body: 'grant_type=client_credentials' });
      const body = (await res.json()) as { access_token?: string };
      if (!res.ok || !body.access_token || body.access_token.includes('.')) throw new Error(`${t.name}: expected an opaque client-credentials token, got ${res.status} ${JSON.stringify(body)}`);
      const [user] = await userTokens(t, 1, 'openid email profile offline_access');
      if (user!.access_token.includes('.') || user!.refresh_token?.includes('.') !== false) throw new Error(`${t.name}: expected opaque user access and refresh tokens`);
    }
    const A = scenarios(latchkey);
    const B = scenarios(bare);
    type Figure = {
      key: string;
      title: string;
      unit: string;
      a: Scenario;
      /** The comparison side: the bare provider, or the argon2id ceiling. */
      b: { target: Target; scenario: Scenario } | 'argon2';
      baselineMeasures: string;
    };
    const figures: Figure[] = [
      {
        key: 'client_credentials',
        title: 'client credentials',
        unit: 'tokens/s',
        a: A.clientCredentials,
        b: { target: bare, scenario: B.clientCredentials },
        baselineMeasures: 'the same request: client_credentials grant, client_secret_basic, opaque access token',
      },
      {
        key: 'refresh',
        title: 'refresh (rotation)',
        unit: 'grants/s',
        a: A.refresh,
        b: { target: bare, scenario: B.refresh },
        baselineMeasures: `the same request: refresh_token grant with rotation (rotateRefreshToken: true), ${CONNECTIONS} chains each presenting its newest token (new chains each round), from devInteractions sign-ins (openid email profile offline_access); new access, refresh and ID token each`,
      },
      {
        key: 'introspection',
        title: 'introspection',
        unit: 'requests/s',
        a: A.introspection,
        b: { target: bare, scenario: B.introspection },
        baselineMeasures: `the same request: introspection (client_secret_basic) of ${CONNECTIONS} active user access tokens from authorization-code sign-ins (devInteractions), same allowedPolicy as Latchkey`,
      },
      {
        key: 'userinfo',
        title: 'userinfo',
        unit: 'requests/s',
        a: A.userinfo,
        b: { target: bare, scenario: B.userinfo },
        baselineMeasures: `the same request: GET /me with ${CONNECTIONS} user access tokens (openid email profile) from devInteractions sign-ins; claims from a static account, no store`,
      },
      {
        key: 'password_sign_in',
        title: 'password sign-in',
        unit: 'sign-ins/s',
        a: flowScenario(latchkey, () => latchkeySignIn('openid email profile'), (ctx) => (ctx.email = nextEmail()), SIGNIN_CONNECTIONS),
        b: 'argon2',
        baselineMeasures: `raw argon2id verifications/s in a process of their own, ${THREADS} in flight (the server's thread pool), same parameters: the ceiling a password sign-in cannot pass`,
      },
    ];

    // 4. Warm-up, then A/B/A/B per figure.
    const results: Record<string, { title: string; unit: string; latchkey: SideSummary; baseline: SideSummary; baselineIs: string; baselineMeasures: string; ratio: number | null }> = {};
    const argon2Round = async (seconds: number): Promise<RoundResult> => {
      const { stdout } = await run(NODE, [path.join(ROOT, 'bench/argon2-ceiling.ts'), String(seconds), String(THREADS), String(ARGON2.memoryCost), String(ARGON2.timeCost), String(ARGON2.parallelism)], {
        cwd: ROOT,
        env: { ...process.env, UV_THREADPOOL_SIZE: String(THREADS) },
      });
      const r = JSON.parse(stdout) as { count: number; seconds: number; latencies: number[] };
      return { side: 'argon2', seconds: r.seconds, ok: r.count, failed: 0, perSecond: r.count / r.seconds, requestsPerSecond: r.count / r.seconds, errors: 0, timeouts: 0, statusCodes: {}, latencies: r.latencies };
    };
    for (const figure of figures) {
      if (ONLY && !ONLY.has(figure.key)) continue;
      const sideB = figure.b;
      const runB = (seconds: number) => (sideB === 'argon2' ? argon2Round(seconds) : loadRound(sideB.target, sideB.scenario, seconds));
      log(`bench: ${figure.title}: warm-up`);
      await loadRound(latchkey, figure.a, WARMUP);
      await runB(WARMUP);
      const a: RoundResult[] = [];
      const b: RoundResult[] = [];
      for (let round = 1; round <= ROUNDS; round++) {
        const ra = await loadRound(latchkey, figure.a, SECONDS, stats);
        const before = ra.dbBefore;
        // The B round runs while Latchkey idles, which gives PostgreSQL time to publish its counters.
        const rb = await runB(SECONDS);
        const after = await dbCounters(stats);
        if (before && after) {
          ra.db = { transactions: after.transactions - before.transactions, rowsInserted: after.rowsInserted - before.rowsInserted, rowsUpdated: after.rowsUpdated - before.rowsUpdated, rowsDeleted: after.rowsDeleted - before.rowsDeleted };
        }
        a.push(ra);
        b.push(rb);
        log(`bench: ${figure.title} round ${round}: Latchkey ${round1(ra.perSecond)}/s (${ra.failed} failed${ra.failed ? `: ${JSON.stringify(ra.failures ?? ra.statusCodes)}` : ''}), ${sideB === 'argon2' ? 'argon2id' : 'bare'} ${round1(rb.perSecond)}/s (${rb.failed} failed${rb.failed ? `: ${JSON.stringify(rb.failures ?? rb.statusCodes)}` : ''})`);
      }
      const sa = summarise(a);
      const sb = summarise(b);
      results[figure.key] = {
        title: figure.title,
        unit: figure.unit,
        latchkey: sa,
        baseline: sb,
        baselineIs: sideB === 'argon2' ? 'argon2id ceiling' : 'bare oidc-provider',
        baselineMeasures: figure.baselineMeasures,
        ratio: sb.perSecond ? Math.round((sa.perSecond / sb.perSecond) * 1000) / 1000 : null,
      };
    }

    if (ONLY) {
      for (const [key, r] of Object.entries(results)) {
        log(`bench: ${key}: Latchkey ${r.latchkey.perSecond}/s p50 ${r.latchkey.p50} p99 ${r.latchkey.p99} ms, ${r.baselineIs} ${r.baseline.perSecond}/s, ratio ${r.ratio}, db per request ${JSON.stringify(r.latchkey.dbPerRequest ?? null)}`);
      }
      log(`bench: Latchkey RSS ${JSON.stringify(memoryOf(latchkey.pid()))}; BENCH_ONLY: no latency targets, no results file`);
      if (CPU_PROF) await stopChild(latchkeyChild!); // writes the profile
      if (CPU_PROF || process.env.BENCH_KEEP_LOGS) log(`bench: logs${CPU_PROF ? ' and profile' : ''} in ${workDir}`);
      else fs.rmSync(workDir, { recursive: true, force: true });
      return;
    }

    // 5. Latency targets (Latchkey only): p99 at 70 % of the maximum just measured, and token
    //    p99 while password sign-ins are offered at twice the measured sign-in rate.
    const fireFetch = (t: Target, init: { path: string; method?: string; headers: Record<string, string>; body?: () => string }, check: (body: string) => boolean) => async () => {
      const res = await fetch(`${t.base}${init.path}`, { method: init.method ?? 'POST', headers: init.headers, body: init.body?.() });
      const text = await res.text();
      return res.status === 200 && check(text) ? undefined : why(res.status, text);
    };
    const atSeventy: Record<string, PacedResult> = {};
    const seventyTokens = await userAccessTokens(latchkey);
    let k = 0;
    const nextToken = () => seventyTokens[k++ % seventyTokens.length]!;
    const fires: Record<string, () => Promise<string | undefined>> = {
      client_credentials: fireFetch(latchkey, { path: '/token', headers: tokenHeaders(latchkey), body: () => 'grant_type=client_credentials' }, isToken),
      introspection: fireFetch(latchkey, { path: '/token/introspection', headers: tokenHeaders(latchkey), body: () => `token=${nextToken()}` }, (b) => b.includes('"active":true')),
      userinfo: async () => fireFetch(latchkey, { path: '/me', method: 'GET', headers: { authorization: `Bearer ${nextToken()}` } }, (b) => b.includes('"sub"'))(),
    };
    for (const [key, fire] of Object.entries(fires)) {
      const rate = 0.7 * results[key]!.latchkey.perSecond;
      log(`bench: ${results[key]!.title} at 70 % of its maximum (${round1(rate)}/s), paced`);
      atSeventy[key] = await paced(rate, SECONDS, fire);
    }
    const signInRate = results.password_sign_in!.latchkey.perSecond;
    const floodRate = Math.max(1, 2 * signInRate);
    const tokenRate = Math.max(10, Math.round(0.25 * results.client_credentials!.latchkey.perSecond));
    log(`bench: client credentials at ${tokenRate}/s while sign-ins are offered at ${round1(floodRate)}/s (2 × capacity)`);
    const [floodTokens, floodSignIns] = await Promise.all([
      paced(tokenRate, SECONDS, fires.client_credentials!),
      paced(floodRate, SECONDS, async () => {
        await runFlow(latchkey, latchkeySignIn('openid email profile'), { jar: {}, email: nextEmail() });
        return undefined;
      }, 60),
    ]);
    const latency = { at70PercentOfMax: atSeventy, tokensDuringSignInFlood: { tokenRate, signInRateOffered: round1(floodRate), tokens: floodTokens, signIns: floodSignIns } };

    // 6. Memory after the run, the issue's targets, the table, the file.
    const memory = { latchkey: memoryOf(latchkey.pid()), bare: memoryOf(bare.pid()) };
    const f = (key: string) => results[key]!;
    const target = (name: string, value: string, met: boolean | null) => ({ target: name, value, met });
    const p99 = (r: PacedResult) => (r.p99 === null ? 'no successes' : `p99 ${r.p99} ms at ${r.perSecond}/s${r.failed + r.skipped ? `, ${r.failed + r.skipped} failed or skipped` : ''}`);
    const targets = [
      target('client credentials / bare >= 0.75', String(f('client_credentials').ratio), (f('client_credentials').ratio ?? 0) >= 0.75),
      target('refresh >= 500/s and >= 0.5 x bare', `${f('refresh').latchkey.perSecond}/s, ${f('refresh').ratio} x bare`, f('refresh').latchkey.perSecond >= 500 && (f('refresh').ratio ?? 0) >= 0.5),
      target('introspection >= 2,500/s', `${f('introspection').latchkey.perSecond}/s`, f('introspection').latchkey.perSecond >= 2500),
      target('sign-ins / argon2id ceiling >= 0.8', String(f('password_sign_in').ratio), (f('password_sign_in').ratio ?? 0) >= 0.8),
      ...Object.entries(atSeventy).map(([key, r]) => target(`${f(key).title} p99 at 70 % of max < 50 ms`, p99(r), r.p99 !== null && r.p99 < 50 && r.failed === 0)),
      target(`token p99 while sign-ins flood at 2 x capacity < 100 ms`, `${p99(floodTokens)}; sign-ins: ${floodSignIns.ok} ok, ${floodSignIns.failed} refused or failed, ${floodSignIns.skipped} not sent (60 in flight)`, floodTokens.p99 !== null && floodTokens.p99 < 100 && floodTokens.failed === 0),
      target('resident memory after the run <= 300 MB', `${memory.latchkey.rssMB} MB (peak ${memory.latchkey.peakRssMB} MB)`, memory.latchkey.rssMB === null ? null : memory.latchkey.rssMB <= 300),
      target('start to first served request (embedded) < 2 s', `${median(startup.node)} ms`, (median(startup.node) ?? Infinity) < 2000),
    ];
    const version = (pkg: string) => (JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
    let commit: string | undefined;
    try {
      commit = (await run('git', ['rev-parse', 'HEAD'], { cwd: ROOT })).stdout.trim();
      if ((await run('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT })).stdout.trim()) commit += ' (with uncommitted changes)';
    } catch {
      /* not a git checkout */
    }
    const report = {
      date: date.toISOString(),
      commit,
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryMB: Math.round(os.totalmem() / 2 ** 20), kernel: `${os.type()} ${os.release()}`, loadAverageAtEnd: os.loadavg().map((l) => round2(l)) },
      node: process.version,
      versions: { 'oidc-provider': version('oidc-provider'), argon2: version('argon2'), autocannon: version('autocannon') },
      database: DATABASE,
      settings: { secondsPerRound: SECONDS, roundsPerSide: ROUNDS, warmupSeconds: WARMUP, connections: CONNECTIONS, signInConnections: SIGNIN_CONNECTIONS, users: USERS, argon2: ARGON2, threads: THREADS, latchkey: 'NODE_ENV=production, one process, JSON logs to a file, audit on, rate limits on (budgets above what the run spends)' },
      startup: { embedded: true, nodeServeMs: startup.node, npmStartMs: startup.npm, serverReportedStartupMs: startup.serverStartupMs, medianNodeServeMs: median(startup.node) },
      figures: results,
      latency,
      memory,
      targets,
    };
    printTable(report.figures, memory, startup, date, targets);
    const resultsDir = path.join(ROOT, 'bench/results');
    fs.mkdirSync(resultsDir, { recursive: true });
    const stem = `${date.toISOString().slice(0, 10)}${POSTGRES ? '' : '-embedded'}`;
    let file = path.join(resultsDir, `${stem}.json`);
    for (let n = 2; fs.existsSync(file); n++) file = path.join(resultsDir, `${stem}-${n}.json`);
    fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
    if (process.env.BENCH_KEEP_LOGS) log(`bench: wrote ${path.relative(ROOT, file)}; server logs in ${workDir}`);
    else {
      fs.rmSync(workDir, { recursive: true, force: true });
      log(`bench: wrote ${path.relative(ROOT, file)} (BENCH_KEEP_LOGS=1 keeps the servers' logs)`);
    }
  } catch (err) {
    log(`bench: failed; Latchkey's log is ${latchkeyLog}`);
    throw err;
  } finally {
    await stats?.end().catch(() => {});
    if (bareChild) await stopChild(bareChild);
    if (latchkeyChild) await stopChild(latchkeyChild);
    await location.cleanup();
  }
}

function median(values: number[]): number | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function printTable(
  figures: Record<string, { title: string; unit: string; latchkey: SideSummary; baseline: SideSummary; baselineIs: string; baselineMeasures: string; ratio: number | null }>,
  memory: Record<'latchkey' | 'bare', { peakRssMB: number | null; rssMB: number | null }>,
  startup: { node: number[]; npm: number[] },
  date: Date,
  targets: Array<{ target: string; value: string; met: boolean | null }>,
) {
  const ms = (v: number | null) => (v === null ? '-' : v < 10 ? v.toFixed(1) : String(Math.round(v)));
  const rate = (v: number) => (v >= 100 ? String(Math.round(v)) : v.toFixed(1));
  const fail = (s: SideSummary) => (s.failed + s.errors ? ` (${s.failed + s.errors} failed)` : '');
  const rows = [
    ['figure', `Latchkey (${DATABASE})`, 'p50 ms', 'p99 ms', 'baseline', 'p50 ms', 'p99 ms', 'ratio', 'db xact/req'],
    ...Object.values(figures).map((f) => [
      `${f.title}, ${f.unit}`,
      rate(f.latchkey.perSecond) + fail(f.latchkey),
      ms(f.latchkey.p50),
      ms(f.latchkey.p99),
      `${rate(f.baseline.perSecond)}${fail(f.baseline)} ${f.baselineIs === 'argon2id ceiling' ? '(argon2id ceiling)' : '(bare)'}`,
      ms(f.baseline.p50),
      ms(f.baseline.p99),
      f.ratio === null ? '-' : f.ratio.toFixed(2),
      f.latchkey.dbPerRequest ? `${f.latchkey.dbPerRequest.transactions} (+${f.latchkey.dbPerRequest.rowsInserted} rows)` : '-',
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => `| ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(' | ')} |`;
  const out = [
    '',
    `Latchkey vs bare oidc-provider ${date.toISOString().slice(0, 10)}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, ${ROUNDS} × ${SECONDS} s rounds per side (A/B alternating), ${CONNECTIONS} connections (sign-ins ${SIGNIN_CONNECTIONS})`,
    ...(POSTGRES ? [''] : ['NOTE: DATABASE_URL unset: every Latchkey figure is on the embedded PGlite (one connection), not PostgreSQL.', '']),
    line(rows[0]!),
    `|${widths.map((w, c) => (c === 0 ? ':' : '-') + '-'.repeat(w) + (c === 0 ? '-' : ':')).join('|')}|`,
    ...rows.slice(1).map(line),
    '',
    `peak RSS (VmHWM): Latchkey ${memory.latchkey.peakRssMB} MB (now ${memory.latchkey.rssMB} MB), bare oidc-provider ${memory.bare.peakRssMB} MB (now ${memory.bare.rssMB} MB)`,
    `start to first served request (embedded, fresh DATA_DIR): node src/main.ts serve median ${median(startup.node)} ms (${startup.node.join(', ')}); npm start ${startup.npm.join(', ') || '-'} ms`,
    '',
    `targets (issue 13; Latchkey on ${DATABASE}):`,
    ...targets.map((t) => `  [${t.met === null ? '?' : t.met ? 'met' : 'NOT met'}] ${t.target}: ${t.value}`),
    '',
    'what each baseline measured:',
    ...Object.values(figures).map((f) => `  ${f.title}: ${f.baselineIs}: ${f.baselineMeasures}`),
    '',
  ];
  process.stdout.write(out.filter((l, i) => l !== '' || i === 0 || out[i - 1] !== '').join('\n') + '\n');
}

await main();
process.exit(0);
