// Passkeys in a real browser: Debian's Chromium driven by playwright-core, with a CDP virtual
// authenticator (user-verifying, discoverable credentials). Registration from the account page
// and during inline enrolment, passwordless sign-in (button and autofill), passkey as second
// factor and for step-up, removal behind the recent-authentication gate, and attacks (another
// user's credential, a signature counter that went backwards), all through the hosted pages
// with an openid-client RP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import pg from 'pg';
import type { Browser, Page } from 'playwright-core';
import { startServer, type TestServer } from '../helpers/server.ts';
import { Authenticator } from '../helpers/totp.ts';
import { insecure } from '../helpers/rp.ts';
import { Device, RpEndpoint, addPasskey, enterPassword, launchChromium, signIntoAccount, skipWithoutChromium, usePasskey, type Credential } from '../helpers/chromium.ts';

const MFA = 'urn:latchkey:acr:mfa';
const PHR = 'urn:latchkey:acr:phr';
const RECENT_AUTH_TTL = 3;

interface User {
  id: string;
  email: string;
  password: string;
}

const endpoint = new RpEndpoint();
let server: TestServer;
/** A second server with a short RECENT_AUTH_TTL, for the recent-authentication gate. */
let shortServer: TestServer;
let rp: oidc.Configuration;
let browser: Browser;
let userCounter = 0;

async function createUser(srv: TestServer, prefix: string): Promise<User> {
  const email = `${prefix}${++userCounter}@example.com`;
  // Unique, and built from nothing the password policy refuses (the address, the name, the product).
  const password = `violet teapot orbit ${userCounter}`;
  const { id } = (await srv.cli(['users', 'create', '--email', email, '--password', password, '--verified'])) as { id: string };
  return { id, email, password };
}

/** A user who signed in with the password at /account, then added a passkey there. */
async function createPasskeyUser(prefix: string, srv = server): Promise<User & { device: Device; credential: Credential }> {
  const user = await createUser(srv, prefix);
  const device = await Device.open(browser);
  await signIntoAccount(device, srv.issuer, user);
  const codes = await addPasskey(device, `${prefix} laptop`);
  assert.equal(codes.length, 10);
  const credentials = await device.credentials();
  assert.equal(credentials.length, 1);
  return { ...user, device, credential: credentials[0]! };
}

/** An authorization request of the test RP, opened in the device (see RpEndpoint.authorize). */
function authorize(device: Device, params: Record<string, string> = {}) {
  return endpoint.authorize(rp, device, params);
}

function assertPasskeyAmr(amr: unknown) {
  assert.ok(Array.isArray(amr), 'amr is an array');
  assert.ok(amr.includes('hwk') || amr.includes('swk'), `amr names a key (hwk/swk): ${amr.join(',')}`);
  assert.ok(amr.includes('mfa'), `amr includes mfa: ${amr.join(',')}`);
}

/** The message the page script shows when the server refuses a passkey. */
async function passkeyError(page: Page): Promise<string> {
  const box = page.locator('[data-passkey-error]');
  await box.waitFor({ state: 'visible' });
  return (await box.textContent())!.trim();
}

