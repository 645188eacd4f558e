// Attacks on budgets and on the sign-up and email paths (issue 9): second-factor and password
// guesses fired all at once (PostgreSQL only: embedded PGlite has one connection and hides
// races), account pre-hijacking through sign-up, enumeration through sign-up and email change,
// the per-IP sign-up limit, and the email reference in the audit trail.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import * as oidc from 'openid-client';
import pg from 'pg';
import { Browser, asPage, isPage, type Page } from '../helpers/browser.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { REDIRECT, insecure, pageKind, startAuthorization } from '../helpers/rp.ts';
import { SmtpSink, type ReceivedMail } from '../helpers/smtp-sink.ts';
import { Authenticator, base32Decode, hotp, stepAt } from '../helpers/totp.ts';

const POSTGRES = Boolean(process.env.DATABASE_URL);
const NEEDS_POSTGRES = 'needs DATABASE_URL: requests in flight at once only race on PostgreSQL (embedded PGlite has one connection)';
const READS_POSTGRES = 'needs DATABASE_URL: the test reads the audit table while the server runs (embedded PGlite is one process\'s)';
const FAST_MAIL = { MAIL_POLL_INTERVAL: '1', MAIL_RETRY_BASE: '1', MAIL_RETRY_MAX_DELAY: '2' };

type Step = Page | { redirect: string };

let sink: SmtpSink;

before(async () => {
  sink = new SmtpSink();
  await sink.start();
});
after(async () => sink?.stop());

async function createRp(srv: TestServer): Promise<oidc.Configuration> {
  const created = (await srv.cli(['clients', 'create', '--id', 'rp', '--first-party', '--redirect-uri', REDIRECT])) as { client_secret: string };
  return oidc.discovery(new URL(srv.issuer), 'rp', created.client_secret, undefined, insecure);
}

let passwordCounter = 0;

/** Each password unique, and built from nothing the password policy refuses (the address, the name, the product). */
async function createUser(srv: TestServer, email: string, password = `violet teapot orbit ${++passwordCounter}`) {
  const { id } = (await srv.cli(['users', 'create', '--email', email, '--password', password, '--name', email.split('@')[0]!, '--verified'])) as { id: string };
  return { id, email, password };
}

async function emails(srv: TestServer): Promise<string[]> {
  return ((await srv.cli(['users', 'list'])) as { email: string }[]).map((u) => u.email);
}

/** The RP callback with an authorization code: somebody got in. */
function signedIn(step: Step): boolean {
  return !isPage(step) && new URL(step.redirect).searchParams.has('code');
}

function statusOf(step: Step): number | 'redirect' {
  return isPage(step) ? step.status : 'redirect';
}

function tally(steps: Step[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of steps) counts[String(statusOf(s))] = (counts[String(statusOf(s))] ?? 0) + 1;
  return counts;
}

function heading(page: Page): string {
  return page.doc.querySelector('h1')?.text.trim() ?? '';
}

/** The page's visible text without what legitimately differs: the address typed, the interaction id. */
function comparableText(page: Page, email: string): string {
  return (page.doc.querySelector('main') ?? page.doc).text.replaceAll(email, '<email>').replace(/\s+/g, ' ').trim();
}

/** Starts an authorization in `browser` and answers the password page: returns what follows. */
async function passwordStep(browser: Browser, rp: oidc.Configuration, email: string, password: string): Promise<Step> {
  const login = asPage((await startAuthorization(browser, rp)).step);
  assert.equal(pageKind(login), 'login');
  return browser.submit(login, 'form[action$="/login"]', { email, password });
}

/** Sign-up as a person does it: "Create an account" on the sign-in page, then the form. */
async function signUp(browser: Browser, rp: oidc.Configuration, fields: { name: string; email: string; password: string }) {
  const started = await startAuthorization(browser, rp);
  const login = asPage(started.step);
  const link = login.doc.querySelector('a[href$="/signup"]');
  assert.ok(link, 'the sign-in page links to sign-up');
  const form = asPage(await browser.get(new URL(link.getAttribute('href')!, login.url).href));
  return { ...started, step: await browser.submit(form, 'form[action$="/signup"]', fields) };
}

