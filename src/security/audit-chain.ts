// The audit trail's hash chain. Rows are written at once by many requests (security/audit.ts);
// a sealer, under an advisory lock so one instance at a time does it, gives the unsealed ones a
// `seq`, the previous row's hash and their own hash, in id order, about every second. Nobody
// waits on the chain to answer a request.
//
// Erasable: the chained canonical form holds no personal data. The user id, IP, user agent and
// the personal keys of `data` stay beside it and are bound only by `subject_commitment`, an
// HMAC-SHA256 keyed with the user's random salt (audit_salts). A purge erases those fields and
// the salt: the commitment can no longer be linked to anyone, and every hash still verifies.
// Rows about no account (an unknown address typed) are committed with a key derived from the
// server secret instead: their IP cannot be edited unnoticed either.
import crypto from 'node:crypto';
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import type { Logger } from '../observability/logger.ts';

/** Keys of audit `data` that may hold personal data: outside the chain, erased with the user. */
export const PERSONAL_DATA_KEYS = ['email', 'newEmail', 'oldEmail', 'to', 'address', 'name', 'emailRef', 'device', 'ip', 'userAgent', 'nameId'];
const PERSONAL = new Set(PERSONAL_DATA_KEYS);

export const SEALER_LOCK_ID = 72_517_109;
const GENESIS = '0'.repeat(64);
const BATCH = 500;
const MAX_BATCHES = 20;
// Microseconds, as stored: the canonical time does not depend on how a driver rounds a Date.
const AT_TEXT = `to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at_text`;

interface ChainRow {
  seq?: string | number | null;
  id: string | number;
  at_text: string;
  type: string;
  client_id: string | null;
  request_id: string | null;
  data: Record<string, unknown> | null;
  user_id: string | null;
  ip: string | null;
  user_agent: string | null;
  subject_commitment?: string | null;
  prev_hash?: string | null;
  hash?: string | null;
}

