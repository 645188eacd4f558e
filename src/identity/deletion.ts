// Scheduled account deletions (the grace period): the one query every gate asks. An account
// with a row here signs in only to cancel the deletion, and gets no tokens for any client.
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';

export interface ScheduledDeletion {
  userId: string;
  requestedAt: Date;
  deleteAfter: Date;
  requestedBy: 'user' | 'operator';
  clientId: string | null;
  notifyClients: string[];
  pseudonym: string;
  remindedAt: Date | null;
}

interface Row {
  user_id: string;
  requested_at: Date;
  delete_after: Date;
  requested_by: 'user' | 'operator';
  client_id: string | null;
  notify_clients: string[];
  pseudonym: string;
  reminded_at: Date | null;
}

function fromRow(row: Row): ScheduledDeletion {
  return {
    userId: row.user_id,
    requestedAt: row.requested_at,
    deleteAfter: row.delete_after,
    requestedBy: row.requested_by,
    clientId: row.client_id,
    notifyClients: row.notify_clients ?? [],
    pseudonym: row.pseudonym,
    remindedAt: row.reminded_at,
  };
}

export async function findScheduledDeletion(db: Db | Knex.Transaction, userId: string, options: { forUpdate?: boolean } = {}): Promise<ScheduledDeletion | undefined> {
  const query = db<Row>('account_deletions').where({ user_id: userId });
  if (options.forUpdate) query.forUpdate();
  const row = await query.first();
  return row ? fromRow(row) : undefined;
}

export async function isDeletionScheduled(db: Db, userId: string): Promise<boolean> {
  return Boolean(await db('account_deletions').where({ user_id: userId }).first('user_id'));
}
