// The Security Event Token outbox. A change that clients must hear about (an account disabled,
// enabled, purged) writes its SETs to `security_event_outbox` in the same transaction; delivery
// happens afterwards (RFC 8935 push: POST application/secevent+jwt, 202 Accepted ends it). A
// failed delivery is retried with bounded exponential backoff; several instances share the table
// by claiming due rows with a lease (FOR UPDATE SKIP LOCKED). Every request goes through the
// outbound guard: a client's events_uri is a URL someone supplied. Operator webhooks
// (events/webhooks.ts) are rows of the same table (`kind = 'webhook'`): same leases, retries,
// backoff and guard; any 2xx ends one.
import crypto from 'node:crypto';
import type { Knex } from 'knex';
import type { Config } from '../config.ts';
import type { Db } from '../db/knex.ts';
import type { Logger } from '../observability/logger.ts';
import { decrypt, encrypt } from '../security/crypto.ts';
import type { OutboundRequest } from '../security/outbound.ts';
import { signWebhook, webhookBody, webhookTarget } from './webhooks.ts';
import { accountEventClaims, signSet, type AccountEvent, type SetClaims } from './set.ts';
import { coalescedPass } from '../jobs/coalesced.ts';

const BATCH = 10;
const MAX_BATCHES_PER_PASS = 50;
const LEASE_SECONDS = 120;

export interface EventDeliveryResult {
  delivered: number;
  retried: number;
  failed: number;
}

export interface SecurityEvents {
  /** The clients registered with an events_uri that know this user (grants, tokens, sessions). */
  clientsKnowing(db: Db | Knex.Transaction, userId: string): Promise<string[]>;
  /** Writes one SET per client to the outbox through `db` (pass the change's transaction). */
  enqueue(db: Db | Knex.Transaction, clientIds: string[], event: AccountEvent, userId: string, extra?: Record<string, unknown>): Promise<number>;
  kick(): void;
  deliverDue(): Promise<EventDeliveryResult>;
  /** Deletes delivered rows older than a week and given-up ones older than a month. */
  purge(db: Db | Knex.Transaction): Promise<number>;
  start(): void;
  stop(): Promise<void>;
}

interface Claimed {
  id: string;
  kind: string;
  webhook_id: string | null;
  audit_event_id: string | null;
  client_id: string | null;
  event: string;
  sealed: string | null;
  attempts: number;
}

export function eventRetryDelaySeconds(attempts: number, retry: Config['events']['retry']): number {
  return Math.min(retry.baseSeconds * 2 ** Math.max(0, attempts - 1), retry.maxDelaySeconds);
}

/**
 * The subject identifier this client knows the user by. The provider issues public subject
 * identifiers (no pairwise `subjectTypes`), so it is the account id for every client.
 */
export function subjectFor(_clientId: string, userId: string): string {
  return userId;
}

