// Account deletion as a protocol, end to end: an openid-client RP sends its user to
// RP-initiated deletion (sign-in, recent authentication, confirmation, status=scheduled); its
// events endpoint (a loopback server) receives RISC Security Event Tokens verified against
// /jwks; a sign-in during the grace period ends on "Cancel deletion" with no code; the purge
// (`users purge --due --as-of`) leaves no row naming the user outside the anonymised audit trail
// and the receipt; and a purge killed midway leaves no half-deleted user.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as jose from 'jose';
import * as oidc from 'openid-client';
import type { Db } from '../../src/db/knex.ts';
import { Browser, asPage, asRedirect, isPage, type Page } from '../helpers/browser.ts';
import { REDIRECT, authorize, createVerifiedUser, insecure, startAuthorization, type Credentials } from '../helpers/rp.ts';
import { startServer, withServerDb, type TestServer } from '../helpers/server.ts';
import { SmtpSink } from '../helpers/smtp-sink.ts';
import { Authenticator } from '../helpers/totp.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.ts');
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';
const LOGOUT_URI = 'http://localhost:9/signed-out';
const GRACE_DAYS = 30;
const DAY_MS = 86_400_000;

interface ReceivedSet {
  jwt: string;
  contentType: string | undefined;
  status: number;
}

/** The RP's events endpoint (RFC 8935 push): records each SET; `failNext` answers 500 that many times. */
class EventsReceiver {
  received: ReceivedSet[] = [];
  failNext = 0;
  private server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const status = this.failNext > 0 ? (this.failNext--, 500) : 202;
      this.received.push({ jwt: body, contentType: req.headers['content-type'], status });
      res.writeHead(status).end();
    });
  });
  origin = '';

  async start() {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop() {
    return new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Waits for an accepted SET carrying `event` for `sub`. */
  async next(event: string, sub: string, timeoutMs = 15_000): Promise<{ set: ReceivedSet; claims: jose.JWTPayload; header: jose.ProtectedHeaderParameters; attempts: number }> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const set of this.received) {
        if (set.status !== 202) continue;
        const claims = jose.decodeJwt(set.jwt);
        const body = (claims.events as Record<string, { subject?: { sub?: string } }> | undefined)?.[RISC + event];
        if (body?.subject?.sub === sub && !this.taken.has(set)) {
          this.taken.add(set);
          const attempts = this.received.filter((s) => jose.decodeJwt(s.jwt).jti === claims.jti).length;
          return { set, claims, header: jose.decodeProtectedHeader(set.jwt), attempts };
        }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no ${event} SET for ${sub}; received ${this.received.length}`);
  }

  private taken = new Set<ReceivedSet>();
}

let server: TestServer;
let sink: SmtpSink;
let receiver: EventsReceiver;
let rp: oidc.Configuration;
let jwks: ReturnType<typeof jose.createRemoteJWKSet>;
const createUser = (prefix: string) => createVerifiedUser(server, prefix);

/** Verifies a SET as a relying party would: signature against /jwks, typ, iss, aud. */
async function verifySet(jwt: string) {
  return jose.jwtVerify(jwt, jwks, { issuer: server.issuer, audience: 'rp', typ: 'secevent+jwt' });
}

/** Runs `fn` against the server's database (PostgreSQL directly; PGlite while the server is stopped). */
const withDb = <T>(fn: (db: Db) => Promise<T>): Promise<T> => withServerDb(server, fn);

/** The deletion page for an RP: `/account/delete?client_id=rp&return_to=…`. */
function deleteUrl(returnTo: string, clientId = 'rp') {
  return `${server.issuer}/account/delete?${new URLSearchParams({ client_id: clientId, return_to: returnTo })}`;
}

before(async () => {
  sink = new SmtpSink();
  await sink.start();
  receiver = new EventsReceiver();
  await receiver.start();
  server = await startServer({
    SMTP_URL: `smtp://127.0.0.1:${sink.port}`,
    MAIL_POLL_INTERVAL: '1',
    // Only the receiver's exact origin is let through the outbound guard.
    OUTBOUND_ALLOW_ORIGINS: receiver.origin,
    EVENTS_POLL_INTERVAL: '1',
    EVENTS_RETRY_BASE: '1',
    RECENT_AUTH_TTL: '2',
    DELETION_GRACE_DAYS: String(GRACE_DAYS),
  });
  const created = (await server.cli([
    'clients', 'create', '--id', 'rp', '--name', 'Example App', '--redirect-uri', REDIRECT, '--post-logout-redirect-uri', LOGOUT_URI,
    '--events-uri', `${receiver.origin}/events`,
  ])) as { client_secret: string; events_uri: string };
  assert.equal(created.events_uri, `${receiver.origin}/events`);
  rp = await oidc.discovery(new URL(server.issuer), 'rp', created.client_secret, undefined, insecure);
  jwks = jose.createRemoteJWKSet(new URL(rp.serverMetadata().jwks_uri!));
});

