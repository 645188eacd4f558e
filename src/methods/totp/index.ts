// TOTP (RFC 6238): enrolment shows a QR code, a first valid code confirms it; each time step
// is accepted once (otpauth's validate() does not stop replay by itself).
import { Secret, TOTP } from 'otpauth';
import QRCode from 'qrcode';
import type { Db } from '../../db/knex.ts';
import { decrypt, encrypt } from '../../security/crypto.ts';
import type { MethodSuccess } from '../types.ts';

export const totpProof = { method: 'totp', amr: ['otp'], factor: 'possession', phishingResistant: false } as const satisfies MethodSuccess;

const PERIOD = 30;
const CODE_RE = /^\d{6}$/;

export function createTotpMethod(db: Db, atRestKey: Buffer, issuerName: string) {
  const aad = (userId: string) => `totp:${userId}`;
  const totpFor = (secret: Secret, label: string) => new TOTP({ issuer: issuerName, label, algorithm: 'SHA1', digits: 6, period: PERIOD, secret });

  async function secretOf(userId: string, confirmed: boolean) {
    const row = await db('totp_credentials').where({ user_id: userId }).first();
    if (!row || Boolean(row.confirmed_at) !== confirmed) return undefined;
    return { secret: Secret.fromBase32(decrypt(atRestKey, row.secret_enc, aad(userId))), lastStep: row.last_step as number | null };
  }

  /**
   * Accepts `code` for `secret` within ±1 step and records the step; a step at or before the
   * last accepted one is a replay. One conditional UPDATE makes concurrent replays lose too.
   */
  async function acceptStep(userId: string, secret: Secret, code: string, confirm: boolean): Promise<boolean> {
    if (!CODE_RE.test(code)) return false;
    const delta = totpFor(secret, 'x').validate({ token: code, window: 1 });
    if (delta === null) return false; // delta 0 is valid and falsy: compare with null
    const step = Math.floor(Date.now() / 1000 / PERIOD) + delta;
    const updated = await db('totp_credentials')
      .where({ user_id: userId })
      .andWhere((q) => q.whereNull('last_step').orWhere('last_step', '<', step))
      .update({ last_step: step, ...(confirm ? { confirmed_at: db.fn.now() } : {}) }, ['user_id']);
    return updated.length === 1; // returning(): PGlite's driver reports no row counts
  }

  return {
    /** Starts (or restarts) enrolment; the secret is only usable once confirmed. */
    async beginEnrollment(userId: string, email: string) {
      const existing = await db('totp_credentials').where({ user_id: userId }).first('confirmed_at');
      if (existing?.confirmed_at) throw new Error('TOTP is already enabled');
      const secret = new Secret({ size: 20 });
      await db('totp_credentials')
        .insert({ user_id: userId, secret_enc: encrypt(atRestKey, secret.base32, aad(userId)), confirmed_at: null, last_step: null })
        .onConflict('user_id')
        .merge(['secret_enc', 'confirmed_at', 'last_step']);
      const uri = totpFor(secret, email).toString();
      return { secret: secret.base32, uri, qrDataUrl: await QRCode.toDataURL(uri, { margin: 1, width: 220 }) };
    },

    /** The pending enrolment for display again (after a wrong code), or undefined. */
    async pendingEnrollment(userId: string, email: string) {
      const pending = await secretOf(userId, false);
      if (!pending) return undefined;
      const uri = totpFor(pending.secret, email).toString();
      return { secret: pending.secret.base32, uri, qrDataUrl: await QRCode.toDataURL(uri, { margin: 1, width: 220 }) };
    },

    async confirmEnrollment(userId: string, code: string): Promise<boolean> {
      const pending = await secretOf(userId, false);
      return pending ? acceptStep(userId, pending.secret, code.replace(/\s+/g, ''), true) : false;
    },

    /** Rows when `userId` has confirmed TOTP: unexecuted, for the registry's one enrolment query. */
    enrolledQuery(userId: string) {
      return db('totp_credentials').where({ user_id: userId }).whereNotNull('confirmed_at').select(db.raw('1'));
    },

    async isEnrolled(userId: string): Promise<boolean> {
      return Boolean(await this.enrolledQuery(userId).first());
    },

    async verify(userId: string, code: string): Promise<MethodSuccess | null> {
      const active = await secretOf(userId, true);
      if (!active) return null;
      return (await acceptStep(userId, active.secret, code.replace(/\s+/g, ''), false)) ? totpProof : null;
    },

    async disable(userId: string): Promise<void> {
      await db('totp_credentials').where({ user_id: userId }).delete();
    },
  };
}

export type TotpMethod = ReturnType<typeof createTotpMethod>;
