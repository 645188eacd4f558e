// Relying-party helpers over openid-client: authorize through the hosted pages, walking each
// page the way a person would, and report which pages appeared and what the tokens say.
import * as oidc from 'openid-client';
import { Browser, isPage, type Page } from './browser.ts';
import type { TestServer } from './server.ts';

export const REDIRECT = 'http://localhost:9/cb';
export const insecure = { execute: [oidc.allowInsecureRequests] };

export interface Credentials {
  email: string;
  password: string;
  /** Returns the next TOTP code (see Authenticator). */
  totp?: () => Promise<string>;
}

let userCounter = 0;

/** A new verified password user made with the CLI: `<prefix><n>@example.com`. */
export async function createVerifiedUser(server: TestServer, prefix: string): Promise<Credentials> {
  const email = `${prefix}${++userCounter}@example.com`;
  // Unique, and built from nothing the password policy refuses (the address, the name, the product).
  const password = `violet teapot orbit ${userCounter}`;
  await server.cli(['users', 'create', '--email', email, '--password', password, '--verified']);
  return { email, password };
}

export type PageKind = 'login' | 'totp' | 'enroll' | 'consent' | 'other';

export function pageKind(page: Page): PageKind {
  if (page.doc.querySelector('form[action$="/login"] input[name=password]')) return 'login';
  if (page.doc.querySelector('form[action$="/factor/totp"]')) return 'totp';
  if (page.doc.querySelector('form[action$="/enroll/totp"], [data-passkey-action=register]') && /Add a second step/.test(page.html)) return 'enroll';
  if (page.doc.querySelector('form[action$="/consent"]')) return 'consent';
  return 'other';
}

/**
 * Builds an authorization request (PKCE S256, random state, `params` on top of the defaults) and
 * opens it in `browser`: returns the first page (or the RP redirect) and what the exchange needs.
 */
export async function startAuthorization(browser: Browser, config: oidc.Configuration, params: Record<string, string> = {}) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid email profile',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    ...params,
  });
  return { step: await browser.get(url.href), verifier, state };
}

export interface AuthorizeOutcome {
  pages: PageKind[];
  /** The last page when the walk stopped on one (enrolment, an error…). */
  stoppedAt?: Page;
  callback?: URL;
  tokens?: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
}

/** Starts an authorization and answers the sign-in pages until the RP gets its callback. */
export async function authorize(
  config: oidc.Configuration,
  browser: Browser,
  creds: Credentials,
  params: Record<string, string> = {},
  stopAt: PageKind[] = ['enroll', 'other'],
): Promise<AuthorizeOutcome> {
  const started = await startAuthorization(browser, config, params);
  const { verifier, state } = started;
  const pages: PageKind[] = [];
  let step = started.step;
  for (let i = 0; i < 10 && isPage(step); i++) {
    const page = step;
    const kind = pageKind(page);
    pages.push(kind);
    if (stopAt.includes(kind)) return { pages, stoppedAt: page };
    if (kind === 'login') step = await browser.submit(page, 'form[action$="/login"]', { email: creds.email, password: creds.password });
    else if (kind === 'totp') step = await browser.submit(page, 'form[action$="/factor/totp"]', { code: await creds.totp!() });
    else if (kind === 'consent') step = await browser.submit(page, 'form[action$="/consent"]');
    else return { pages, stoppedAt: page };
  }
  const callback = new URL((step as { redirect: string }).redirect);
  if (callback.searchParams.get('error')) return { pages, callback };
  const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
  return { pages, callback, tokens };
}

/**
 * The same client as `config`, its back-channel requests (token, introspection, revocation,
 * userinfo, keys) sent to `instanceUrl`: another process serving the same issuer, as a load
 * balancer would route them.
 */
export function throughInstance(config: oidc.Configuration, instanceUrl: string, clientSecret: string): oidc.Configuration {
  const { supportsPKCE: _pkce, ...meta } = config.serverMetadata();
  const on = (endpoint: string | undefined) => {
    if (!endpoint) return undefined;
    const url = new URL(endpoint);
    url.host = new URL(instanceUrl).host;
    return url.href;
  };
  const via = new oidc.Configuration(
    {
      ...meta,
      token_endpoint: on(meta.token_endpoint),
      introspection_endpoint: on(meta.introspection_endpoint),
      revocation_endpoint: on(meta.revocation_endpoint),
      userinfo_endpoint: on(meta.userinfo_endpoint),
      jwks_uri: on(meta.jwks_uri),
    },
    config.clientMetadata().client_id,
    clientSecret,
  );
  oidc.allowInsecureRequests(via);
  return via;
}
