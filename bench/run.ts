// `npm run bench`: throughput of the main paths against the real server, each reported as a
// ratio to a baseline measured in the same run (GET /healthz), so numbers compare across
// machines. Loopback only, bounded request counts.
import * as oidc from 'openid-client';
import { Browser, asPage, asRedirect } from '../test/helpers/browser.ts';
import { startServer } from '../test/helpers/server.ts';
import { REDIRECT, insecure } from '../test/helpers/rp.ts';

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const SCALE = Number(process.env.BENCH_SCALE ?? 1);

async function measure(name: string, total: number, op: (i: number, worker: number) => Promise<unknown>) {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, worker) => {
      for (let i = next++; i < total; i = next++) await op(i, worker);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { name, requests: total, seconds: Number(seconds.toFixed(3)), perSecond: Number((total / seconds).toFixed(1)) };
}

const server = await startServer({ LOG_LEVEL: 'warn', ARGON2_MEMORY_KIB: '19456', ARGON2_TIME_COST: '2' });
try {
  await server.cli(['users', 'create', '--email', 'bench@example.com', '--password', 'bench password 123', '--verified']);
  const created = (await server.cli(['clients', 'create', '--id', 'bench', '--first-party', '--redirect-uri', REDIRECT, '--grant-type', 'authorization_code', '--grant-type', 'refresh_token'])) as { client_secret: string };
  const rp = await oidc.discovery(new URL(server.issuer), 'bench', created.client_secret, undefined, insecure);

  async function signIn() {
    const browser = new Browser();
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT,
      scope: 'openid email offline_access',
      prompt: 'consent',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    const login = asPage(await browser.get(url.href));
    const callback = asRedirect(await browser.submit(login, 'form[action$="/login"]', { email: 'bench@example.com', password: 'bench password 123' }));
    return oidc.authorizationCodeGrant(rp, new URL(callback), { pkceCodeVerifier: verifier });
  }

  const tokens = await Promise.all(Array.from({ length: CONCURRENCY }, signIn));
  const refreshTokens = tokens.map((t) => t.refresh_token!);
  const results = [
    await measure('baseline GET /healthz', 2000 * SCALE, () => fetch(`${server.issuer}/healthz`).then((r) => r.arrayBuffer())),
    await measure('GET discovery', 1000 * SCALE, () => fetch(`${server.issuer}/.well-known/openid-configuration`).then((r) => r.arrayBuffer())),
    await measure('GET sign-in page (new interaction)', 300 * SCALE, async () => {
      const url = oidc.buildAuthorizationUrl(rp, { redirect_uri: REDIRECT, scope: 'openid', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256' });
      await new Browser().get(url.href);
    }),
    await measure('introspection', 500 * SCALE, (i) => oidc.tokenIntrospection(rp, tokens[i % tokens.length]!.access_token)),
    // Each worker rotates its own refresh token chain.
    await measure('refresh (rotation)', 300 * SCALE, async (_i, worker) => {
      const next = await oidc.refreshTokenGrant(rp, refreshTokens[worker]!);
      refreshTokens[worker] = next.refresh_token!;
    }),
    await measure('full sign-in (password, argon2id OWASP) + code exchange', 40 * SCALE, signIn),
  ];
  const baseline = results[0]!.perSecond;
  const table = results.map((r) => ({ ...r, ratioToBaseline: Number((r.perSecond / baseline).toFixed(4)) }));
  console.table(table);
  console.log(JSON.stringify({ concurrency: CONCURRENCY, database: process.env.DATABASE_URL ? 'postgresql' : 'embedded-pglite', results: table }));
} finally {
  await server.stop();
}
