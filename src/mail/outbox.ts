// The mail outbox. A flow renders its mail and writes it to `mail_outbox` in the same
// transaction as the change that caused it; delivery happens afterwards, here. A failed send is
// retried with bounded exponential backoff, so an SMTP outage or a crash loses no verification or
// reset mail and never fails the request. Several instances share the table: each claims due
// rows with a lease (FOR UPDATE SKIP LOCKED), so a mail is sent by one of them.
import crypto from 'node:crypto';
import type { Knex } from 'knex';
import type { Config } from '../config.ts';
import type { Db } from '../db/knex.ts';
import type { Logger } from '../observability/logger.ts';
import { decrypt, encrypt } from '../security/crypto.ts';
import type { MailTemplate, MailTemplates } from './templates.ts';
import type { MailTransport, OutgoingMail } from './transport.ts';
import { coalescedPass } from '../jobs/coalesced.ts';

const BATCH = 10;
const MAX_BATCHES_PER_PASS = 50;
/** How long a claimed row is left to its claimer before another instance may take it. */
const LEASE_SECONDS = 120;

export interface DeliveryResult {
  sent: number;
  retried: number;
  failed: number;
}

export interface Mailer {
  /** Renders `template` and writes it to the outbox through `db` (pass the request's transaction). */
  enqueue(db: Db | Knex.Transaction, to: string, template: MailTemplate, vars: Record<string, unknown>): Promise<void>;
  /** Starts delivering what is due without waiting (call it after the transaction committed). */
  kick(): void;
  /** One delivery pass over everything due now. */
  deliverDue(): Promise<DeliveryResult>;
  /** Deletes sent rows older than a week and given-up rows older than a month. */
  purge(db: Db | Knex.Transaction): Promise<number>;
  /** An absolute link on the issuer, for mails. */
  link(pathname: string, params?: Record<string, string>): string;
  /** The background worker: delivers due mail every MAIL_POLL_INTERVAL seconds. */
  start(): void;
  stop(): Promise<void>;
}

interface Claimed {
  id: string;
  template: string;
  sealed: string | null;
  attempts: number;
}

/** Seconds to wait before attempt `attempts + 1`: base · 2^(attempts−1), at most maxDelay. */
export function retryDelaySeconds(attempts: number, retry: Config['mail']['retry']): number {
  return Math.min(retry.baseSeconds * 2 ** Math.max(0, attempts - 1), retry.maxDelaySeconds);
}

export function createMailer(deps: { db: Db; config: Pick<Config, 'mail' | 'issuer'>; log: Logger; atRestKey: Buffer; transport: MailTransport; templates: MailTemplates }): Mailer {
  const { db, config, log, atRestKey, transport, templates } = deps;
  const aad = (id: string) => `mail-outbox:${id}`;
  let timer: NodeJS.Timeout | undefined;

  async function claim(): Promise<Claimed[]> {
    const result = await db.raw(
      `UPDATE mail_outbox SET locked_until = now() + make_interval(secs => ?), attempts = attempts + 1
        WHERE id IN (SELECT id FROM mail_outbox
                      WHERE status = 'pending' AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now())
                      ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED)
        RETURNING id, template, sealed, attempts`,
      [LEASE_SECONDS, BATCH],
    );
    return (result as { rows: Claimed[] }).rows;
  }

  async function deliverOne(row: Claimed, totals: DeliveryResult): Promise<void> {
    try {
      if (!row.sealed) throw new Error('message body missing');
      const mail = JSON.parse(decrypt(atRestKey, row.sealed, aad(row.id))) as OutgoingMail;
      await transport.send(mail);
    } catch (err) {
      const message = String((err as Error).message ?? err).slice(0, 500);
      const { maxAttempts } = config.mail.retry;
      if (row.attempts >= maxAttempts) {
        totals.failed++;
        // Given up: the body (it holds a link) is dropped with it.
        await db('mail_outbox').where({ id: row.id }).update({ status: 'failed', sealed: null, locked_until: null, last_error: message });
        log.error({ event: 'mail.failed', mailId: row.id, template: row.template, attempts: row.attempts, err: message }, 'mail could not be delivered; giving up');
        return;
      }
      totals.retried++;
      const delay = retryDelaySeconds(row.attempts, config.mail.retry);
      await db('mail_outbox')
        .where({ id: row.id })
        .update({ next_attempt_at: db.raw('now() + make_interval(secs => ?)', [delay]), locked_until: null, last_error: message });
      log.warn({ event: 'mail.retry', mailId: row.id, template: row.template, attempts: row.attempts, retryInSeconds: delay, err: message }, 'mail delivery failed; will retry');
      return;
    }
    totals.sent++;
    await db('mail_outbox').where({ id: row.id }).update({ status: 'sent', sealed: null, locked_until: null, last_error: null, sent_at: db.fn.now() });
    log.info({ event: 'mail.sent', mailId: row.id, template: row.template, attempts: row.attempts, transport: transport.kind }, 'mail delivered');
  }

  async function deliverDue(): Promise<DeliveryResult> {
    const totals: DeliveryResult = { sent: 0, retried: 0, failed: 0 };
    for (let i = 0; i < MAX_BATCHES_PER_PASS; i++) {
      const rows = await claim();
      for (const row of rows) await deliverOne(row, totals);
      if (rows.length < BATCH) break;
    }
    return totals;
  }

  const worker = coalescedPass(deliverDue, (err) => log.error({ event: 'mail.worker_failed', err }, 'mail outbox pass failed'));
  const kick = worker.kick;

  return {
    async enqueue(trx, to, template, vars) {
      const id = crypto.randomUUID();
      const mail: OutgoingMail = { to, ...templates(template, vars) };
      await trx('mail_outbox').insert({ id, template, sealed: encrypt(atRestKey, JSON.stringify(mail), aad(id)) });
    },
    kick,
    deliverDue,
    async purge(trx) {
      const rows = await trx('mail_outbox')
        .where((q) =>
          q
            .where('status', 'sent')
            .where('created_at', '<', trx.raw("now() - interval '7 days'"))
            .orWhere((f) => f.where('status', 'failed').where('created_at', '<', trx.raw("now() - interval '30 days'"))),
        )
        .delete(['id']);
      return rows.length;
    },
    link(pathname, params = {}) {
      const url = new URL(config.issuer + pathname); // the issuer may carry a path prefix
      for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
      return url.toString();
    },
    start() {
      if (timer) return;
      timer = setInterval(kick, config.mail.pollIntervalSeconds * 1000);
      timer.unref();
      kick(); // whatever an earlier run left behind
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await worker.settle();
      transport.close();
    },
  };
}
