// Passkeys in a real browser, for test/e2e/passkeys.test.ts and the attack suites: Debian's
// Chromium driven by playwright-core, with a CDP virtual authenticator (user-verifying,
// discoverable credentials), and the RP's redirect endpoint in the test process.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as oidc from 'openid-client';
import { chromium, type Browser, type BrowserContext, type CDPSession, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
/** Without Chromium a suite is skipped on a developer machine; in CI it must run (and fail). */
export const skipWithoutChromium = !fs.existsSync(CHROMIUM) && !process.env.CI ? `${CHROMIUM} is not installed` : false;

/** Browsers launched and not closed yet. */
const openBrowsers = new Set<Browser>();

export async function launchChromium(): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    // A launch that hangs fails well before the test's own timeout (playwright's default is 3 min).
    timeout: 60_000,
  });
  openBrowsers.add(browser);
  browser.on('disconnected', () => openBrowsers.delete(browser));
  return browser;
}

// After every test and hook of the file: a browser the file did not close (e.g. launched in the
// same Promise.all as a server that failed to start, so never assigned) would keep the process,
// and `npm test`, from exiting. Playwright kills what is left when the process exits.
after(async () => {
  await Promise.all([...openBrowsers].map((browser) => Promise.race([browser.close().catch(() => {}), sleep(10_000)])));
});

/** A passkey as the virtual authenticator exports it (private key included), to carry to another device. */
export type Credential = Awaited<ReturnType<Device['credentials']>>[number];

/**
 * One person's browser: a fresh context (no cookies) with a page and a virtual platform
 * authenticator that verifies the user, holding `credentials` (exported from another device).
 *
 * Presence simulation stands for the person answering the authenticator's prompt. It starts
 * off: with it on, Chromium's virtual authenticator also answers the sign-in page's conditional
 * (autofill) request at once, as if the person had picked the passkey from the autofill list,
 * so the page would sign in before anyone clicked. A click on a passkey button turns it on
 * first (`usePasskey`), once the page's autofill request is pending: one started while presence
 * was off keeps waiting for the person.
 */
export class Device {
  readonly context: BrowserContext;
  readonly page: Page;
  readonly cdp: CDPSession;
  readonly authenticatorId: string;

  constructor(context: BrowserContext, page: Page, cdp: CDPSession, authenticatorId: string) {
    this.context = context;
    this.page = page;
    this.cdp = cdp;
    this.authenticatorId = authenticatorId;
  }

  static async open(browser: Browser, credentials: Credential[] = []): Promise<Device> {
    const context = await browser.newContext();
    // Observe (not change) the page's conditional request, to know when it is pending.
    await context.addInitScript(`{
      const get = navigator.credentials.get.bind(navigator.credentials);
      navigator.credentials.get = (options) => {
        if (options && options.mediation === 'conditional') window.autofillPending = true;
        return get(options);
      };
    }`);
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: false },
    });
    for (const credential of credentials) await cdp.send('WebAuthn.addCredential', { authenticatorId, credential });
    return new Device(context, page, cdp, authenticatorId);
  }

  async credentials() {
    return (await this.cdp.send('WebAuthn.getCredentials', { authenticatorId: this.authenticatorId })).credentials;
  }

  /** Whether the person answers the authenticator's prompts from now on. */
  async present(enabled: boolean) {
    await this.cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId: this.authenticatorId, enabled });
  }

  /** Where the page is and what it says, for failure messages. */
  async describe(): Promise<string> {
    const text = await this.page.locator('body').innerText({ timeout: 1000 }).catch(() => '(no page)');
    return `${this.page.url()}:\n${text.trim().slice(0, 500)}`;
  }

  close() {
    return this.context.close();
  }
}

