// The benchmark's baseline: the same oidc-provider version Latchkey runs (from node_modules),
// bare, with its in-memory adapter, configured like Latchkey where it shapes the measured work:
// the same client (client_credentials + authorization_code + refresh_token, client_secret_basic),
// opaque access and refresh tokens, refresh rotation, the same claims and TTLs, RS256/ES256 keys.
// Only the baseline enables devInteractions (any login, no password): the benchmark drives them
// once per refresh-token chain to obtain user tokens. Loopback only; the parent ends it.
//
//   node bench/bare-provider.ts   (env: BARE_CLIENT_SECRET, BARE_REDIRECT_URI; prints one JSON line)
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider, { type Configuration } from 'oidc-provider';

const secret = process.env.BARE_CLIENT_SECRET;
const redirectUri = process.env.BARE_REDIRECT_URI;
if (!secret || !redirectUri) throw new Error('BARE_CLIENT_SECRET and BARE_REDIRECT_URI are required');

function signingKey(alg: 'RS256' | 'ES256') {
  const { privateKey } = alg === 'RS256' ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }) : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg, use: 'sig' };
}

const TTL = { accessToken: 3600, refreshToken: 14 * 24 * 3600 }; // Latchkey's defaults

const configuration: Configuration = {
  // No adapter: oidc-provider's own in-memory one.
  clients: [
    {
      client_id: 'bench',
      client_secret: secret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      redirect_uris: [redirectUri],
    },
  ],
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, email: `${sub}@bench.example`, email_verified: true, name: sub };
      },
    };
  },
  jwks: { keys: [signingKey('RS256'), signingKey('ES256')] } as Configuration['jwks'],
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'profile', 'email', 'offline_access'],
  claims: {
    openid: ['sub', 'acr', 'amr', 'auth_time'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    // Latchkey's policy: a client introspects its own tokens (the default logs a notice per call).
    introspection: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    clientCredentials: { enabled: true },
  },
  pkce: { required: () => true },
  issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  rotateRefreshToken: true,
  ttl: {
    AccessToken: TTL.accessToken,
    AuthorizationCode: 60,
    ClientCredentials: TTL.accessToken,
    IdToken: 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 365 * 24 * 3600,
    RefreshToken: TTL.refreshToken,
  },
};

// The issuer is known only once the port is: listen first, then build the provider.
const server = http.createServer();
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address() as AddressInfo;
server.on('request', new Provider(`http://localhost:${port}`, configuration).callback());
process.stdout.write(JSON.stringify({ event: 'listening', port, pid: process.pid }) + '\n');

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Never outlive the benchmark: when the parent goes, so does the baseline.
process.on('disconnect', stop);
