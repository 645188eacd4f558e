// Structured audit trail: one row per security-relevant event, mirrored to the log.
// Never pass secrets here: ids and hash prefixes only.
import crypto from 'node:crypto';
import type { Context } from 'koa';
import type { Db } from '../db/knex.ts';
import type { Logger } from '../observability/logger.ts';

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
  | 'signup.existing_address'
  | 'email.change_to_taken'
  | 'magic_link.requested'
  | 'saml.rejected'
  | 'saml.connection_added'
  | 'saml.connection_updated'
  | 'saml.connection_removed'
  | 'user.roles_changed'
  | 'user.deleted'
  | 'deletion.scheduled'
  | 'deletion.cancelled';

export interface AuditEvent {
  type: AuditType;
  userId?: string | null;
  clientId?: string | null;
  data?: Record<string, unknown>;
}

export function createAudit(db: Db, log: Logger, refKey: Buffer) {
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
    try {
      await db('audit_events').insert(row);
    } catch (err) {
      // An audit write must never turn a user's successful action into an error page.
      log.error({ err, event: 'audit.write_failed', type: event.type }, 'audit write failed');
    }
  }
  /**
   * A typed address as it may appear in audit data: a keyed hash, so failures on one address can be
   * correlated without storing it, and nobody can confirm a guessed address against a log.
   */
  audit.emailRef = (email: string): string => crypto.createHmac('sha256', refKey).update(email.trim().toLowerCase()).digest('base64url').slice(0, 16);
  return audit;
}

export type Audit = ReturnType<typeof createAudit>;
