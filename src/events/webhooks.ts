// Operator webhooks: chosen audit events POSTed as JSON to an operator's URL. Deliveries share the
// Security Event Token outbox (events/outbox.ts: leases, retries with backoff, the outbound guard);
// security/audit.ts queues one row per subscribed webhook in the statement that writes the event.
// Signed two ways with the webhook's secret, so a receiver can use either:
//   Latchkey-Signature: t=<unix seconds>, v1=<hex HMAC-SHA256(secret, "<t>.<body>")>   (Stripe's scheme)
//   webhook-id / webhook-timestamp / webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<t>.<body>">
//   (Standard Webhooks; the key is the base64 after `whsec_`, or the secret's bytes otherwise)
import crypto from 'node:crypto';
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { decrypt, encrypt } from '../security/crypto.ts';
import { openData } from '../security/audit-chain.ts';
import { EVENT_VERSION, publicEventName } from '../security/audit.ts';

export interface Webhook {
  id: string;
  url: string;
  events: string[];
  created_at: string;
}

const aad = (id: string) => `webhook-secret:${id}`;

export function newWebhookSecret(): string {
  return `whsec_${crypto.randomBytes(32).toString('base64')}`;
}

export async function addWebhook(db: Db, atRestKey: Buffer, input: { url: string; events: string[]; secret: string }): Promise<Webhook> {
  const id = crypto.randomUUID();
  const [row] = await db('webhooks')
    .insert({ id, url: input.url, events: JSON.stringify(input.events), secret_sealed: encrypt(atRestKey, input.secret, aad(id)) })
    .returning(['id', 'url', 'events', 'created_at']);
  return { ...row, created_at: new Date(row.created_at).toISOString() };
}

export async function listWebhooks(db: Db): Promise<Webhook[]> {
  const rows = await db('webhooks').orderBy('created_at').select('id', 'url', 'events', 'created_at');
  return rows.map((r) => ({ ...r, created_at: new Date(r.created_at).toISOString() }));
}

/** Removes a webhook and its pending deliveries (the outbox rows cascade). */
export async function removeWebhook(db: Db, id: string): Promise<boolean> {
  return (await db('webhooks').where({ id }).delete(['id'])).length > 0;
}

export async function webhookTarget(db: Db | Knex.Transaction, atRestKey: Buffer, id: string): Promise<{ url: string; secret: string } | undefined> {
  const row = await db('webhooks').where({ id }).first('url', 'secret_sealed');
  return row ? { url: row.url, secret: decrypt(atRestKey, row.secret_sealed, aad(id)) } : undefined;
}

/**
 * The body for one delivery, built when it is sent: the public event name and version, when, the
 * account's subject identifier and client, and the event's data without personal keys (no
 * address, IP or user agent). A purge before delivery leaves no subject.
 */
export async function webhookBody(db: Db, deliveryId: string, auditEventId: string): Promise<string | undefined> {
  const row = await db('audit_events').where({ id: auditEventId }).first('type', 'at', 'user_id', 'client_id', 'data');
  if (!row) return undefined;
  return JSON.stringify({
    id: deliveryId,
    type: publicEventName(row.type),
    version: EVENT_VERSION,
    created_at: new Date(row.at).toISOString(),
    data: { subject: row.user_id ?? null, client_id: row.client_id ?? null, ...openData(row.data) },
  });
}

export function signWebhook(secret: string, id: string, body: string, now = Date.now()): Record<string, string> {
  const t = Math.floor(now / 1000);
  const v1 = crypto.createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  const key = secret.startsWith('whsec_') ? Buffer.from(secret.slice(6), 'base64') : Buffer.from(secret);
  const standard = crypto.createHmac('sha256', key).update(`${id}.${t}.${body}`).digest('base64');
  return {
    'latchkey-signature': `t=${t}, v1=${v1}`,
    'webhook-id': id,
    'webhook-timestamp': String(t),
    'webhook-signature': `v1,${standard}`,
  };
}
