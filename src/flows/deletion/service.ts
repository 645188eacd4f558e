// Account deletion as a protocol: scheduling (grace period), cancelling, the reminder, and the
// purge. Used by the pages, the CLI and the jobs alike.
//
// Scheduling revokes every session, grant and token (back-channel logout included), mails the
// date with a cancel link and tells every client registered with an events_uri that knows the
// user (RISC account-disabled). Cancelling only restores sign-in. The purge runs in ONE
// transaction per user: the user's rows go, the personal fields of their audit rows (user id, IP,
// user agent, addresses) are erased with the user's audit salt, leaving the hash chain intact
// (security/audit-chain.ts: the chain holds only a salted commitment to those fields; the rows
// keep a pseudonym), a receipt without personal data is written, and the account-purged SETs and
// the last mail are queued, all or nothing. A purge killed midway leaves each user either
// untouched or gone, and running it again finishes the rest.
import crypto from 'node:crypto';
import type { Knex } from 'knex';
import type Provider from 'oidc-provider';
import type { Context } from 'koa';
import type { Config } from '../../config.ts';
import type { Db } from '../../db/knex.ts';
import type { SecurityEvents } from '../../events/index.ts';
import { findScheduledDeletion } from '../../identity/deletion.ts';
import type { User } from '../../identity/users.ts';
import type { Mailer } from '../../mail/index.ts';
import type { Logger } from '../../observability/logger.ts';
import { revokeAccountEverywhere } from '../../oidc/revoke-account.ts';
import type { Audit } from '../../security/audit.ts';
import { PERSONAL_DATA_KEYS } from '../../security/audit-chain.ts';

export interface DeletionDeps {
  config: Pick<Config, 'deletion'>;
  db: Db;
  mail: Mailer;
  events: SecurityEvents;
  audit: Audit;
  log: Logger;
  provider(): Provider;
}

export interface DeletionReceipt {
  pseudonym: string;
  trigger: 'grace-expired' | 'operator-now';
  requestedAt: Date | null;
  scheduledFor: Date | null;
  rows: Record<string, number>;
}

const DAY_MS = 86_400_000;
const REMINDER_DAYS = 3;
// Keys of audit data that may hold personal data (never part of the chained form); they go when the user goes.
const PERSONAL_AUDIT_KEYS_SQL = `ARRAY[${PERSONAL_DATA_KEYS.map((k) => `'${k}'`).join(', ')}]::text[]`;
// Tables whose rows are not the user's own data, or are handled on their own.
const SWEEP_EXCLUDED = new Set(['users', 'audit_events', 'audit_salts']);

