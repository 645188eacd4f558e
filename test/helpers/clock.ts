// A moved clock for one browser session. The server never keeps a session in memory: every
// request reads it from the database, and everything it compares with "now" is a stored time
// (the row's expires_at on the database's clock; the payload's iat, exp and loginTs on Node's;
// the device-session row's times; the proof times of the session's factors). Moving every one of
// those back by N seconds is exactly what the server would see if its clocks (Node's and the
// database's) had moved forward by N while nobody used this session, without waiting and
// without touching any other session, rate-limit window or key.
//
// What moves, for the session behind a browser's session cookie (found by its uid, which
// survives id rotation):
// - its oidc_payloads rows (model Session): expires_at, created_at, payload iat/exp/loginTs;
// - the grants it holds (payload.authorizations[*].grantId) and every artifact issued under them
//   (codes, access and refresh tokens): expires_at, consumed_at, created_at, payload
//   iat/exp/nbf/authTime/loginTs;
// - its device_sessions row: created_at, last_active_at, last_auth_at;
// - its session_proofs row: each proof's `at`, updated_at.
// What does not: an interaction in flight (move the clock between complete journeys) and the
// browser's own clock: the test browser keeps sending a remembered cookie past its `expires`,
// as a copied cookie would be sent, so a refusal is the server's, not the browser's.
import type { Db } from '../../src/db/knex.ts';
import { sha256Hex } from '../../src/security/crypto.ts';
import type { Browser } from './browser.ts';
import { withServerDb, type TestServer } from './server.ts';

export const MINUTE = 60;
export const HOUR = 3600;
export const DAY = 24 * HOUR;

const SESSION_COOKIE = 'lk.session';
/** Payload fields that are epoch seconds (oidc-provider's models and ours). */
const TIME_FIELDS = ['iat', 'exp', 'nbf', 'loginTs', 'authTime'] as const;

/** The provider session id in `browser`'s session cookie (the signature is the server's business). */
export async function sessionCookieId(server: TestServer, browser: Browser): Promise<string> {
  const cookie = (await browser.jar.getCookies(server.issuer)).find((c) => c.key === SESSION_COOKIE);
  if (!cookie) throw new Error(`the browser has no ${SESSION_COOKIE} cookie for ${server.issuer}`);
  return cookie.value;
}

/** The uid of the session behind the cookie, expired or not (rows stay until the sweep). */
async function sessionUid(db: Db, cookieId: string): Promise<string> {
  const row = (await db('oidc_payloads').where({ model: 'Session', id_hash: sha256Hex(cookieId) }).first('uid')) as { uid: string | null } | undefined;
  if (!row?.uid) throw new Error('no stored session for this browser: was it swept, or never signed in?');
  return row.uid;
}

function shifted(payload: Record<string, unknown>, seconds: number): Record<string, unknown> {
  const out = { ...payload };
  for (const field of TIME_FIELDS) if (typeof out[field] === 'number') out[field] = (out[field] as number) - seconds;
  return out;
}

/**
 * Moves the clock forward by `seconds` for the session behind `browser`'s cookie (see the top of
 * this file for what moves). Returns the session's uid.
 */
export async function advanceSessionClock(server: TestServer, browser: Browser, seconds: number): Promise<string> {
  if (!Number.isInteger(seconds) || seconds <= 0) throw new Error(`advance by a positive whole number of seconds, not ${seconds}`);
  const cookieId = await sessionCookieId(server, browser);
  return withServerDb(server, (db) =>
    db.transaction(async (trx) => {
      const back = (column: string) => trx.raw('?? - make_interval(secs => ?)', [column, seconds]);
      const uid = await sessionUid(trx, cookieId);

      const sessions = (await trx('oidc_payloads').where({ model: 'Session', uid }).select('model', 'id_hash', 'payload')) as StoredRow[];
      const grantIds = new Set<string>();
      for (const { payload } of sessions) {
        const authorizations = (payload.authorizations ?? {}) as Record<string, { grantId?: string }>;
        for (const { grantId } of Object.values(authorizations)) if (grantId) grantIds.add(grantId);
      }
      const issued = grantIds.size
        ? ((await trx('oidc_payloads')
            .where((q) => q.where('model', 'Grant').whereIn('id_hash', [...grantIds].map((id) => sha256Hex(id))))
            .orWhereIn('grant_id', [...grantIds])
            .select('model', 'id_hash', 'payload')) as StoredRow[])
        : [];
      const rows = new Map([...sessions, ...issued].map((row) => [`${row.model}:${row.id_hash}`, row]));
      for (const row of rows.values()) {
        await trx('oidc_payloads')
          .where({ model: row.model, id_hash: row.id_hash })
          .update({
            payload: JSON.stringify(shifted(row.payload, seconds)),
            expires_at: back('expires_at'),
            consumed_at: back('consumed_at'),
            created_at: back('created_at'),
          });
      }

      await trx('device_sessions')
        .where({ session_uid: uid })
        .update({ created_at: back('created_at'), last_active_at: back('last_active_at'), last_auth_at: back('last_auth_at') });

      const proofs = (await trx('session_proofs').where({ session_uid: uid }).first('proofs')) as { proofs: { at: number }[] } | undefined;
      if (proofs) {
        await trx('session_proofs')
          .where({ session_uid: uid })
          .update({ proofs: JSON.stringify(proofs.proofs.map((p) => ({ ...p, at: p.at - seconds }))), updated_at: back('updated_at') });
      }
      return uid;
    }),
  );
}

interface StoredRow {
  model: string;
  id_hash: string;
  payload: Record<string, unknown>;
}

export interface SessionTimes {
  /** Seconds since the session was created (payload iat), on the session's moved clock. */
  age: number;
  /** Seconds the stored row has left on the database's clock (negative: expired). */
  left: number;
  /** The payload's exp minus its iat: how far past its creation the session may live as saved now. */
  lifetime: number;
}

/** Where the session behind `browser`'s cookie stands, as the server would read it now. */
export async function sessionTimes(server: TestServer, browser: Browser): Promise<SessionTimes> {
  const cookieId = await sessionCookieId(server, browser);
  return withServerDb(server, async (db) => {
    const row = (await db('oidc_payloads')
      .where({ model: 'Session', id_hash: sha256Hex(cookieId) })
      .first('payload', db.raw('extract(epoch from expires_at - now())::float8 as left'), db.raw('extract(epoch from now())::float8 as now'))) as
      | { payload: { iat: number; exp: number }; left: number; now: number }
      | undefined;
    if (!row) throw new Error('no stored session for this browser');
    return { age: Math.round(row.now - row.payload.iat), left: Math.round(row.left), lifetime: row.payload.exp - row.payload.iat };
  });
}
