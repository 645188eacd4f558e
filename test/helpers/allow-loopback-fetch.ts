// Preloaded into a test server process (NODE_OPTIONS=--import, see loopbackFetchEnv) so that
// oidc-provider's outgoing requests (back-channel logout) may reach ONE loopback test endpoint.
//
// oidc-provider 9 refuses to connect to special-use addresses (loopback, private, TEST-NET...):
// SSRF protection, applied through a `dispatcher` it passes to fetch. A test RP can only listen
// on loopback, so for exactly the origin in LATCHKEY_TEST_FETCH_ALLOW_ORIGIN that dispatcher is
// dropped; every other destination keeps the protection.
import { fileURLToPath } from 'node:url';

const allowed = process.env.LATCHKEY_TEST_FETCH_ALLOW_ORIGIN;

if (allowed) {
  const original = globalThis.fetch;
  globalThis.fetch = (input: string | URL | Request, init?: RequestInit) => {
    const href = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (init && URL.parse(href)?.origin === allowed && 'dispatcher' in init) {
      const { dispatcher: _protected, ...rest } = init as RequestInit & { dispatcher?: unknown };
      return original(input, rest);
    }
    return original(input, init);
  };
}

/** Env for startServer() letting the server's outgoing requests reach `origin` (a loopback test RP). */
export function loopbackFetchEnv(origin: string): Record<string, string> {
  const preload = `--import=${JSON.stringify(fileURLToPath(import.meta.url))}`;
  return {
    NODE_OPTIONS: [process.env.NODE_OPTIONS, preload].filter(Boolean).join(' '),
    LATCHKEY_TEST_FETCH_ALLOW_ORIGIN: new URL(origin).origin,
  };
}