after(async () => {
  await server?.stop();
  await sink?.stop();
  await receiver?.stop();
});

describe('RP-initiated deletion, grace period, cancel, purge', () => {
  let user: Credentials;
  let sub: string;
  let userId: string;
  /** The browser signed in again after cancelling. */
  let restored: Browser;

  test('the RP links to deletion: recent authentication, confirmation, status=scheduled, account-disabled SET, mail', async () => {
    user = await createUser('leaver');
    const browser = new Browser();
    const signedIn = await authorize(rp, browser, user);
    sub = signedIn.tokens!.claims()!.sub;
    userId = sub; // public subject identifiers
    const accessToken = signedIn.tokens!.access_token;
    await new Promise((r) => setTimeout(r, 3000)); // RECENT_AUTH_TTL=2: the sign-in is no longer recent

    const reauth = asPage(await browser.get(deleteUrl(REDIRECT)));
    assert.ok(reauth.doc.querySelector('form[action="/account/reauth"]'), 'a stale session confirms it is the user first');
    const confirm = asPage(await browser.submit(reauth, 'form[action="/account/reauth"]', { password: user.password }));
    assert.equal(new URL(confirm.url).pathname, '/account/delete');
    assert.match(confirm.html, new RegExp(user.email.replace('.', '\\.')));
    const shownDate = Date.parse(confirm.doc.querySelector('time')!.getAttribute('datetime')!);
    assert.ok(Math.abs(shownDate - (Date.now() + GRACE_DAYS * DAY_MS)) < 60_000, 'the page shows the deletion date');
    assert.match(confirm.html, /Keep my account and go back to Example App/);

    const unticked = asPage(await browser.submit(confirm, 'form:not([data-keep])', { confirm: '' }));
    assert.equal(unticked.status, 400, 'no deletion without the explicit confirmation');

    const back = new URL(asRedirect(await browser.submit(confirm, 'form:not([data-keep])', { confirm: 'yes' })));
    assert.equal(`${back.origin}${back.pathname}`, REDIRECT);
    assert.equal(back.searchParams.get('status'), 'scheduled');
    const deletionDate = back.searchParams.get('deletion_date')!;
    assert.match(deletionDate, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
    assert.ok(Math.abs(Date.parse(deletionDate) - (Date.now() + GRACE_DAYS * DAY_MS)) < 60_000);

    const disabled = await receiver.next('account-disabled', sub);
    assert.equal(disabled.set.contentType, 'application/secevent+jwt');
    const { payload, protectedHeader } = await verifySet(disabled.set.jwt);
    const published = (await (await fetch(rp.serverMetadata().jwks_uri!)).json()) as { keys: { kid: string }[] };
    assert.ok(published.keys.some((k) => k.kid === protectedHeader.kid), 'signed with a key published in /jwks, kid set');
    assert.equal(protectedHeader.typ, 'secevent+jwt');
    assert.equal(typeof payload.jti, 'string');
    assert.equal(typeof payload.iat, 'number');
    assert.deepEqual(payload.events, {
      [`${RISC}account-disabled`]: { subject: { format: 'iss_sub', iss: server.issuer, sub }, reason: 'deletion-scheduled' },
    });

    const mail = await sink.next(user.email, /Your account will be deleted/);
    assert.ok(mail.links.includes(`${server.issuer}/account/delete/cancel`), 'the mail carries a cancel link');
    assert.match(mail.text, new RegExp(new Date(deletionDate).toUTCString().slice(0, 16)));

    // Every token and session was revoked at scheduling.
    await assert.rejects(oidc.fetchUserInfo(rp, accessToken, sub), 'the access token no longer works');
    const account = asPage(await browser.get(`${server.issuer}/account`));
    assert.ok(account.doc.querySelector('input[name=password]'), 'the browser was signed out');
  });

  test('a sign-in during the grace period shows only "Cancel deletion" and the RP gets no code; cancel → account-enabled', async () => {
    const browser = new Browser();
    const started = await startAuthorization(browser, rp);
    const login = asPage(started.step);
    const grace = await browser.submit(login, 'form[action$="/login"]', { email: user.email, password: user.password });
    assert.ok(isPage(grace), 'the sign-in stops on a page, not at the RP');
    const page = grace as Page;
    assert.match(new URL(page.url).pathname, /^\/interaction\/[^/]+\/deletion$/);
    assert.match(page.html, /scheduled for deletion/);
    const forms = page.doc.querySelectorAll('form');
    assert.equal(forms.length, 1, 'the only action is cancelling');
    assert.match(forms[0]!.getAttribute('action')!, /\/deletion\/cancel$/);
    assert.equal(forms[0]!.querySelector('button')!.text.trim(), 'Cancel deletion');
    // No session came of it: a new authorization from this browser asks for a sign-in again.
    const again = (await startAuthorization(browser, rp)).step;
    assert.ok(isPage(again) && again.doc.querySelector('input[name=password]'), 'no session, no code');

    receiver.failNext = 1; // the first delivery fails: the outbox retries
    // Consent was revoked with everything else: it is asked again, then the RP gets its code.
    const consent = asPage(await browser.submit(page, 'form'));
    assert.ok(consent.doc.querySelector('form[action$="/consent"]'), 'remembered consent did not come back');
    const callback = new URL(asRedirect(await browser.submit(consent, 'form[action$="/consent"]')));
    assert.ok(callback.searchParams.get('code'), 'after cancelling, sign-in works again');
    const tokens = await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: started.verifier, expectedState: started.state });
    assert.equal(tokens.claims()!.sub, sub);
    restored = browser;

    const enabled = await receiver.next('account-enabled', sub);
    assert.equal(enabled.attempts, 2, 'retried after a failed delivery, with the same jti');
    const { payload } = await verifySet(enabled.set.jwt);
    assert.deepEqual(payload.events, { [`${RISC}account-enabled`]: { subject: { format: 'iss_sub', iss: server.issuer, sub } } });
  });

  test('scheduled again, purged past the grace period: account-purged SET, and no row names the user', async () => {
    // Second factors for the purge to remove (scheduling leaves credentials in place).
    const setup = asPage(await restored.get(`${server.issuer}/account/totp/setup`));
    const authenticator = new Authenticator(setup.doc.querySelector('[data-totp-secret]')!.text.trim());
    const codes = asPage(await restored.submit(setup, 'form[action="/account/totp/setup"]', { code: await authenticator.nextCode() }));
    assert.equal(codes.doc.querySelectorAll('.recovery-codes code').length, 10);

    const scheduled = (await server.cli(['users', 'delete', user.email])) as { status: string; deletion_date: string };
    assert.equal(scheduled.status, 'scheduled');
    await receiver.next('account-disabled', sub);
    await sink.next(user.email, /Your account will be deleted/);

    const early = (await server.cli(['users', 'purge', '--due'])) as { purged: number };
    assert.equal(early.purged, 0, 'nothing is due before the grace period ends');
    const asOf = new Date(Date.parse(scheduled.deletion_date) + DAY_MS).toISOString();
    const purge = (await server.cli(['users', 'purge', '--due', '--as-of', asOf])) as { purged: number; receipts: { pseudonym: string; rows: Record<string, number> }[] };
    assert.equal(purge.purged, 1);
    const receipt = purge.receipts[0]!;
    assert.equal(receipt.rows.users, 1);
    assert.equal(receipt.rows.totp_credentials, 1, `rows removed per table: ${JSON.stringify(receipt.rows)}`);
    assert.equal(receipt.rows.recovery_codes, 10);
    assert.equal(receipt.rows.account_deletions, 1);

    const purged = await receiver.next('account-purged', sub);
    const { payload } = await verifySet(purged.set.jwt);
    assert.deepEqual(payload.events, { [`${RISC}account-purged`]: { subject: { format: 'iss_sub', iss: server.issuer, sub } } });
    await sink.next(user.email, /Your account was deleted/);
    // Delivered outbox rows drop their bodies; wait until nothing is left pending.
    await new Promise((r) => setTimeout(r, 1500));

    const found = await withDb(async (db) => {
      const tables = (await db('information_schema.tables').where({ table_schema: db.raw('current_schema()'), table_type: 'BASE TABLE' }).pluck('table_name')) as string[];
      const hits: Record<string, number> = {};
      for (const table of tables) {
        const { rows } = await db.raw(`SELECT count(*)::int AS n FROM ?? AS t WHERE t::text ILIKE ? OR t::text ILIKE ?`, [table, `%${userId}%`, `%${user.email}%`]);
        if (rows[0].n > 0) hits[table] = rows[0].n;
      }
      const audit = await db('audit_events').where({ user_pseudonym: receipt.pseudonym }).select('type', 'ip', 'user_agent', 'user_id');
      const receipts = await db('deletion_receipts').where({ pseudonym: receipt.pseudonym }).select('*');
      const pending = await db('security_event_outbox').whereNotNull('sealed').count<{ count: string }[]>('* as count');
      return { tables, hits, audit, receipts, pending: Number(pending[0]!.count) };
    });
    assert.ok(found.tables.length >= 15, 'every table was searched');
    assert.deepEqual(found.hits, {}, 'no row holds the user id or email (the audit trail and the receipt included)');
    assert.ok(found.audit.length >= 5, 'the audit trail stays, under the pseudonym');
    assert.ok(found.audit.some((a) => a.type === 'deletion.scheduled') && found.audit.some((a) => a.type === 'user.deleted'));
    assert.ok(found.audit.every((a) => a.ip === null && a.user_agent === null && a.user_id === null), 'IP and user agent dropped');
    assert.equal(found.receipts.length, 1, 'the deletion receipt is kept');
    assert.equal(found.pending, 0);

    // The account is gone: signing in fails like an unknown address.
    const browser = new Browser();
    const login = asPage((await startAuthorization(browser, rp)).step);
    const refused = asPage(await browser.submit(login, 'form[action$="/login"]', { email: user.email, password: user.password }));
    assert.equal(refused.status, 401);
  });
});

