// oidc-provider configuration: the protocol is the library's; this file only decides policy.
import Provider, { errors, type Configuration, type KoaContextWithOIDC, type Account } from 'oidc-provider';
import type { Config } from '../config.ts';
import type { Db } from '../db/knex.ts';
import type { Views } from '../http/views.ts';
import { findActiveUser } from '../identity/users.ts';
import { rolesAndGroups } from '../identity/roles.ts';
import { createAdapterClass } from './adapter.ts';
import type { AssurancePolicy } from '../assurance/index.ts';
import type { ClientStore } from './clients.ts';
import { createInteractionPolicy } from './policy.ts';
import { withVerifiedEmailPrompt } from './verified-email.ts';
import type { FactorRegistry } from '../methods/registry.ts';
import { loadSessionGrant } from './grants.ts';
import { sessionTtl } from '../sessions/timeouts.ts';
import { sha256Hex } from '../security/crypto.ts';

export const SCOPES = ['openid', 'profile', 'email', 'offline_access', 'roles'] as const;

/** The Account API's resource indicator and JWT audience (RFC 8707): `<ISSUER>/api/account`. */
export const accountApiAudience = (issuer: string) => `${issuer}/api/account`;
export const ACCOUNT_API_SCOPES = ['account:read', 'account:write'] as const;

/** The first-party client the hosted account pages sign in through (registered statically). */
export const ACCOUNT_CLIENT_ID = 'latchkey-account';

export interface ProviderDeps {
  config: Config;
  db: Db;
  views: Views;
  clients: ClientStore;
  jwks: { keys: object[] };
  cookieKeys: string[];
  atRestKey: Buffer;
  factors: FactorRegistry;
  assurance: AssurancePolicy;
}

const ERROR_HEADINGS: Record<string, string> = {
  invalid_redirect_uri: 'This application is not set up correctly',
  invalid_client: 'Unknown application',
  invalid_request: 'Something is wrong with this sign-in request',
  invalid_scope: 'This application asked for something it may not have',
  unauthorized_client: 'This application may not do that',
  unsupported_response_type: 'Something is wrong with this sign-in request',
  access_denied: 'Access denied',
  server_error: 'Something went wrong on our side',
  temporarily_unavailable: 'Please try again in a moment',
};

export function assurancePolicyFrom(config: Config): AssurancePolicy {
  return { names: config.acr, elevationTtl: config.stepUp.ttl };
}