/** Fills the hosted sign-in page with the password, as a person would. */
export async function enterPassword(page: Page, user: { email: string; password: string }) {
  await page.getByRole('textbox', { name: 'Email', exact: true }).fill(user.email);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

/** Clicks a passkey button and answers the authenticator's prompt. */
export async function usePasskey(device: Device, button: string) {
  if (await device.page.locator('[data-passkey-autofill]').count()) {
    // Polled from here: page.waitForFunction compiles its predicate with eval inside the page,
    // which our CSP (no 'unsafe-eval') refuses whenever the first check is not already true.
    const deadline = Date.now() + 10_000;
    while (!(await device.page.evaluate(() => (globalThis as { autofillPending?: boolean }).autofillPending === true))) {
      if (Date.now() > deadline) throw new Error('the page never started its autofill passkey request');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await device.present(true);
  await device.page.getByRole('button', { name: button }).click();
}

/** Opens /account (through the hosted sign-in with the password) in the device. */
export async function signIntoAccount(device: Device, issuer: string, user: { email: string; password: string }) {
  await device.page.goto(`${issuer}/account`);
  await enterPassword(device.page, user);
  await device.page.getByRole('heading', { name: 'Your account' }).waitFor();
}

/**
 * Adds a passkey from the account page. The first one brings recovery codes, shown once:
 * returns them (empty for later passkeys) after coming back to the account page.
 */
export async function addPasskey(device: Device, name: string): Promise<string[]> {
  const { page } = device;
  await page.getByLabel('New passkey name').fill(name);
  await usePasskey(device, 'Add a passkey');
  const codesHeading = page.getByRole('heading', { name: 'Save your recovery codes' });
  const notice = page.getByRole('status').filter({ hasText: 'Passkey added.' });
  await codesHeading.or(notice).waitFor();
  if (!(await codesHeading.isVisible())) return [];
  const codes = (await page.getByRole('list', { name: 'Recovery codes' }).getByRole('listitem').allTextContents()).map((c) => c.trim());
  await page.getByRole('link', { name: 'I saved my codes, continue' }).click();
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  return codes;
}

/**
 * The RP's redirect URI is a real endpoint in this process, where the browser lands with the
 * code, keyed by state. (A page.route() on http://localhost:9/cb does not catch the last hop of
 * a redirect chain started by page.goto(): Chromium goes to the network, ERR_UNSAFE_PORT or
 * refused.)
 */
export class RpEndpoint {
  private returns = new Map<string, (url: string) => void>();
  private server: http.Server | undefined;
  redirectUri = '';

  async start() {
    this.server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', this.redirectUri);
      this.returns.get(url.searchParams.get('state') ?? '')?.(url.href);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('back at the application');
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.redirectUri = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/cb`;
  }

  stop() {
    this.server?.closeAllConnections();
    this.server?.close();
  }

  /**
   * The RP side: an authorization request built by openid-client (PKCE S256), opened in the
   * device. `back` resolves with the callback URL when the browser comes back to the RP;
   * `redeem()` redeems a callback's code; `tokens()` waits for the browser to come back with a
   * code and redeems it.
   */
  async authorize(config: oidc.Configuration, device: Device, params: Record<string, string> = {}) {
    const redirectUri = this.redirectUri;
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid email',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      ...params,
    });
    let returned: string | undefined;
    const back = new Promise<URL>((resolve) => {
      this.returns.set(state, (u) => {
        returned = u;
        resolve(new URL(u));
      });
    });
    const started = Math.floor(Date.now() / 1000);
    // Nobody touches the authenticator until the test clicks a passkey button.
    await device.present(false);
    await device.page.goto(url.href);
    const redeem = (callback: URL) => oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
    return {
      started,
      back,
      /** Whether the browser came back to the RP (with a code or an error) for this request. */
      returned: () => returned !== undefined,
      redeem,
      async tokens(timeoutMs = 10_000) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(async () => reject(new Error(`the browser did not come back to the RP within ${timeoutMs} ms; it shows ${await device.describe()}`)), timeoutMs);
        });
        const callback = await Promise.race([back, timeout]).finally(() => clearTimeout(timer));
        // The RP saw the request; let the browser finish landing there before anything else.
        await device.page.waitForURL((u) => u.href.startsWith(redirectUri));
        assert.equal(callback.searchParams.get('error'), null, `the RP got an error: ${callback.search}`);
        const tokens = await redeem(callback);
        return { tokens, claims: tokens.claims()! };
      },
    };
  }
}