describe('return_to and the decline path', () => {
  test('return_to is honoured only when it equals a registered redirect or post-logout URI', async () => {
    const user = await createUser('decliner');
    const browser = new Browser();
    await authorize(rp, browser, user);
    for (const evil of ['https://evil.example/cb', `${REDIRECT}/more`, `${REDIRECT}?x=1`, 'http://localhost:9/']) {
      const page = asPage(await browser.get(deleteUrl(evil)));
      assert.equal(page.doc.querySelector('input[name=return_to]'), null, `${evil} is ignored`);
      const kept = asPage(await browser.submit(page, 'form[data-keep]'));
      assert.equal(new URL(kept.url).pathname, '/account', 'declining without a valid return_to stays on the account page');
    }
    const unknownClient = asPage(await browser.get(deleteUrl(REDIRECT, 'no-such-client')));
    assert.equal(unknownClient.doc.querySelector('input[name=return_to]'), null);

    const page = asPage(await browser.get(deleteUrl(LOGOUT_URI)));
    const declined = new URL(asRedirect(await browser.submit(page, 'form[data-keep]')));
    assert.equal(`${declined.origin}${declined.pathname}`, LOGOUT_URI);
    assert.equal(declined.searchParams.get('status'), 'cancelled');
    // A forged POST carrying a return_to that is not registered is not followed either.
    const forged = await browser.submit(page, 'form[data-keep]', { return_to: 'https://evil.example/cb' });
    assert.ok(isPage(forged) && new URL(forged.url).pathname === '/account');
    // Nothing was scheduled.
    const still = await authorize(rp, new Browser(), user);
    assert.ok(still.tokens, 'the account still signs in');
  });

  test('users delete --now purges at once and sends account-purged to the clients that know the user', async () => {
    const user = await createUser('now');
    const signedIn = await authorize(rp, new Browser(), user);
    const sub = signedIn.tokens!.claims()!.sub;
    const result = (await server.cli(['users', 'delete', user.email, '--now'])) as { status: string; receipt: { trigger: string; rows: Record<string, number> } };
    assert.equal(result.status, 'deleted');
    assert.equal(result.receipt.trigger, 'operator-now');
    assert.equal(result.receipt.rows.users, 1);
    const purged = await receiver.next('account-purged', sub);
    await verifySet(purged.set.jwt);
    const again = await server.cliRaw(['users', 'delete', user.email, '--now', '--json']);
    assert.equal(again.code, 1, 'the user is gone');
  });
});