/** JSON with object keys sorted at every level: one byte string per value. */
function stable(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stable).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stable((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

function split(data: Record<string, unknown> | null): { open: Record<string, unknown>; personal: Record<string, unknown> } {
  const open: Record<string, unknown> = {};
  const personal: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(data ?? {})) (PERSONAL.has(k) ? personal : open)[k] = v;
  return { open, personal };
}

/** The data a webhook or a chain may carry: `data` without its personal keys. */
export function openData(data: Record<string, unknown> | null): Record<string, unknown> {
  return split(data).open;
}

/** What the commitment binds, or undefined when the row holds no personal data (none, or erased). */
function personalOf(row: ChainRow): string | undefined {
  const { personal } = split(row.data);
  if (!row.user_id && !row.ip && !row.user_agent && Object.keys(personal).length === 0) return undefined;
  return stable({ user_id: row.user_id, ip: row.ip, user_agent: row.user_agent, data: personal });
}

export function commitment(salt: Buffer, personal: string): string {
  return crypto.createHmac('sha256', salt).update(personal).digest('hex');
}

export function canonical(row: ChainRow & { seq: string | number; subject_commitment: string | null; prev_hash: string }): string {
  return stable(['latchkey-audit-v1', String(row.seq), String(row.id), row.at_text, row.type, row.client_id, row.request_id, split(row.data).open, row.subject_commitment, row.prev_hash]);
}

export function chainHash(canonicalForm: string): string {
  return crypto.createHash('sha256').update(canonicalForm).digest('hex');
}

/** The key for rows about no account. */
export function anonymousSalt(refKey: Buffer): Buffer {
  return crypto.createHmac('sha256', refKey).update('audit-anonymous-subject').digest();
}

async function saltsFor(trx: Knex.Transaction | Db, userIds: string[]): Promise<Map<string, Buffer>> {
  if (userIds.length === 0) return new Map();
  const rows = (await trx('audit_salts').whereIn('user_id', userIds).select('user_id', 'salt')) as { user_id: string; salt: Buffer }[];
  return new Map(rows.map((r) => [r.user_id, Buffer.from(r.salt)]));
}

/** Seals the pending rows; returns how many. Skips (0) when another instance holds the lock. */
export async function sealPending(db: Db, anonSalt: Buffer): Promise<{ sealed: number; ran: boolean }> {
  const run = async (trx: Knex.Transaction) => {
    const { rows: lock } = await trx.raw('SELECT pg_try_advisory_xact_lock(?) AS locked', [SEALER_LOCK_ID]);
    if (!lock[0].locked) return { sealed: 0, ran: false };
    const head = await trx('audit_events').whereNotNull('seq').orderBy('seq', 'desc').first('seq', 'hash');
    let seq = head ? Number(head.seq) : 0;
    let prev: string = head?.hash ?? GENESIS;
    let sealed = 0;
    for (let b = 0; b < MAX_BATCHES; b++) {
      const rows = (await trx('audit_events')
        .whereNull('seq')
        .orderBy('id')
        .limit(BATCH)
        .forUpdate()
        .select('id', trx.raw(AT_TEXT), 'type', 'client_id', 'request_id', 'data', 'user_id', 'ip', 'user_agent')) as ChainRow[];
      if (rows.length === 0) break;
      // A salt for every account named here that has none yet (random; it goes with the account).
      const userIds = [...new Set(rows.map((r) => r.user_id).filter((u): u is string => Boolean(u)))];
      if (userIds.length) {
        const values = userIds.map(() => '(?::uuid, ?::bytea)').join(', ');
        await trx.raw(
          `INSERT INTO audit_salts (user_id, salt) SELECT v.user_id, v.salt FROM (VALUES ${values}) AS v(user_id, salt)
            WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = v.user_id) ON CONFLICT (user_id) DO NOTHING`,
          userIds.flatMap((u) => [u, crypto.randomBytes(32)]),
        );
      }
      const salts = await saltsFor(trx, userIds);
      const updates: [number, string, string, string | null][] = [];
      for (const row of rows) {
        const personal = personalOf(row);
        const salt = row.user_id ? salts.get(row.user_id) : anonSalt;
        // An account deleted before its rows were sealed: bound with the anonymous key.
        const subject = personal === undefined ? null : commitment(salt ?? anonSalt, personal);
        seq += 1;
        const hash = chainHash(canonical({ ...row, seq, subject_commitment: subject, prev_hash: prev }));
        updates.push([seq, prev, hash, subject]);
        prev = hash;
        sealed++;
      }
      const values = rows.map(() => '(?::bigint, ?::bigint, ?, ?, ?)').join(', ');
      await trx.raw(
        `UPDATE audit_events a SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash, subject_commitment = v.subject
           FROM (VALUES ${values}) AS v(id, seq, prev_hash, hash, subject) WHERE a.id = v.id`,
        rows.flatMap((r, i) => [r.id, ...updates[i]!]),
      );
      if (rows.length < BATCH) break;
    }
    return { sealed, ran: true };
  };
  // Nothing waiting (the usual case between bursts): one indexed probe instead of a transaction.
  if (!(await db('audit_events').whereNull('seq').first('id'))) return { sealed: 0, ran: true };
  return db.transaction(run);
}

export interface VerifyResult {
  ok: boolean;
  rows: number;
  unsealed: number;
  broken?: { seq: number; id: string | null; reason: string };
}

/** Walks the chain from seq 1: every seq present, each prev_hash the previous hash, each hash right. */
export async function verifyChain(db: Db, anonSalt: Buffer): Promise<VerifyResult> {
  let expected = 1;
  let prev = GENESIS;
  let rows = 0;
  const unsealed = Number(((await db('audit_events').whereNull('seq').count<{ n: string }[]>('* as n'))[0]!).n);
  for (;;) {
    const page = (await db('audit_events')
      .where('seq', '>=', expected)
      .orderBy('seq')
      .limit(1000)
      .select('seq', 'id', db.raw(AT_TEXT), 'type', 'client_id', 'request_id', 'data', 'user_id', 'ip', 'user_agent', 'subject_commitment', 'prev_hash', 'hash')) as ChainRow[];
    if (page.length === 0) break;
    const salts = await saltsFor(db, [...new Set(page.map((r) => r.user_id).filter((u): u is string => Boolean(u)))]);
    for (const row of page) {
      const seq = Number(row.seq);
      const broken = (reason: string, at = seq, id: string | null = String(row.id)) => ({ ok: false, rows, unsealed, broken: { seq: at, id, reason } });
      if (seq !== expected) return broken(`row missing (next present is seq ${seq})`, expected, null);
      if (row.prev_hash !== prev) return broken('prev_hash does not match the previous row');
      const hash = chainHash(canonical({ ...row, seq, subject_commitment: row.subject_commitment ?? null, prev_hash: prev }));
      if (hash !== row.hash) return broken('row content does not match its hash');
      // Personal fields still present are checked against the commitment while the salt exists.
      const personal = personalOf(row);
      const salt = row.user_id ? salts.get(row.user_id) : anonSalt;
      if (personal !== undefined && salt && commitment(salt, personal) !== row.subject_commitment) return broken('personal fields do not match the commitment');
      prev = row.hash!;
      expected++;
      rows++;
    }
  }
  return { ok: true, rows, unsealed };
}

/** Seals about every second in the background (each tick under the advisory lock). */
export function startSealer(db: Db, log: Logger, anonSalt: Buffer, intervalMs = 1000): { stop(): Promise<void> } {
  let running: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = sealPending(db, anonSalt)
      .catch((err) => log.warn({ event: 'audit.seal_failed', err }, 'audit sealing failed; retrying next tick'))
      .finally(() => {
        running = undefined;
      });
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