export function createProvider(deps: ProviderDeps): Provider {
  const { config, db, views, clients, assurance } = deps;

  async function findAccount(_ctx: KoaContextWithOIDC, sub: string): Promise<Account | undefined> {
    const user = await findActiveUser(db, sub);
    // An account waiting out its deletion grace period gets no tokens for any client.
    if (!user) return undefined;
    return {
      accountId: user.id,
      async claims(_use, scope) {
        // Roles (from a federation's role map) and the IdP's groups, only under the `roles` scope.
        const extra = scope.split(' ').includes('roles') ? await rolesAndGroups(db, user.id) : {};
        return { sub: user.id, email: user.email, email_verified: user.email_verified, name: user.name ?? undefined, picture: user.picture ?? undefined, ...extra };
      },
    };
  }

  const cookieBase = { httpOnly: true, sameSite: 'lax' as const, secure: config.secureCookies, signed: true };
  // Over https the session cookie is `__Host-` (Secure, Path=/, no Domain: no subdomain can set or
  // shadow it). Interaction and resume cookies are path-scoped, so `__Secure-` is the most they take.
  const hostPrefix = config.secureCookies ? '__Host-' : '';
  const securePrefix = config.secureCookies ? '__Secure-' : '';

  const configuration: Configuration = {
    adapter: createAdapterClass(db, deps.atRestKey, (id) => clients.findForProvider(id), { refreshReuseGraceSeconds: config.refreshReuseGraceSeconds }),
    findAccount,
    jwks: deps.jwks as Configuration['jwks'],
    cookies: {
      keys: deps.cookieKeys,
      long: { ...cookieBase, path: '/' },
      short: { ...cookieBase },
      names: { session: `${hostPrefix}lk.session`, interaction: `${securePrefix}lk.interaction`, resume: `${securePrefix}lk.resume` },
    },
    claims: {
      // acr/amr/auth_time in every ID token, not only when the RP asked: RPs must be able to rely on them.
      openid: ['sub', 'acr', 'amr', 'auth_time'],
      email: ['email', 'email_verified'],
      profile: ['name', 'picture'],
      roles: ['roles', 'groups'],
      acr: null,
      amr: null,
      auth_time: null,
      sid: null,
      iss: null,
    },
    scopes: [...SCOPES],
    acrValues: [config.acr.pwd, config.acr.mfa, config.acr.phr],
    // 'none' serves the account pages' own sign-in (a session, no tokens).
    responseTypes: ['code', 'none'],
    clients: [
      {
        client_id: ACCOUNT_CLIENT_ID,
        client_name: 'Your account',
        token_endpoint_auth_method: 'none',
        response_types: ['none'],
        grant_types: [],
        redirect_uris: [`${config.issuer}/account/callback`],
        first_party: true,
      },
    ],
    // Advertise only what the CLI can register.
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'none'],
    // Put the scope-granted claims into the ID token too: RPs read email/name from it.
    conformIdTokenClaims: false,
    extraClientMetadata: {
      properties: ['first_party', 'require_verified_email', 'resource_server', 'events_uri', 'account_api'],
      validator(_ctx, key, value) {
        // events_uri: where Security Event Tokens are pushed (RFC 8935); http(s) only.
        if (key === 'events_uri') {
          if (value !== undefined && (typeof value !== 'string' || !/^https?:$/.test(URL.parse(value)?.protocol ?? ''))) throw new errors.InvalidClientMetadata('events_uri must be an http(s) URL');
          return;
        }
        if (value !== undefined && typeof value !== 'boolean') throw new errors.InvalidClientMetadata(`${key} must be a boolean`);
      },
    },
    features: {
      devInteractions: { enabled: false },
      introspection: {
        enabled: true,
        // A client introspects its own tokens; only clients registered as resource servers
        // (--resource-server) may introspect tokens issued to others.
        allowedPolicy: async (_ctx, client, token) =>
          token.clientId === client.clientId || Boolean((client as unknown as { resource_server?: boolean }).resource_server && client.clientAuthMethod !== 'none'),
      },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      clientCredentials: { enabled: true },
      claimsParameter: { enabled: true },
      backchannelLogout: { enabled: true },
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          const action = /action="([^"]+)"/.exec(form)?.[1];
          const xsrf = /name="xsrf" value="([^"]+)"/.exec(form)?.[1];
          const client = ctx.oidc.client;
          views.render(ctx, 'logout', { action, xsrf, clientName: client?.clientName ?? client?.clientId, title: 'Sign out' });
        },
        async postLogoutSuccessSource(ctx) {
          const client = ctx.oidc.client;
          views.render(ctx, 'logout-success', { clientName: client?.clientName ?? client?.clientId, title: 'Signed out' });
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined as unknown as string,
        useGrantedResource: () => false,
        getResourceServerInfo(_ctx, resourceIndicator, client) {
          // The Account API is the one resource server; only clients registered with
          // --account-api may ask for it (and so for its account:read / account:write scopes).
          if (resourceIndicator !== accountApiAudience(config.issuer)) throw new errors.InvalidTarget('unknown or unsupported resource indicator');
          if (!(client as unknown as { account_api?: boolean }).account_api) throw new errors.InvalidTarget('this client is not registered for the Account API');
          return {
            scope: ACCOUNT_API_SCOPES.join(' '),
            audience: accountApiAudience(config.issuer),
            accessTokenFormat: 'jwt',
            accessTokenTTL: config.ttl.accessToken,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    formats: {
      customizers: {
        // JWT access tokens are not stored, so revoking their grant would not reach them: they
        // name their grant (by the hash its row is stored under; the id itself stays secret) and
        // the Account API checks it still exists on every call.
        jwt(_ctx, token, jwt) {
          const grantId = (token as { grantId?: string }).grantId;
          if (grantId) jwt.payload.grant_ref = sha256Hex(grantId);
        },
      },
    },
    discovery: {
      // Where an RP sends its users to manage their account (OpenID Connect Account Management).
      account_management_uri: `${config.issuer}/account`,
    },
    pkce: {
      // Every client, confidential ones too (RFC 9700 §2.1.1); S256 is the only method the library accepts.
      required: () => true,
    },
    issueRefreshToken: async (_ctx, client, code) =>
      client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    rotateRefreshToken: true,
    // Resource servers decide on assurance too (RFC 9470): access tokens carry acr and auth_time,
    // visible in introspection and in JWT access tokens.
    async extraTokenClaims(ctx, token) {
      if (token.kind !== 'AccessToken') return undefined;
      const entities = ctx.oidc.entities as Record<string, { acr?: string; amr?: string[]; authTime?: number } | undefined>;
      const source = entities.AuthorizationCode ?? entities.RefreshToken;
      if (!source?.acr && !source?.authTime) return undefined;
      return { acr: source.acr, amr: source.amr, auth_time: source.authTime };
    },
    ttl: {
      AccessToken: config.ttl.accessToken,
      AuthorizationCode: 60,
      ClientCredentials: config.ttl.accessToken,
      IdToken: config.ttl.idToken,
      Interaction: config.ttl.interaction,
      // Idle (short, or long when remembered) and absolute timeouts: see sessions/timeouts.ts.
      Session: (_ctx, session) => sessionTtl(config.sessionTimeouts, session),
      Grant: config.ttl.grant,
      RefreshToken: config.ttl.refreshToken,
      BackchannelAuthenticationRequest: 600,
      DeviceCode: 600,
    },
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
      policy: withVerifiedEmailPrompt(createInteractionPolicy(assurance, db, deps.factors), db),
    },
    // One grant per sign-in and client: refresh-token reuse revokes a grant, so a grant is one
    // device's token family (remembered consent is copied into it, see grants.ts).
    loadExistingGrant: (ctx) => loadSessionGrant(ctx, db),
    clientBasedCORS(_ctx, origin, client) {
      return client.redirectUris?.some((uri) => URL.parse(uri)?.origin === origin) ?? false;
    },
    async renderError(ctx, out) {
      const code = String(out.error ?? 'server_error');
      const status = ctx.status >= 400 ? ctx.status : 400;
      views.render(
        ctx,
        'error',
        {
          title: 'Error',
          heading: ERROR_HEADINGS[code] ?? 'Something went wrong',
          message:
            code === 'server_error'
              ? 'An unexpected error occurred. Please try again; if it keeps happening, contact support with the reference below.'
              : out.error_description,
          status,
          requestId: ctx.state.requestId,
        },
        status,
      );
    },
  };

  const provider = new Provider(config.issuer, configuration);
  provider.proxy = config.trustProxy;
  // The client IP is the entry our own proxies appended to X-Forwarded-For, not one a client wrote.
  provider.maxIpsCount = config.trustProxyHops;
  return provider;
}