export function createDeletionService(deps: DeletionDeps) {
  const { db, mail, events, audit, log } = deps;
  const cancelLink = () => mail.link('/account/delete/cancel');
  const dateText = (d: Date) => d.toUTCString();

  /** Revokes every session, token and grant of the user; back-channel logout goes to each RP. */
  async function revokeEverything(userId: string) {
    const revoked = await revokeAccountEverywhere(db, deps.provider(), userId, log);
    // Remembered consent too: nothing may mint tokens for this account again without a new consent.
    await db.transaction(async (trx) => {
      await trx('oidc_payloads').where({ account_id: userId, model: 'Grant' }).delete();
      await trx('remembered_grants').where({ user_id: userId }).delete();
    });
    return revoked;
  }

  async function schedule(user: User, options: { requestedBy: 'user' | 'operator'; clientId?: string; ctx?: Context }): Promise<{ deleteAfter: Date; alreadyScheduled: boolean }> {
    const existing = await findScheduledDeletion(db, user.id);
    if (existing) return { deleteAfter: existing.deleteAfter, alreadyScheduled: true };
    // Who to tell is known only while the user's grants and sessions still exist.
    const clients = await events.clientsKnowing(db, user.id);
    const deleteAfter = new Date(Date.now() + deps.config.deletion.graceDays * DAY_MS);
    const inserted = await db.transaction(async (trx) => {
      const rows = await trx('account_deletions')
        .insert({
          user_id: user.id,
          delete_after: deleteAfter,
          requested_by: options.requestedBy,
          client_id: options.clientId ?? null,
          notify_clients: JSON.stringify(clients),
          pseudonym: crypto.randomUUID(),
        })
        .onConflict('user_id')
        .ignore()
        .returning(['user_id']);
      if (rows.length === 0) return false; // a concurrent request scheduled it first
      await events.enqueue(trx, clients, 'account-disabled', user.id, { reason: 'deletion-scheduled' });
      await mail.enqueue(trx, user.email, 'deletion-scheduled', { name: user.name, email: user.email, deletionDate: dateText(deleteAfter), cancelLink: cancelLink() });
      return true;
    });
    if (!inserted) {
      const now = await findScheduledDeletion(db, user.id);
      return { deleteAfter: now?.deleteAfter ?? deleteAfter, alreadyScheduled: true };
    }
    const revoked = await revokeEverything(user.id);
    await audit(options.ctx, {
      type: 'deletion.scheduled',
      userId: user.id,
      clientId: options.clientId ?? null,
      data: { by: options.requestedBy, deleteAfter: deleteAfter.toISOString(), clientsTold: clients.length, sessions: revoked.sessions, backchannel: revoked.backchannel },
    });
    mail.kick();
    events.kick();
    return { deleteAfter, alreadyScheduled: false };
  }

  /** Ends the grace period: sign-in works again (sessions and grants stay revoked). */
  async function cancel(userId: string, ctx?: Context): Promise<boolean> {
    const cancelled = await db.transaction(async (trx) => {
      const [row] = await trx('account_deletions').where({ user_id: userId }).delete(['notify_clients']);
      if (!row) return false;
      await events.enqueue(trx, row.notify_clients ?? [], 'account-enabled', userId);
      return true;
    });
    if (!cancelled) return false;
    await audit(ctx, { type: 'deletion.cancelled', userId });
    events.kick();
    return true;
  }

  /** Every table with a user_id column (credentials, factors, passkeys, links, SAML links…). */
  async function userTables(trx: Knex.Transaction): Promise<string[]> {
    const result = await trx.raw(
      `SELECT table_name FROM information_schema.columns
        WHERE table_schema = current_schema() AND column_name = 'user_id' ORDER BY table_name`,
    );
    return (result as { rows: { table_name: string }[] }).rows.map((r) => r.table_name).filter((t) => !SWEEP_EXCLUDED.has(t));
  }

  /**
   * Purges one user in one transaction. `due` only purges a scheduled deletion whose grace ended
   * by `asOf` (and skips one another runner holds); `now` purges whatever the state.
   */
  async function purgeUser(userId: string, options: { trigger: 'grace-expired'; asOf: Date } | { trigger: 'operator-now'; alsoTell?: string[] }): Promise<DeletionReceipt | undefined> {
    // Rows this process still buffers for the user are written first, so the purge anonymises them.
    await audit.flush();
    const receipt = await db.transaction(async (trx) => {
      const deletionQuery = trx('account_deletions').where({ user_id: userId }).forUpdate().skipLocked();
      if (options.trigger === 'grace-expired') deletionQuery.where('delete_after', '<=', options.asOf);
      const deletion = await deletionQuery.first();
      if (options.trigger === 'grace-expired' && !deletion) return undefined;
      const user = (await trx('users').where({ id: userId }).forUpdate().first()) as User | undefined;
      if (!user) return undefined;

      const pseudonym: string = deletion?.pseudonym ?? crypto.randomUUID();
      const tell = [...new Set([...((deletion?.notify_clients as string[] | undefined) ?? []), ...(options.trigger === 'operator-now' ? (options.alsoTell ?? []) : []), ...(await events.clientsKnowing(trx, userId))])];
      await events.enqueue(trx, tell, 'account-purged', userId);

      const rows: Record<string, number> = {};
      const count = (table: string, n: number) => {
        if (n > 0) rows[table] = (rows[table] ?? 0) + n;
      };
      count('oidc_payloads', (await trx('oidc_payloads').where({ account_id: userId }).delete(['id_hash'])).length);
      // Links issued to the address rather than the account (sign-up links, email changes).
      count(
        'link_tokens',
        (
          await trx('link_tokens')
            .whereRaw('lower(bound_email) = lower(?)', [user.email])
            .orWhereRaw("lower(data->>'email') = lower(?) OR lower(data->>'newEmail') = lower(?) OR lower(data->>'oldEmail') = lower(?)", [user.email, user.email, user.email])
            .delete(['id'])
        ).length,
      );
      for (const table of await userTables(trx)) {
        const removed = await trx.raw(`DELETE FROM ?? WHERE user_id::text = ? RETURNING 1`, [table, userId]);
        count(table, (removed as { rows: unknown[] }).rows.length);
      }
      const anonymised = await trx.raw(
        `UPDATE audit_events SET user_id = NULL, user_pseudonym = ?, ip = NULL, user_agent = NULL, data = data - ${PERSONAL_AUDIT_KEYS_SQL}
          WHERE user_id = ? RETURNING id`,
        [pseudonym, userId],
      );
      const auditRows = (anonymised as { rows: unknown[] }).rows.length;
      // Without the salt the rows' commitments can no longer be linked to the person.
      await trx('audit_salts').where({ user_id: userId }).delete();
      count('users', (await trx('users').where({ id: userId }).delete(['id'])).length);

      await mail.enqueue(trx, user.email, 'deletion-completed', { email: user.email, deletedAt: dateText(new Date()) });
      const receipt: DeletionReceipt = {
        pseudonym,
        trigger: options.trigger,
        requestedAt: deletion?.requested_at ?? null,
        scheduledFor: deletion?.delete_after ?? null,
        rows,
      };
      await trx('deletion_receipts').insert({
        pseudonym,
        requested_at: receipt.requestedAt,
        scheduled_for: receipt.scheduledFor,
        trigger: receipt.trigger,
        rows: JSON.stringify({ ...rows, audit_events_anonymised: auditRows }),
      });
      // In this transaction (the audit helper's own connection would wait on it under PGlite).
      await trx('audit_events').insert({ type: 'user.deleted', user_pseudonym: pseudonym, data: JSON.stringify({ reason: options.trigger, clientsTold: tell.length }) });
      return receipt;
    });
    if (receipt) log.info({ event: 'user.purged', pseudonym: receipt.pseudonym, trigger: receipt.trigger, rows: receipt.rows }, 'account purged');
    return receipt;
  }

  /** `users delete --now`: revoke (back-channel logout), then the same purge and SETs. */
  async function deleteNow(user: User): Promise<DeletionReceipt | undefined> {
    const clients = await events.clientsKnowing(db, user.id);
    await revokeEverything(user.id);
    const receipt = await purgeUser(user.id, { trigger: 'operator-now', alsoTell: clients });
    mail.kick();
    events.kick();
    return receipt;
  }

  /** Purges every account whose grace period ended by `asOf`, one transaction each. */
  async function purgeDue(asOf = new Date(), limit = 500): Promise<DeletionReceipt[]> {
    const ids = (await db('account_deletions').where('delete_after', '<=', asOf).orderBy('delete_after').limit(limit).pluck('user_id')) as string[];
    const receipts: DeletionReceipt[] = [];
    for (const id of ids) {
      const receipt = await purgeUser(id, { trigger: 'grace-expired', asOf });
      if (receipt) receipts.push(receipt);
    }
    if (receipts.length) {
      mail.kick();
      events.kick();
    }
    return receipts;
  }

  /** Mails the reminder REMINDER_DAYS before the date, once, when the grace period is longer than that. */
  async function remindDue(trx: Knex.Transaction | Db, asOf = new Date()): Promise<number> {
    const due = (await trx('account_deletions as d')
      .join('users as u', 'u.id', 'd.user_id')
      .whereNull('d.reminded_at')
      .where('d.delete_after', '>', asOf)
      .where('d.delete_after', '<=', new Date(asOf.getTime() + REMINDER_DAYS * DAY_MS))
      .whereRaw(`d.delete_after - make_interval(days => ?) > d.requested_at`, [REMINDER_DAYS])
      .limit(500)
      .select('d.user_id', 'd.delete_after', 'u.email', 'u.name')) as { user_id: string; delete_after: Date; email: string; name: string | null }[];
    for (const row of due) {
      const claimed = await trx('account_deletions').where({ user_id: row.user_id }).whereNull('reminded_at').update({ reminded_at: trx.fn.now() }, ['user_id']);
      if (claimed.length === 0) continue;
      await mail.enqueue(trx, row.email, 'deletion-reminder', { name: row.name, email: row.email, deletionDate: dateText(row.delete_after), cancelLink: cancelLink() });
    }
    return due.length;
  }

  return { schedule, cancel, purgeUser, deleteNow, purgeDue, remindDue, revokeEverything };
}

export type DeletionService = ReturnType<typeof createDeletionService>;