export function createSecurityEvents(deps: { db: Db; config: Pick<Config, 'issuer' | 'events'>; log: Logger; atRestKey: Buffer; outbound: OutboundRequest }): SecurityEvents {
  const { db, config, log, atRestKey, outbound } = deps;
  const aad = (id: string) => `security-event:${id}`;
  let timer: NodeJS.Timeout | undefined;

  async function claim(): Promise<Claimed[]> {
    const result = await db.raw(
      `UPDATE security_event_outbox SET locked_until = now() + make_interval(secs => ?), attempts = attempts + 1
        WHERE id IN (SELECT id FROM security_event_outbox
                      WHERE status = 'pending' AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now())
                      ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED)
        RETURNING id, kind, webhook_id, audit_event_id::text, client_id, event, sealed, attempts`,
      [LEASE_SECONDS, BATCH],
    );
    return (result as { rows: Claimed[] }).rows;
  }

  /** One webhook delivery: the body is built from the audit row, signed now, sent through the guard. */
  async function sendWebhook(row: Claimed): Promise<'sent' | string> {
    const target = row.webhook_id ? await webhookTarget(db, atRestKey, row.webhook_id) : undefined;
    if (!target) return 'webhook removed';
    const body = row.audit_event_id ? await webhookBody(db, row.id, row.audit_event_id) : undefined;
    if (!body) return 'audit event missing';
    const response = await outbound(target.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...signWebhook(target.secret, row.id, body) },
      body,
      timeoutMs: 5000,
      maxBytes: 16 * 1024,
    });
    if (response.status < 200 || response.status > 299) throw new Error(`receiver answered ${response.status}`);
    return 'sent';
  }

  async function eventsUri(clientId: string): Promise<string | undefined> {
    const row = await db('oidc_clients').where({ client_id: clientId }).first('metadata');
    const uri = (row?.metadata as { events_uri?: unknown } | undefined)?.events_uri;
    return typeof uri === 'string' ? uri : undefined;
  }

  async function giveUp(row: Claimed, message: string, totals: EventDeliveryResult) {
    totals.failed++;
    await db('security_event_outbox').where({ id: row.id }).update({ status: 'failed', sealed: null, locked_until: null, last_error: message });
    log.error({ event: row.kind === 'webhook' ? 'webhook.failed' : 'set.failed', setId: row.id, clientId: row.client_id, type: row.event, attempts: row.attempts, err: message }, 'security event could not be delivered; giving up');
  }

  async function sendSet(row: Claimed, uri: string): Promise<void> {
    const claims = JSON.parse(decrypt(atRestKey, row.sealed!, aad(row.id))) as SetClaims;
    const jwt = await signSet(db, atRestKey, claims);
    const response = await outbound(uri, {
      method: 'POST',
      headers: { 'content-type': 'application/secevent+jwt', accept: 'application/json' },
      body: jwt,
      timeoutMs: 5000,
      maxBytes: 16 * 1024,
    });
    // RFC 8935 §2.2: 202 Accepted is the only success; anything else is tried again.
    if (response.status !== 202) {
      const detail = /^\s*\{/.test(response.body) ? ` ${response.body.slice(0, 200)}` : '';
      throw new Error(`receiver answered ${response.status}${detail}`);
    }
  }

  async function deliverOne(row: Claimed, totals: EventDeliveryResult): Promise<void> {
    const webhook = row.kind === 'webhook';
    const uri = !webhook && row.client_id ? await eventsUri(row.client_id) : undefined;
    if (!webhook && (!uri || !row.sealed)) return giveUp(row, uri ? 'event body missing' : 'client has no events_uri', totals);
    try {
      if (!webhook) await sendSet(row, uri!);
      else {
        const outcome = await sendWebhook(row);
        if (outcome !== 'sent') return giveUp(row, outcome, totals);
      }
    } catch (err) {
      const message = String((err as Error).message ?? err).slice(0, 500);
      if (row.attempts >= config.events.retry.maxAttempts) return giveUp(row, message, totals);
      totals.retried++;
      const delay = eventRetryDelaySeconds(row.attempts, config.events.retry);
      await db('security_event_outbox')
        .where({ id: row.id })
        .update({ next_attempt_at: db.raw('now() + make_interval(secs => ?)', [delay]), locked_until: null, last_error: message });
      log.warn({ event: row.kind === 'webhook' ? 'webhook.retry' : 'set.retry', setId: row.id, clientId: row.client_id, type: row.event, attempts: row.attempts, retryInSeconds: delay, err: message }, 'security event delivery failed; will retry');
      return;
    }
    totals.delivered++;
    // Delivered: the claims (they name the user) go.
    await db('security_event_outbox').where({ id: row.id }).update({ status: 'delivered', sealed: null, locked_until: null, last_error: null, delivered_at: db.fn.now() });
    log.info({ event: row.kind === 'webhook' ? 'webhook.delivered' : 'set.delivered', setId: row.id, clientId: row.client_id, type: row.event, attempts: row.attempts }, 'security event delivered');
  }

  async function deliverDue(): Promise<EventDeliveryResult> {
    const totals: EventDeliveryResult = { delivered: 0, retried: 0, failed: 0 };
    for (let i = 0; i < MAX_BATCHES_PER_PASS; i++) {
      const rows = await claim();
      // One slow receiver must not hold up the others in its batch.
      await Promise.all(rows.map((row) => deliverOne(row, totals)));
      if (rows.length < BATCH) break;
    }
    return totals;
  }

  const worker = coalescedPass(deliverDue, (err) => log.error({ event: 'set.worker_failed', err }, 'security event outbox pass failed'));
  const kick = worker.kick;

  return {
    async clientsKnowing(trx, userId) {
      const result = await trx.raw(
        `SELECT DISTINCT c.client_id FROM oidc_clients c
          WHERE c.metadata->>'events_uri' IS NOT NULL
            AND (c.client_id IN (SELECT client_id FROM oidc_payloads WHERE account_id = ? AND client_id IS NOT NULL)
              OR c.client_id IN (SELECT client_id FROM remembered_grants WHERE user_id = ?)
              OR c.client_id IN (SELECT jsonb_object_keys(payload->'authorizations') FROM oidc_payloads
                                  WHERE model = 'Session' AND account_id = ? AND jsonb_typeof(payload->'authorizations') = 'object'))
          ORDER BY c.client_id`,
        [userId, userId, userId],
      );
      return (result as { rows: { client_id: string }[] }).rows.map((r) => r.client_id);
    },
    async enqueue(trx, clientIds, event, userId, extra = {}) {
      const rows = clientIds.map((clientId) => {
        const id = crypto.randomUUID();
        const claims = accountEventClaims(config.issuer, clientId, event, subjectFor(clientId, userId), extra);
        return { id, client_id: clientId, event, sealed: encrypt(atRestKey, JSON.stringify(claims), aad(id)) };
      });
      if (rows.length) await trx('security_event_outbox').insert(rows);
      return rows.length;
    },
    kick,
    deliverDue,
    async purge(trx) {
      const rows = await trx('security_event_outbox')
        .where((q) =>
          q
            .where('status', 'delivered')
            .where('created_at', '<', trx.raw("now() - interval '7 days'"))
            .orWhere((f) => f.where('status', 'failed').where('created_at', '<', trx.raw("now() - interval '30 days'"))),
        )
        .delete(['id']);
      return rows.length;
    },
    start() {
      if (timer) return;
      timer = setInterval(kick, config.events.pollIntervalSeconds * 1000);
      timer.unref();
      kick();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await worker.settle();
    },
  };
}
