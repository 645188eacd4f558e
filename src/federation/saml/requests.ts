// AuthnRequests in flight and the assertion replay cache. A RelayState is a random bearer value
// stored only as a hash, bound to one OIDC interaction, one browser (a secret kept in a cookie
// scoped to that interaction) and one AuthnRequest ID; it is answered at most once.
import type { Db } from '../../db/knex.ts';
import { randomToken, sha256Hex } from '../../security/crypto.ts';

export interface PendingRequest {
  relayHash: string;
  requestId: string;
  connectionName: string;
  interactionUid: string;
  bindingHash: string;
  answered: boolean;
  expired: boolean;
  /** Sent to have the IdP step the user up (ForceAuthn + RequestedAuthnContext). */
  stepUp: boolean;
  result: unknown;
}

function toPending(row: Record<string, unknown>): PendingRequest {
  return {
    relayHash: String(row.relay_hash),
    requestId: String(row.request_id),
    connectionName: String(row.connection_name),
    interactionUid: String(row.interaction_uid),
    bindingHash: String(row.binding_hash),
    answered: row.answered_at !== null,
    expired: new Date(row.expires_at as string).getTime() <= Date.now(),
    stepUp: row.step_up === true,
    result: row.result ?? null,
  };
}

export function newRelayState(): string {
  return randomToken(32);
}

export async function saveRequest(
  db: Db,
  input: { relayState: string; requestId: string; connectionName: string; interactionUid: string; bindingSecret: string; ttlSeconds: number; stepUp?: boolean },
): Promise<void> {
  await db('saml_requests').insert({
    relay_hash: sha256Hex(input.relayState),
    request_id: input.requestId,
    connection_name: input.connectionName,
    interaction_uid: input.interactionUid,
    binding_hash: sha256Hex(input.bindingSecret),
    expires_at: new Date(Date.now() + input.ttlSeconds * 1000),
    step_up: input.stepUp ?? false,
  });
}

export async function findRequest(db: Db, relayState: unknown): Promise<PendingRequest | undefined> {
  if (typeof relayState !== 'string' || relayState.length < 20 || relayState.length > 80) return undefined;
  const row = await db('saml_requests').where({ relay_hash: sha256Hex(relayState) }).first();
  return row ? toPending(row) : undefined;
}

/** Marks the request answered with `result`; false when it was answered already (a race or a replay). */
export async function answerRequest(db: Db, relayHash: string, result: unknown): Promise<boolean> {
  const rows = await db('saml_requests')
    .where({ relay_hash: relayHash })
    .whereNull('answered_at')
    .where('expires_at', '>', db.fn.now())
    .update({ answered_at: db.fn.now(), result: JSON.stringify(result) }, ['relay_hash']);
  return rows.length === 1;
}

/** Takes the answered result out (once), for the browser holding the binding secret. */
export async function takeResult(db: Db, relayHash: string, bindingSecret: string): Promise<unknown> {
  return db.transaction(async (trx) => {
    const row = await trx('saml_requests')
      .where({ relay_hash: relayHash, binding_hash: sha256Hex(bindingSecret) })
      .whereNotNull('answered_at')
      .whereNotNull('result')
      .where('expires_at', '>', trx.fn.now())
      .forUpdate()
      .first('result');
    if (!row) return undefined;
    await trx('saml_requests').where({ relay_hash: relayHash }).update({ result: null });
    return row.result;
  });
}

/** Records an assertion id; false when it was seen before (a replay). */
export async function rememberAssertion(db: Db, connectionName: string, assertionId: string, until: Date): Promise<boolean> {
  const rows = await db('saml_seen_assertions')
    .insert({ connection_name: connectionName, assertion_id: assertionId, expires_at: until })
    .onConflict(['connection_name', 'assertion_id'])
    .ignore()
    .returning(['assertion_id']);
  return rows.length === 1;
}

// --- IdP-initiated landings -----------------------------------------------------------------

/**
 * Keeps an accepted unsolicited response for its one landing: the account sign-in with `state`
 * (started by the ACS in the same browser) takes it out, once. Returns the landing token.
 */
export async function saveLanding(db: Db, input: { connectionName: string; state: string; result: unknown; ttlSeconds: number }): Promise<string> {
  const token = randomToken(32);
  await db('saml_landings').insert({
    token_hash: sha256Hex(token),
    connection_name: input.connectionName,
    state_hash: sha256Hex(input.state),
    result: JSON.stringify(input.result),
    expires_at: new Date(Date.now() + input.ttlSeconds * 1000),
  });
  return token;
}

/** The landing's result, for the account sign-in whose state it was saved with; once. */
export async function takeLanding(db: Db, token: unknown, state: unknown): Promise<{ connectionName: string; result: unknown } | undefined> {
  if (typeof token !== 'string' || token.length < 20 || token.length > 80 || typeof state !== 'string') return undefined;
  const rows = await db('saml_landings')
    .where({ token_hash: sha256Hex(token), state_hash: sha256Hex(state) })
    .whereNull('used_at')
    .where('expires_at', '>', db.fn.now())
    .update({ used_at: db.fn.now() }, ['connection_name', 'result']);
  return rows.length === 1 ? { connectionName: rows[0].connection_name, result: rows[0].result } : undefined;
}

/** Expired requests, landings and link offers, and replay-cache rows past their assertion's lifetime. */
export async function purgeSamlState(db: Db): Promise<{ samlRequests: number; samlAssertions: number; samlLandings: number; samlPendingLinks: number }> {
  const requests = await db('saml_requests').where('expires_at', '<', db.fn.now()).delete(['relay_hash']);
  const assertions = await db('saml_seen_assertions').where('expires_at', '<', db.fn.now()).delete(['assertion_id']);
  const landings = await db('saml_landings').where('expires_at', '<', db.fn.now()).delete(['token_hash']);
  const links = await db('saml_pending_links').where('expires_at', '<', db.fn.now()).delete(['interaction_uid']);
  return { samlRequests: requests.length, samlAssertions: assertions.length, samlLandings: landings.length, samlPendingLinks: links.length };
}