describe('the reminder', () => {
  test('is mailed once, three days before the deletion date', async () => {
    const user = await createUser('remind');
    await server.cli(['users', 'delete', user.email]);
    // Not due yet: the date is GRACE_DAYS away.
    await server.cli(['jobs', 'run', 'deletion-reminders']);
    // Move the schedule so that the date is two days away (scheduled 28 days ago).
    await withDb((db) =>
      db('account_deletions')
        .whereIn('user_id', db('users').select('id').where({ email: user.email }))
        .update({ requested_at: db.raw("now() - interval '28 days'"), delete_after: db.raw("now() + interval '2 days'") }),
    );
    await server.cli(['jobs', 'run', 'deletion-reminders']);
    const mail = await sink.next(user.email, /will be deleted in 3 days/);
    assert.ok(mail.links.some((l) => l.startsWith(`${server.issuer}/account/delete/cancel`)), 'the reminder carries the cancel link');
    await server.cli(['jobs', 'run', 'deletion-reminders']);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(sink.to(user.email).filter((m) => /will be deleted in 3 days/.test(m.subject)).length, 1, 'once only');
  });
});

describe('a purge killed midway', () => {
  test('leaves every user either untouched or completely gone; running it again finishes', async (t) => {
    if (!process.env.DATABASE_URL) return t.skip('needs PostgreSQL: the CLI runs in its own process only against a server database');
    const COUNT = 150;
    const batch = crypto.randomBytes(4).toString('hex');
    const users = Array.from({ length: COUNT }, (_, i) => ({ id: crypto.randomUUID(), email: `kill-${batch}-${i}@example.com`, pseudonym: crypto.randomUUID() }));
    const past = new Date(Date.now() - DAY_MS);
    await withDb(async (db) => {
      await db('users').insert(users.map((u) => ({ id: u.id, email: u.email, email_verified: true })));
      await db('account_deletions').insert(users.map((u) => ({ user_id: u.id, delete_after: past, requested_at: new Date(past.getTime() - DAY_MS), requested_by: 'operator', pseudonym: u.pseudonym })));
      await db('recovery_codes').insert(users.flatMap((u) => [1, 2, 3].map((n) => ({ user_id: u.id, code_hash: `${u.id}-${n}` }))));
      await db('session_proofs').insert(users.map((u) => ({ session_uid: `s-${u.id}`, user_id: u.id, proofs: '[]' })));
      await db('audit_events').insert(users.flatMap((u) => [1, 2].map(() => ({ type: 'login.success', user_id: u.id, ip: '203.0.113.9', user_agent: 'test', data: JSON.stringify({ email: u.email }) }))));
    });

    const child = spawn(process.execPath, [MAIN, 'users', 'purge', '--due', '--json'], { env: { ...process.env, ...server.env }, stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    let killedAt = -1;
    await withDb(async (db) => {
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && child.exitCode === null) {
        const [row] = await db('deletion_receipts').whereIn('pseudonym', users.map((u) => u.pseudonym)).count<{ n: string }[]>('* as n');
        if (Number(row!.n) >= 5) {
          child.kill('SIGKILL');
          killedAt = Number(row!.n);
          break;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    });
    await exited;
    assert.ok(killedAt >= 5 && killedAt < COUNT, `killed midway (after ${killedAt} receipts)`);

    const state = async () =>
      withDb(async (db) =>
        Promise.all(
          users.map(async (u) => ({
            user: Boolean(await db('users').where({ id: u.id }).first('id')),
            deletion: Boolean(await db('account_deletions').where({ user_id: u.id }).first('user_id')),
            codes: Number((await db('recovery_codes').where({ user_id: u.id }).count<{ n: string }[]>('* as n'))[0]!.n),
            proofs: Number((await db('session_proofs').where({ user_id: u.id }).count<{ n: string }[]>('* as n'))[0]!.n),
            auditNamed: Number((await db('audit_events').where({ user_id: u.id }).count<{ n: string }[]>('* as n'))[0]!.n),
            auditAnon: Number((await db('audit_events').where({ user_pseudonym: u.pseudonym, type: 'login.success' }).whereNull('ip').count<{ n: string }[]>('* as n'))[0]!.n),
            receipt: Boolean(await db('deletion_receipts').where({ pseudonym: u.pseudonym }).first('pseudonym')),
          })),
        ),
      );
    const untouched = { user: true, deletion: true, codes: 3, proofs: 1, auditNamed: 2, auditAnon: 0, receipt: false };
    const gone = { user: false, deletion: false, codes: 0, proofs: 0, auditNamed: 0, auditAnon: 2, receipt: true };
    const afterKill = await state();
    for (const [i, s] of afterKill.entries()) {
      assert.ok(
        JSON.stringify(s) === JSON.stringify(untouched) || JSON.stringify(s) === JSON.stringify(gone),
        `user ${i} is half-deleted: ${JSON.stringify(s)}`,
      );
    }
    const done = afterKill.filter((s) => s.receipt).length;
    assert.ok(done > 0 && done < COUNT, `some users purged (${done}), some not`);

    const rerun = (await server.cli(['users', 'purge', '--due'])) as { purged: number };
    assert.equal(rerun.purged, COUNT - done, 'the rerun purges exactly the rest');
    for (const [i, s] of (await state()).entries()) assert.deepEqual(s, gone, `user ${i} after the rerun`);
  });
});
