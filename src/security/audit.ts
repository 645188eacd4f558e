// Structured audit trail: one row per security-relevant event, mirrored to the log.
// Never pass secrets here: ids and hash prefixes only.
import crypto from 'node:crypto';
import type { Knex } from 'knex';
import type { Context } from 'koa';
import type { Db } from '../db/knex.ts';
import type { Logger } from '../observability/logger.ts';
import { anonymousSalt } from './audit-chain.ts';

export type AuditType =
  | 'user.signup'
  | 'user.created'
  | 'login.success'
  | 'login.failure'
  | 'logout'
  | 'consent.granted'
  | 'consent.denied'
  | 'token.issued'
  | 'token.revoked'
  | 'token.reuse_detected'
  | 'grant.revoked'
  | 'client.created'
  | 'client.deleted'
  | 'keys.rotated'
  | 'login.unmet_requirements'
  | 'login.throttled'
  | 'recovery_code.used'
  | 'recovery_codes.regenerated'
  | 'passkey.counter_rollback'
  | 'passkey.renamed'
  | 'factor.enrolled'
  | 'factor.removed'
  | 'email.verification_sent'
  | 'email.verified'
  | 'email.change_requested'
  | 'email.changed'
  | 'email.change_reported'
  | 'password.reset_requested'
  | 'password.reset'
  | 'sessions.revoked'
  | 'session.ended'
  | 'session.revoked'
  | 'login.new_device'
  | 'password.changed'
  | 'signup.existing_address'
  | 'email.change_to_taken'
  | 'magic_link.requested'
  | 'saml.rejected'
  | 'saml.connection_added'
  | 'saml.connection_updated'
  | 'saml.connection_removed'
  | 'saml.link_offered'
  | 'saml.link_declined'
  | 'saml.linked'
  | 'user.roles_changed'
  | 'scim.token_issued'
  | 'scim.auth_failed'
  | 'scim.user_created'
  | 'scim.user_updated'
  | 'scim.user_deactivated'
  | 'scim.user_reactivated'
  | 'scim.user_deleted'
  | 'scim.group_created'
  | 'scim.group_updated'
  | 'scim.group_deleted'
  | 'user.deleted'
  | 'deletion.scheduled'
  | 'deletion.cancelled'
  | 'client.updated'
  | 'profile.updated'
  | 'access.removed'
  | 'account.locked'
  | 'webhook.added'
  | 'webhook.removed';

/**
 * Public (versioned) event names, as webhooks and `audit list --type` speak them: issue 12's names
 * where the stored type predates them; every other type is its own public name. Payload shapes
 * change only with a new `version`.
 */
export const EVENT_VERSION = 1;
const PUBLIC_NAMES: Partial<Record<AuditType, string>> = {
  'login.success': 'login.succeeded',
  'login.failure': 'login.failed',
  'factor.enrolled': 'mfa.enrolled',
  'factor.removed': 'mfa.removed',
};
export function publicEventName(type: string): string {
  return PUBLIC_NAMES[type as AuditType] ?? type;
}
/** Stored types a public or stored name stands for. */
export function storedTypes(name: string): string[] {
  const stored = Object.entries(PUBLIC_NAMES).filter(([, pub]) => pub === name).map(([t]) => t);
  return [...new Set([name, ...stored])];
}

export interface AuditEvent {
  type: AuditType;
  userId?: string | null;
  clientId?: string | null;
  data?: Record<string, unknown>;
}

// High-volume routine events, written in batches: one INSERT for up to BATCH_MAX rows, at most
// BATCH_MS after the first. Every other type (sign-ins, reuse, revocations…) is a security event
// and is written before the request that caused it answers, as before.
const BATCHED_TYPES = new Set<AuditType>(['token.issued']);
const BATCH_MS = 200;
const BATCH_MAX = 100;