/** Audit events of a type: from the database on PostgreSQL, from the server's log otherwise. */
async function auditEvents(srv: TestServer, type: string): Promise<{ user_id: string | null; data: Record<string, unknown> }[]> {
  if (srv.env.DATABASE_URL) {
    const client = new pg.Client({ connectionString: srv.env.DATABASE_URL });
    await client.connect();
    try {
      return (await client.query('SELECT user_id, data FROM audit_events WHERE type = $1 ORDER BY id', [type])).rows;
    } finally {
      await client.end();
    }
  }
  return srv.logs
    .join('')
    .split('\n')
    .filter((line) => line.includes('"event":"audit"'))
    .map((line) => JSON.parse(line).audit)
    .filter((a) => a.type === type);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('passkeys in Chromium', { skip: skipWithoutChromium }, () => {
  before(async () => {
    [server, shortServer, , browser] = await Promise.all([
      startServer({ STEP_UP_ENROLL: 'inline' }),
      startServer({ RECENT_AUTH_TTL: String(RECENT_AUTH_TTL) }),
      endpoint.start(),
      launchChromium(),
    ]);
    const created = (await server.cli(['clients', 'create', '--id', 'rp', '--first-party', '--redirect-uri', endpoint.redirectUri, '--grant-type', 'authorization_code'])) as { client_secret: string };
    rp = await oidc.discovery(new URL(server.issuer), 'rp', created.client_secret, undefined, insecure);
  });
  after(async () => {
    await browser?.close();
    await Promise.all([server?.stop(), shortServer?.stop()]);
    endpoint.stop();
  });

  describe('registration and passwordless sign-in', () => {
    let alice: User & { credential?: Credential };

    test('register a passkey from the account page, rename it; the first one brings ten recovery codes', async () => {
      alice = await createUser(server, 'alice');
      const device = await Device.open(browser);
      try {
        const { page } = device;
        await signIntoAccount(device, server.issuer, alice);
        await page.getByText('No passkeys yet.').waitFor();
        // Signed in a moment ago: no re-authentication before adding.
        const codes = await addPasskey(device, 'Work laptop');
        assert.equal(codes.length, 10, 'ten recovery codes');
        assert.equal(new Set(codes).size, 10);
        assert.equal(new URL(page.url()).pathname, '/account');
        await page.getByText('10 of 10 left.').waitFor();
        const nameInput = page.getByLabel('Passkey name', { exact: true });
        assert.equal(await nameInput.inputValue(), 'Work laptop');
        // Shown once: coming back for them shows none.
        await page.goto(`${server.issuer}/account/recovery-codes/new`);
        await page.getByRole('heading', { name: 'Your account' }).waitFor();
        assert.equal(await page.getByRole('list', { name: 'Recovery codes' }).count(), 0);

        await nameInput.fill('Home laptop');
        await page.getByRole('button', { name: 'Rename' }).click();
        await page.getByRole('status').filter({ hasText: 'Passkey renamed.' }).waitFor();
        assert.equal(await page.getByLabel('Passkey name', { exact: true }).inputValue(), 'Home laptop');
        await page.getByRole('button', { name: 'Remove passkey Home laptop' }).waitFor();

        const credentials = await device.credentials();
        assert.equal(credentials.length, 1);
        assert.equal(credentials[0]!.isResidentCredential, true, 'a discoverable credential');
        assert.equal(credentials[0]!.rpId, 'localhost');
        alice.credential = credentials[0];
        // The script's error box stays out of sight until there is an error to show.
        assert.equal(await page.locator('[data-passkey-error]').isVisible(), false, 'no empty error box');
      } finally {
        await device.close();
      }
    });

    test('passwordless: "Sign in with a passkey" in a new browser reaches phr', async () => {
      assert.ok(alice?.credential, 'needs the passkey registered above');
      const device = await Device.open(browser, [alice.credential]);
      try {
        const flow = await authorize(device, { acr_values: PHR });
        await usePasskey(device, 'Sign in with a passkey');
        const { claims } = await flow.tokens();
        assert.equal(claims.email, alice.email);
        assert.equal(claims.acr, PHR);
        assertPasskeyAmr(claims.amr);
        assert.ok(!(claims.amr as string[]).includes('pwd'), 'no password was used');
        assert.ok(Number(claims.auth_time) >= flow.started - 1, 'auth_time is this sign-in');
        assert.ok(Number(claims.auth_time) <= Math.floor(Date.now() / 1000) + 1);
        // The authenticator counted this use: the next test carries the key on from here.
        alice.credential = (await device.credentials())[0];
      } finally {
        await device.close();
      }
    });

    test('autofill (conditional UI) on the sign-in page signs in with the passkey', async () => {
      assert.ok(alice?.credential, 'needs the passkey registered above');
      const device = await Device.open(browser, [alice.credential]);
      try {
        const flow = await authorize(device);
        await device.page.getByRole('button', { name: 'Sign in with a passkey' }).waitFor();
        await sleep(500);
        assert.equal(flow.returned(), false, 'the autofill request waits for the person');
        // The person picks the passkey from the email field's autofill list: the virtual
        // authenticator does that for a conditional request started while presence is on.
        await device.present(true);
        await device.page.reload();
        const { claims } = await flow.tokens();
        assert.equal(claims.email, alice.email);
        assert.equal(claims.acr, PHR);
        assertPasskeyAmr(claims.amr);
      } finally {
        await device.close();
      }
    });
  });

  test('second factor after the password: "Use a passkey" (a user-verifying passkey gives phr)', async () => {
    const user = await createPasskeyUser('second');
    await user.device.close();
    const device = await Device.open(browser, [user.credential]);
    try {
      const { page } = device;
      const flow = await authorize(device);
      await enterPassword(page, user);
      await page.getByRole('heading', { name: 'Two-step verification' }).waitFor();
      await usePasskey(device, 'Use a passkey');
      const { claims } = await flow.tokens();
      // Observed: phr. The passkey was user-verified (PIN or biometrics on the authenticator),
      // so it is phishing-resistant on its own and the sign-in reaches phr, not only mfa.
      assert.equal(claims.acr, PHR);
      assertPasskeyAmr(claims.amr);
      assert.ok((claims.amr as string[]).includes('pwd'));
      assert.ok(Number(claims.auth_time) >= flow.started - 1);
    } finally {
      await device.close();
    }
  });

  test('acr_values "phr mfa" for a user with a passkey and TOTP: the passkey-only page, then phr', async () => {
    const user = await createPasskeyUser('order');
    // An authenticator app too, so a code could meet mfa.
    const { page } = user.device;
    await page.getByRole('link', { name: 'Set up authenticator app' }).click();
    const totp = new Authenticator((await page.locator('[data-totp-secret]').textContent())!.trim());
    await page.getByLabel('Authentication code').fill(await totp.nextCode());
    await page.getByRole('button', { name: 'Turn on' }).click();
    await page.getByRole('heading', { name: 'Your account' }).waitFor();
    await user.device.close();

    const device = await Device.open(browser, [user.credential]);
    try {
      const flow = await authorize(device, { acr_values: `${PHR} ${MFA}` });
      await enterPassword(device.page, user);
      await device.page.getByRole('heading', { name: 'Use your passkey' }).waitFor();
      assert.equal(await device.page.getByLabel('Authentication code').count(), 0, 'no code field: phr is listed first and this user can reach it');
      await usePasskey(device, 'Use a passkey');
      const { claims } = await flow.tokens();
      assert.equal(claims.acr, PHR);
      assertPasskeyAmr(claims.amr);
    } finally {
      await device.close();
    }
  });

  test('step-up from a password session to phr asks only for the passkey', async () => {
    // Signed in with the password, then added the passkey: the session proved the password only.
    const user = await createPasskeyUser('stepup');
    const { device } = user;
    try {
      const first = await authorize(device);
      const pwd = await first.tokens();
      assert.deepEqual(pwd.claims.amr, ['pwd'], 'a password session, no page shown');
      const sessionAuthTime = Number(pwd.claims.auth_time);

      const flow = await authorize(device, { acr_values: PHR });
      await device.page.getByRole('heading', { name: 'Use your passkey' }).waitFor();
      assert.equal(await device.page.getByLabel('Password').count(), 0, 'no password asked again');
      await usePasskey(device, 'Use a passkey');
      const { claims } = await flow.tokens();
      assert.equal(claims.acr, PHR);
      assertPasskeyAmr(claims.amr);
      assert.ok((claims.amr as string[]).includes('pwd'), 'the session’s password proof is kept');
      assert.ok(Number(claims.auth_time) >= flow.started - 1, 'auth_time is the step-up');
      assert.ok(Number(claims.auth_time) >= sessionAuthTime);
    } finally {
      await device.close();
    }
  });

  test('inline enrolment: a password-only user asked for phr creates a passkey, then uses it', async () => {
    const user = await createUser(server, 'enrol');
    const device = await Device.open(browser);
    try {
      const { page } = device;
      const flow = await authorize(device, { acr_values: PHR });
      await enterPassword(page, user);
      await page.getByRole('heading', { name: 'Add a second step' }).waitFor();
      await page.getByLabel('Passkey name').fill('Phone');
      await usePasskey(device, 'Create a passkey');
      await page.getByRole('heading', { name: 'Save your recovery codes' }).waitFor();
      assert.equal(await page.getByRole('list', { name: 'Recovery codes' }).getByRole('listitem').count(), 10);
      assert.equal(flow.returned(), false, 'creating a passkey is not signing in');
      await page.getByRole('button', { name: 'I saved my codes, continue' }).click();
      await page.getByRole('heading', { name: 'Use your passkey' }).waitFor();
      await usePasskey(device, 'Use a passkey');
      const { claims } = await flow.tokens();
      assert.equal(claims.email, user.email);
      assert.equal(claims.acr, PHR);
      assertPasskeyAmr(claims.amr);
      assert.equal((await device.credentials()).length, 1);
    } finally {
      await device.close();
    }
  });

  describe('attacks', () => {
    test('an assertion from another user’s passkey does not pass the second factor', async () => {
      const [victim, attacker] = await Promise.all([createPasskeyUser('victim'), createPasskeyUser('attacker')]);
      await victim.device.close();
      await attacker.device.close();
      // The attacker knows the victim's password and holds only their own passkey.
      const device = await Device.open(browser, [attacker.credential]);
      try {
        const { page } = device;
        const flow = await authorize(device);
        await enterPassword(page, victim);
        await page.getByRole('heading', { name: 'Two-step verification' }).waitFor();
        // The options name the victim's passkey only; the attacker drops that list so the
        // browser uses their own discoverable passkey and posts its valid assertion.
        await page.route('**/passkey/options', async (route) => {
          const response = await route.fetch();
          const options = await response.json();
          assert.equal(options.allowCredentials.length, 1, 'options list the pending user’s passkey');
          await route.fulfill({ response, json: { ...options, allowCredentials: [] } });
        });
        const [refused] = await Promise.all([page.waitForResponse('**/passkey/verify'), usePasskey(device, 'Use a passkey')]);
        assert.equal(refused.status(), 401);
        assert.equal((await refused.json()).error, 'invalid_passkey');
        assert.match(await passkeyError(page), /belongs to another account/);
        await sleep(300);
        assert.equal(flow.returned(), false, 'no code');
        assert.equal(new URL(page.url()).pathname.endsWith('/factor'), true, 'still on the second-factor page');
        const failures = (await auditEvents(server, 'login.failure')).filter((e) => e.data.signal === 'wrong_user');
        assert.equal(failures.length, 1, 'audited as wrong_user');
        assert.equal(failures[0]!.user_id, victim.id, 'against the account being signed in to');
      } finally {
        await device.close();
      }
    });

    test('a signature counter that goes backwards is refused and audited', async () => {
      const user = await createPasskeyUser('clone');
      await user.device.close();
      const device = await Device.open(browser, [user.credential]);
      try {
        const ok = await authorize(device);
        await usePasskey(device, 'Sign in with a passkey');
        assert.equal((await ok.tokens()).claims.acr, PHR);

        // A clone of the key made before that sign-in: same private key, older counter.
        const [used] = await device.credentials();
        assert.ok(used!.signCount > 0, `the authenticator keeps a counter (${used!.signCount})`);
        await device.cdp.send('WebAuthn.removeCredential', { authenticatorId: device.authenticatorId, credentialId: used!.credentialId });
        await device.cdp.send('WebAuthn.addCredential', { authenticatorId: device.authenticatorId, credential: { ...used!, signCount: 0 } });

        const again = await authorize(device, { prompt: 'login' });
        const [refused] = await Promise.all([device.page.waitForResponse('**/passkey/verify'), usePasskey(device, 'Sign in with a passkey')]);
        assert.equal(refused.status(), 401);
        assert.match(await passkeyError(device.page), /counter that went backwards/);
        await sleep(300);
        assert.equal(again.returned(), false, 'no code');
        const credential = Buffer.from(used!.credentialId, 'base64').toString('base64url');
        const events = (await auditEvents(server, 'passkey.counter_rollback')).filter((e) => credential.startsWith(String(e.data.credential)));
        assert.equal(events.length, 1, 'a passkey.counter_rollback audit event for this credential');
        assert.equal(events[0]!.user_id, user.id, 'naming the account whose passkey it is');
      } finally {
        await device.close();
      }
    });
  });

  describe('removing a passkey (RECENT_AUTH_TTL short)', () => {
    test('a user who also has a password can remove a passkey, after confirming it is them', async () => {
      const user = await createPasskeyUser('remove', shortServer);
      const { device } = user;
      const { page } = device;
      try {
        await page.getByRole('button', { name: 'Remove passkey remove laptop' }).waitFor();
        await sleep((RECENT_AUTH_TTL + 1.5) * 1000);
        // Adding one needs a recent sign-in as well: the button leads to the confirmation.
        await usePasskey(device, 'Add a passkey');
        await page.getByRole('heading', { name: 'Confirm it’s you' }).waitFor();
        await page.getByRole('link', { name: 'Back to your account' }).click();
        await page.getByRole('button', { name: 'Remove passkey remove laptop' }).click();
        await page.getByRole('heading', { name: 'Confirm it’s you' }).waitFor();
        // Confirmed with the passkey itself (password and passkey are both offered).
        await page.getByLabel('Password').waitFor();
        await usePasskey(device, 'Use a passkey');
        // Back on the account page with the passkey still there: the action is offered again.
        await page.getByRole('heading', { name: 'Your account' }).waitFor();
        await page.getByRole('button', { name: 'Remove passkey remove laptop' }).click();
        await page.getByRole('status').filter({ hasText: 'Passkey removed.' }).waitFor();
        await page.getByText('No passkeys yet.').waitFor();
        await page.getByText('Recovery codes come with a second step.').waitFor();
      } finally {
        await device.close();
      }
    });
  });
});