/** The one link in `mail` on the issuer. */
function linkIn(mail: ReceivedMail, issuer: string): string {
  const link = mail.links.find((l) => l.startsWith(`${issuer}/`));
  assert.ok(link, `a link on ${issuer} in:\n${mail.text}`);
  return link;
}

describe('second-factor budgets are spent before the code is checked', { skip: POSTGRES ? false : NEEDS_POSTGRES }, () => {
  let server: TestServer;
  let rp: oidc.Configuration;

  interface TotpUser {
    id: string;
    email: string;
    password: string;
    secret: string;
    nextCode: () => Promise<string>;
  }

  /** A user who signed in with a password, then enrolled TOTP from the account page. */
  async function createTotpUser(email: string): Promise<TotpUser> {
    const { id, password } = await createUser(server, email);
    const browser = new Browser();
    const login = asPage(await browser.get(`${server.issuer}/account`));
    await browser.submit(login, 'form[action$="/login"]', { email, password });
    const setup = asPage(await browser.get(`${server.issuer}/account/totp/setup`));
    const secret = setup.doc.querySelector('[data-totp-secret]')!.text.trim();
    const authenticator = new Authenticator(secret);
    const codes = asPage(await browser.submit(setup, 'form[action="/account/totp/setup"]', { code: await authenticator.nextCode() }));
    assert.equal(codes.doc.querySelectorAll('.recovery-codes code').length, 10, 'TOTP is enrolled');
    return { id, email, password, secret, nextCode: () => authenticator.nextCode() };
  }

  /** `n` distinct codes that are certainly wrong: none is valid for any time step near now. */
  function wrongCodes(secret: string, n: number): string[] {
    const key = base32Decode(secret);
    const now = stepAt(Date.now() / 1000);
    const valid = new Set(Array.from({ length: 11 }, (_, i) => hotp(key, now - 5 + i)));
    const codes = new Set<string>();
    while (codes.size < n) {
      const code = String(crypto.randomInt(0, 1_000_000)).padStart(6, '0');
      if (!valid.has(code)) codes.add(code);
    }
    return [...codes];
  }

  /**
   * How many wrong codes of `user` were actually checked: each one checked is audited as a
   * login.failure (a refused attempt is not), whatever its response raced into.
   */
  async function checkedCodes(user: TotpUser): Promise<number> {
    const db = new pg.Client({ connectionString: server.env.DATABASE_URL });
    await db.connect();
    try {
      const { rows } = await db.query<{ n: string }>(
        "SELECT count(*) AS n FROM audit_events WHERE type = 'login.failure' AND user_id = $1 AND data->>'method' = 'totp'",
        [user.id],
      );
      return Number(rows[0]!.n);
    } finally {
      await db.end();
    }
  }

  /**
   * Checks the answers to wrong codes fired at once: nobody got in, at most `budget` codes were
   * checked (audit) and answered 401, the rest were refused: 429, or 400 when the attempt had
   * already ended (its pending state gone) by the time the request was read.
   */
  async function assertCapped(user: TotpUser, answers: Step[], budget: number, name: string) {
    const counts = tally(answers);
    const checked = await checkedCodes(user);
    assert.ok(checked >= 1 && checked <= budget, `at most ${budget} codes checked (${name}), ${checked} were; answers: ${JSON.stringify(counts)}`);
    assert.ok((counts['401'] ?? 0) <= budget, `at most ${budget} answered 401: ${JSON.stringify(counts)}`);
    assert.ok((counts['429'] ?? 0) >= 1, `the budget refused some: ${JSON.stringify(counts)}`);
    assert.deepEqual(Object.keys(counts).filter((k) => !['400', '401', '429'].includes(k)), [], `only refusals: ${JSON.stringify(counts)}`);
  }

  async function totpPage(browser: Browser, user: TotpUser): Promise<Page> {
    const page = asPage(await passwordStep(browser, rp, user.email, user.password));
    assert.equal(pageKind(page), 'totp', 'the password is right: the second-factor page follows');
    return page;
  }

  before(async () => {
    server = await startServer({ FACTOR_RATE_LIMIT_PER_USER: '8' });
    rp = await createRp(server);
  });
  after(async () => server?.stop());

  test('40 wrong codes at once on one sign-in: at most 5 are checked, and then not even the right code gets in', async () => {
    const user = await createTotpUser('factor-attempt@example.com');
    const attacker = new Browser('attacker');
    const page = await totpPage(attacker, user);
    const answers = await Promise.all(wrongCodes(user.secret, 40).map((code) => attacker.submit(page, 'form[action$="/factor/totp"]', { code })));
    await assertCapped(user, answers, 5, 'FACTOR_RATE_LIMIT_PER_ATTEMPT');

    const right = await attacker.submit(page, 'form[action$="/factor/totp"]', { code: await user.nextCode() });
    assert.ok(!signedIn(right), 'the right code on the spent sign-in does not get in');

    // The password again on the same interaction does not buy more guesses, nor the right one.
    const interaction = page.url.match(/^.*\/interaction\/[^/?#]+/)![0];
    let step: Step = await attacker.get(interaction);
    const seen: string[] = [];
    let codeSent = false;
    for (let i = 0; i < 4 && isPage(step); i++) {
      const kind = pageKind(step);
      seen.push(`${kind} ${step.status}`);
      if (kind === 'login') step = await attacker.submit(step, 'form[action$="/login"]', { email: user.email, password: user.password });
      else if (kind === 'totp' && !codeSent) {
        codeSent = true;
        step = await attacker.submit(step, 'form[action$="/factor/totp"]', { code: await user.nextCode() });
      } else break;
    }
    assert.ok(!signedIn(step), `password again + right code on the same interaction does not get in (pages: ${seen.join(', ')})`);
  });

  test('across several sign-ins the user\'s budget (8) caps the guesses, then the right code in a new sign-in is refused', async () => {
    const user = await createTotpUser('factor-user@example.com');
    // Eight sign-ins, five guesses each: never above the per-attempt budget, far above the user's.
    const attempts: { browser: Browser; page: Page }[] = [];
    for (let i = 0; i < 8; i++) {
      const browser = new Browser(`attacker-${i}`);
      attempts.push({ browser, page: await totpPage(browser, user) });
    }
    const answers = await Promise.all(
      wrongCodes(user.secret, 40).map((code, i) => attempts[i % 8]!.browser.submit(attempts[i % 8]!.page, 'form[action$="/factor/totp"]', { code })),
    );
    await assertCapped(user, answers, 8, 'FACTOR_RATE_LIMIT_PER_USER');

    // A brand-new sign-in with the password and the right code: the user's budget is spent.
    const browser = new Browser('fresh');
    let step = await passwordStep(browser, rp, user.email, user.password);
    if (isPage(step) && pageKind(step) === 'totp') step = await browser.submit(step, 'form[action$="/factor/totp"]', { code: await user.nextCode() });
    assert.ok(!signedIn(step), 'the right code does not get in while the budget is spent');
    assert.equal(asPage(step).status, 429);
  });
});

describe('password budgets hold under concurrency', { skip: POSTGRES ? false : NEEDS_POSTGRES }, () => {
  const LIMITS = { LOGIN_RATE_LIMIT_PER_ACCOUNT: '10', LOGIN_RATE_LIMIT_PER_IP: '30' };

  test('59 wrong passwords at once for one account from fresh browsers: at most 10 checked, then the right one is refused', async () => {
    const server = await startServer(LIMITS);
    try {
      const rp = await createRp(server);
      const victim = await createUser(server, 'raced@example.com');
      // Every guess has its own browser and sign-in, prepared first, then all sent at once.
      const browsers = Array.from({ length: 59 }, (_, i) => new Browser(`guesser-${i}`));
      const logins = await Promise.all(browsers.map(async (b) => asPage((await startAuthorization(b, rp)).step)));
      const answers = await Promise.all(
        logins.map((page, i) => browsers[i]!.submit(page, 'form[action$="/login"]', { email: victim.email, password: `wrong guess ${i}` })),
      );
      const counts = tally(answers);
      const evaluated = counts['401'] ?? 0;
      assert.ok(evaluated >= 1 && evaluated <= 10, `at most 10 passwords checked (LOGIN_RATE_LIMIT_PER_ACCOUNT), got ${JSON.stringify(counts)}`);
      // Refused unchecked: 429 (budget spent) or 503 (argon2 pool full, see ARGON2_MAX_QUEUE).
      assert.equal((counts['429'] ?? 0) + (counts['503'] ?? 0), 59 - evaluated, `the rest refused unchecked: ${JSON.stringify(counts)}`);

      const right = await passwordStep(new Browser('last'), rp, victim.email, victim.password);
      assert.ok(!signedIn(right), 'the right password does not get in while the account budget is spent');
      assert.equal(asPage(right).status, 429);
    } finally {
      await server.stop();
    }
  });

  test('40 addresses at once from one IP: at most 30 checked', async () => {
    const server = await startServer(LIMITS);
    try {
      const rp = await createRp(server);
      const browsers = Array.from({ length: 40 }, (_, i) => new Browser(`sprayer-${i}`));
      const logins = await Promise.all(browsers.map(async (b) => asPage((await startAuthorization(b, rp)).step)));
      const answers = await Promise.all(
        logins.map((page, i) => browsers[i]!.submit(page, 'form[action$="/login"]', { email: `nobody-${i}@example.com`, password: 'a guess' })),
      );
      const counts = tally(answers);
      const evaluated = counts['401'] ?? 0;
      assert.ok(evaluated >= 1 && evaluated <= 30, `at most 30 attempts checked (LOGIN_RATE_LIMIT_PER_IP), got ${JSON.stringify(counts)}`);
      assert.equal((counts['429'] ?? 0) + (counts['503'] ?? 0), 40 - evaluated, `the rest refused unchecked: ${JSON.stringify(counts)}`);
    } finally {
      await server.stop();
    }
  });
});

describe('sign-up and email change', () => {
  let server: TestServer;
  let rp: oidc.Configuration;

  before(async () => {
    server = await startServer({ SMTP_URL: `smtp://127.0.0.1:${sink.port}`, ...FAST_MAIL });
    rp = await createRp(server);
  });
  after(async () => server?.stop());

  test('pre-hijacking: a sign-up with someone else\'s address creates nothing until that mailbox confirms, in the browser that signed up', async () => {
    const VICTIM = 'victim@example.com';
    const ATTACKER_PASSWORD = 'the attacker password 1';
    const VICTIM_PASSWORD = 'orchard lantern 2';

    const attacker = new Browser('attacker');
    const attempt = await signUp(attacker, rp, { name: 'Not the victim', email: VICTIM, password: ATTACKER_PASSWORD });
    assert.ok(isPage(attempt.step), `sign-up does not sign in before the mailbox is proven (got a redirect to ${(attempt.step as { redirect: string }).redirect})`);
    assert.equal(heading(attempt.step), 'Check your email');
    assert.ok(!(await emails(server)).includes(VICTIM), 'no account exists yet');
    const attackerLogin = asPage(await passwordStep(new Browser('attacker'), rp, VICTIM, ATTACKER_PASSWORD));
    assert.equal(attackerLogin.status, 401);
    assert.match(attackerLogin.doc.querySelector('[role=alert]')?.text ?? '', /Incorrect email or password/);

    // The victim gets the mail; its link is the attacker's browser's, not theirs.
    const victim = new Browser('victim');
    const planted = linkIn(await sink.next(VICTIM, /Finish creating your account/), server.issuer);
    const refused = asPage(await victim.get(planted));
    assert.equal(refused.status, 403);
    assert.match(refused.doc.querySelector('main')?.text ?? refused.html, /browser/i, 'the page says the link belongs to another browser');
    // A confirmation form on that page would be a way in: there must be none to press.
    assert.ok(!/Create account and sign in/.test(refused.html), 'no confirmation offered in the wrong browser');
    assert.ok(!(await emails(server)).includes(VICTIM), 'the refused link created nothing');

    // The victim signs up for real, in their browser, and confirms there.
    const own = await signUp(victim, rp, { name: 'Victim', email: VICTIM, password: VICTIM_PASSWORD });
    assert.equal(heading(asPage(own.step)), 'Check your email');
    const link = linkIn(await sink.next(VICTIM, /Finish creating your account/), server.issuer);
    const confirm = asPage(await victim.get(link));
    const form = confirm.doc.querySelectorAll('form').find((f) => /Create account and sign in/.test(f.text));
    assert.ok(form, `a "Create account and sign in" button on ${confirm.url}`);
    const done = await victim.submit(confirm, `form[action="${form.getAttribute('action')}"]`);
    assert.ok(signedIn(done), `the confirmation signs the victim in (got ${isPage(done) ? `${done.status} ${heading(done)}` : (done as { redirect: string }).redirect})`);
    const tokens = await oidc.authorizationCodeGrant(rp, new URL((done as { redirect: string }).redirect), { pkceCodeVerifier: own.verifier, expectedState: own.state });
    assert.equal(tokens.claims()!.email, VICTIM);
    assert.equal(tokens.claims()!.email_verified, true);

    assert.equal(asPage(await passwordStep(new Browser('attacker'), rp, VICTIM, ATTACKER_PASSWORD)).status, 401, 'the attacker\'s password never worked');
    assert.ok(signedIn(await passwordStep(new Browser('victim-2'), rp, VICTIM, VICTIM_PASSWORD)), 'the victim\'s password works');
  });

  test('sign-up with a taken address answers like a free one; the owner is told', async () => {
    const owner = await createUser(server, 'owner@example.com');
    const FREE = 'free-signup@example.com';
    const taken = await signUp(new Browser(), rp, { name: 'Someone', email: owner.email, password: 'tulip harbour 1' });
    const free = await signUp(new Browser(), rp, { name: 'Someone', email: FREE, password: 'tulip harbour 1' });
    assert.ok(isPage(taken.step) && isPage(free.step), `both answer with a page (taken: ${statusOf(taken.step)}, free: ${statusOf(free.step)})`);
    assert.equal(taken.step.status, free.step.status);
    assert.equal(heading(taken.step), 'Check your email');
    assert.equal(heading(free.step), 'Check your email');
    assert.equal(comparableText(taken.step, owner.email), comparableText(free.step, FREE), 'the same message');

    await sink.next(owner.email, /Someone tried to create an account with your email address/);
    await sink.next(FREE, /Finish creating your account/);
    assert.equal(asPage(await passwordStep(new Browser(), rp, owner.email, 'tulip harbour 1')).status, 401, 'the owner\'s account is untouched');
  });

  test('changing the email to a taken address answers like a free one; the address\'s owner is told', async () => {
    const other = await createUser(server, 'other-owner@example.com');
    const changer = await createUser(server, 'changer@example.com');
    const FREE = 'changer-new@example.com';
    const browser = new Browser();
    const login = asPage(await browser.get(`${server.issuer}/account`));
    asPage(await browser.submit(login, 'form[action$="/login"]', changer));
    const form = asPage(await browser.get(`${server.issuer}/account/email`));
    const csrf = form.doc.querySelector('form[action="/account/email"] input[name=_csrf]')!.getAttribute('value')!;
    const request = async (email: string) => {
      const res = await browser.request(`${server.issuer}/account/email`, { method: 'POST', body: new URLSearchParams({ _csrf: csrf, email }) });
      await res.arrayBuffer();
      const location = (res.headers.get('location') ?? '').replaceAll(encodeURIComponent(email), '<email>').replaceAll(email, '<email>');
      return { status: res.status, location };
    };
    const taken = await request(other.email);
    const free = await request(FREE);
    assert.deepEqual(taken, free, 'same status and redirect target');
    assert.equal(taken.status, 303);

    // The notice the account page shows for each.
    const notice = async (email: string) => {
      const res = await request(email);
      const page = asPage(await browser.get(new URL(res.location.replaceAll('<email>', encodeURIComponent(email)), server.issuer).href));
      return (page.doc.querySelector('[role=status]')?.text ?? '').replaceAll(email, '<email>').trim();
    };
    const takenNotice = await notice(other.email);
    assert.ok(takenNotice, 'a notice is shown');
    assert.equal(takenNotice, await notice(FREE));

    await sink.next(other.email, /Someone tried to use your email address/);
    await sink.next(FREE, /Confirm your new email address/);
  });

  test('the audit trail\'s email reference is keyed, not a bare hash of the address', { skip: POSTGRES ? false : READS_POSTGRES }, async () => {
    const db = new pg.Client({ connectionString: server.env.DATABASE_URL });
    await db.connect();
    try {
      const max = (await db.query<{ max: string | null }>('SELECT max(id)::text AS max FROM audit_events')).rows[0]?.max;
      const ADDRESS = 'audited@example.com';
      for (const email of [ADDRESS, ADDRESS, 'another-audited@example.com']) {
        assert.equal(asPage(await passwordStep(new Browser(), rp, email, 'not the password')).status, 401);
      }
      const { rows } = await db.query<{ data: { emailRef?: unknown } }>(
        "SELECT data FROM audit_events WHERE type = 'login.failure' AND id > $1 ORDER BY id",
        [max ?? '0'],
      );
      const refs = rows.map((r) => r.data.emailRef);
      assert.equal(refs.length, 3, `three login.failure rows (${JSON.stringify(refs)})`);
      for (const ref of refs) assert.ok(typeof ref === 'string' && ref.length >= 8, `an email reference is recorded (${String(ref)})`);
      const bare = crypto.createHash('sha256').update(ADDRESS).digest('hex').slice(0, 12);
      assert.notEqual(refs[0], bare, 'not sha256(email): anyone holding a list of addresses could reverse that');
      assert.equal(refs[0], refs[1], 'two failures on one address still correlate');
      assert.notEqual(refs[0], refs[2], 'different addresses, different references');
      assert.ok(!JSON.stringify(rows).includes(ADDRESS));
    } finally {
      await db.end();
    }
  });
});

describe('limits on sign-up and email change come before any lookup', () => {
  let server: TestServer;
  let rp: oidc.Configuration;

  before(async () => {
    server = await startServer({
      SMTP_URL: `smtp://127.0.0.1:${sink.port}`,
      ...FAST_MAIL,
      SIGNUP_RATE_LIMIT_PER_IP: '3',
      MAIL_RATE_LIMIT_PER_ADDRESS: '2',
      MAIL_RATE_LIMIT_PER_IP: '50',
    });
    rp = await createRp(server);
  });
  after(async () => server?.stop());

  test('the 4th sign-up from one IP is refused with a page and sends no mail, taken address or free', async () => {
    const taken1 = await createUser(server, 'limit-taken-1@example.com');
    const taken2 = await createUser(server, 'limit-taken-2@example.com');
    const signUpAs = async (email: string) => (await signUp(new Browser(), rp, { name: 'Signer', email, password: 'tulip harbour 2' })).step;
    const firsts = [await signUpAs('limit-free-1@example.com'), await signUpAs(taken1.email), await signUpAs('limit-free-2@example.com')];
    assert.ok(firsts.every((s) => statusOf(s) !== 429), `three sign-ups are allowed (${firsts.map(statusOf).join(', ')})`);

    for (const email of [taken2.email, 'limit-free-3@example.com']) {
      const refused = await signUpAs(email);
      assert.equal(statusOf(refused), 429, `sign-up beyond SIGNUP_RATE_LIMIT_PER_IP=3 (${email})`);
      const page = asPage(refused);
      assert.ok(heading(page), 'a rendered page, with a heading');
      assert.match(page.doc.querySelector('main')?.text ?? '', /too many|try again/i);
    }
    // The third sign-up's mail arrived, so the refused ones would have by now too.
    await sink.next('limit-free-2@example.com');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(sink.to(taken2.email).length, 0, 'no mail for a refused sign-up of a taken address');
    assert.equal(sink.to('limit-free-3@example.com').length, 0, 'no mail for a refused sign-up of a free address');
    assert.ok(!(await emails(server)).includes('limit-free-3@example.com'));
  });

  test('email change: taken and free addresses hit the limit at the same count', async () => {
    const owner = await createUser(server, 'limit-owner@example.com');
    const run = async (user: { email: string; password: string }, target: string) => {
      const browser = new Browser();
      const login = asPage(await browser.get(`${server.issuer}/account`));
      asPage(await browser.submit(login, 'form[action$="/login"]', user));
      const form = asPage(await browser.get(`${server.issuer}/account/email`));
      const answers: (number | 'redirect')[] = [];
      for (let i = 0; i < 4; i++) {
        const step = await browser.submit(form, 'form[action="/account/email"]', { email: target });
        answers.push(statusOf(step));
      }
      return answers;
    };
    const taken = await run(await createUser(server, 'limit-changer-1@example.com'), owner.email);
    const free = await run(await createUser(server, 'limit-changer-2@example.com'), 'limit-free-target@example.com');
    assert.deepEqual(taken, free, 'the same answers in the same order');
    assert.ok(taken.includes(429), `the limit (MAIL_RATE_LIMIT_PER_ADDRESS=2) is reached: ${taken.join(', ')}`);
  });
});