export function createAudit(db: Db, log: Logger, refKey: Buffer) {
  type Row = Record<string, unknown>;
  let buffer: Row[] = [];
  let timer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> = Promise.resolve();

  let onWebhook: (() => void) | undefined;

  async function write(rows: Row[]): Promise<void> {
    try {
      // Batched rows (routine types, with their own time) go in one plain INSERT.
      if (rows.length !== 1 || 'at' in rows[0]!) return void (await db('audit_events').insert(rows));
      // One statement: the row, and a delivery in the shared outbox for every webhook that asked
      // for this event (the request never waits on a receiver).
      const row = rows[0]!;
      const result = await db.raw(
        `WITH ev AS (INSERT INTO audit_events (type, user_id, client_id, ip, user_agent, request_id, data) VALUES (?, ?, ?, ?, ?, ?, ?::jsonb) RETURNING id)
         INSERT INTO security_event_outbox (id, kind, webhook_id, audit_event_id, event)
         SELECT gen_random_uuid(), 'webhook', w.id, ev.id, ? FROM ev, webhooks w
          WHERE w.events = '[]'::jsonb OR w.events @> jsonb_build_array(?::text)
         RETURNING id`,
        [row.type, row.user_id, row.client_id, row.ip, row.user_agent, row.request_id, row.data, publicEventName(String(row.type)), publicEventName(String(row.type))] as Knex.RawBinding[],
      );
      if ((result as { rows: unknown[] }).rows.length) onWebhook?.();
    } catch (err) {
      // An audit write must never turn a user's successful action into an error page.
      log.error({ err, event: 'audit.write_failed', type: rows[0]?.type, rows: rows.length }, 'audit write failed');
    }
  }

  /** Writes every buffered row (in order; one flush at a time). */
  function flush(): Promise<void> {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const rows = buffer;
    buffer = [];
    // A buffered row can land after its user was purged (here or by another process): it then
    // names nobody, like the purge's anonymised rows, instead of keeping a deleted user's id.
    const stillThere = rows.map((r) => (typeof r.user_id === 'string' ? { ...r, user_id: db.raw('(SELECT id FROM users WHERE id = ?)', [r.user_id]) } : r));
    flushing = flushing.then(async () => {
      for (let i = 0; i < stillThere.length; i += BATCH_MAX) await write(stillThere.slice(i, i + BATCH_MAX));
    });
    return flushing;
  }

  function enqueue(row: Row): void {
    buffer.push(row);
    if (buffer.length >= BATCH_MAX) void flush();
    else if (!timer) {
      timer = setTimeout(() => void flush(), BATCH_MS);
      timer.unref();
    }
  }

  async function audit(ctx: Pick<Context, 'ip' | 'get' | 'state'> | undefined, event: AuditEvent): Promise<void> {
    const row = {
      type: event.type,
      user_id: event.userId ?? null,
      client_id: event.clientId ?? null,
      ip: ctx?.ip ?? null,
      user_agent: ctx?.get('user-agent')?.slice(0, 512) || null,
      request_id: ctx?.state?.requestId ?? null,
      data: JSON.stringify(event.data ?? {}),
    };
    log.info({ event: 'audit', audit: { ...row, data: event.data ?? {} } }, event.type);
    // The event's own time, not the batch's.
    if (BATCHED_TYPES.has(event.type)) return enqueue({ ...row, at: new Date() });
    await write([row]);
  }
  /** Writes the rows still buffered: on shutdown, and wherever a reader needs them now. */
  audit.flush = flush;
  /** Called when a write queued webhook deliveries (the server starts the outbox at once). */
  audit.onWebhook = (fn: () => void) => {
    onWebhook = fn;
  };
  /** The commitment key for rows about no account (security/audit-chain.ts). */
  audit.anonymousSalt = anonymousSalt(refKey);
  /**
   * A typed address as it may appear in audit data: a keyed hash, so failures on one address can be
   * correlated without storing it, and nobody can confirm a guessed address against a log.
   */
  audit.emailRef = (email: string): string => crypto.createHmac('sha256', refKey).update(email.trim().toLowerCase()).digest('base64url').slice(0, 16);
  return audit;
}

export type Audit = ReturnType<typeof createAudit>;
