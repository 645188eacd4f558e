// Passkeys in a real browser for the attack suites: Debian's Chromium driven by playwright-core,
// with a CDP virtual authenticator (user-verifying, discoverable credentials), and an RP
// redirect endpoint in the test process. Same waits as test/e2e/passkeys.test.ts, which
// explains them.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oidc from 'openid-client';
import { chromium, type Browser, type BrowserContext, type CDPSession, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
/** Without Chromium a suite is skipped on a developer machine; in CI it must run (and fail). */
export const skipWithoutChromium = !fs.existsSync(CHROMIUM) && !process.env.CI ? `${CHROMIUM} is not installed` : false;

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** One person's browser: a fresh context with a virtual platform authenticator (presence off). */
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

  static async open(browser: Browser): Promise<Device> {
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
    return new Device(context, page, cdp, authenticatorId);
  }

  async credentials() {
    return (await this.cdp.send('WebAuthn.getCredentials', { authenticatorId: this.authenticatorId })).credentials;
  }

  /** Whether the person answers the authenticator's prompts from now on. */
  async present(enabled: boolean) {
    await this.cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId: this.authenticatorId, enabled });
  }

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
    // Polled from here: page.waitForFunction evaluates with eval, which our CSP refuses.
    const deadline = Date.now() + 10_000;
    while (!(await device.page.evaluate(() => (globalThis as { autofillPending?: boolean }).autofillPending === true))) {
      if (Date.now() > deadline) throw new Error('the page never started its autofill passkey request');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await device.present(true);
  await device.page.getByRole('button', { name: button }).click();
}

/** Opens /account through the hosted sign-in (password) in the device. */
export async function signIntoAccount(device: Device, issuer: string, user: { email: string; password: string }) {
  await device.page.goto(`${issuer}/account`);
  await enterPassword(device.page, user);
  await device.page.getByRole('heading', { name: 'Your account' }).waitFor();
}

/** Adds the first passkey from the account page: returns the recovery codes that come with it. */
export async function addFirstPasskey(device: Device, name: string): Promise<string[]> {
  const { page } = device;
  await page.getByLabel('New passkey name').fill(name);
  await usePasskey(device, 'Add a passkey');
  await page.getByRole('heading', { name: 'Save your recovery codes' }).waitFor();
  const codes = (await page.getByRole('list', { name: 'Recovery codes' }).getByRole('listitem').allTextContents()).map((c) => c.trim());
  await page.getByRole('link', { name: 'I saved my codes, continue' }).click();
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  return codes;
}

/**
 * The RP's redirect URI as a real endpoint in this process (Chromium would not stop at an
 * unreachable one): browsers land there with the code, keyed by state.
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
   * Opens an authorization request (PKCE S256) in the device. `back` resolves with the callback
   * URL when the browser returns to the RP; `tokens()` redeems its code.
   */
  async authorize(config: oidc.Configuration, device: Device, params: Record<string, string> = {}) {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: this.redirectUri,
      scope: 'openid email',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      ...params,
    });
    const back = new Promise<URL>((resolve) => this.returns.set(state, (u) => resolve(new URL(u))));
    // Nobody touches the authenticator until the test clicks a passkey button.
    await device.present(false);
    await device.page.goto(url.href);
    return {
      back,
      async tokens(callback: URL) {
        return oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
      },
    };
  }
}
