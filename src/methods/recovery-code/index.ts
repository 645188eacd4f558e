// Recovery codes: ten single-use codes, shown once, stored as SHA-256.
import crypto from 'node:crypto';
import type { Db } from '../../db/knex.ts';
import { sha256Hex } from '../../security/crypto.ts';
import type { MethodSuccess } from '../types.ts';

export const recoveryCodeProof = { method: 'recovery-code', amr: ['otp'], factor: 'possession', phishingResistant: false } as const satisfies MethodSuccess;

const COUNT = 10;
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789'; // no look-alikes (0/o, 1/l/i)

function newCode(): string {
  const chars = Array.from(crypto.randomBytes(10), (b) => ALPHABET[b % ALPHABET.length]).join('');
  return `${chars.slice(0, 5)}-${chars.slice(5)}`;
}

/** Case, spaces and dashes do not matter when typing a code. */
export function normalizeRecoveryCode(code: string): string {
  return code.toLowerCase().replace(/[^a-z0-9]/g, '');
}

export function createRecoveryCodeMethod(db: Db) {
  return {
    /** Replaces any previous set; returns the new codes (the only time they exist in clear). */
    async generate(userId: string): Promise<string[]> {
      const codes = Array.from({ length: COUNT }, newCode);
      await db.transaction(async (trx) => {
        await trx('recovery_codes').where({ user_id: userId }).delete();
        await trx('recovery_codes').insert(codes.map((c) => ({ user_id: userId, code_hash: sha256Hex(normalizeRecoveryCode(c)) })));
      });
      return codes;
    },

    /** The number of `userId`'s unused codes: unexecuted, for the registry's one enrolment query. */
    remainingQuery(userId: string) {
      return db('recovery_codes').where({ user_id: userId }).whereNull('used_at').count('*');
    },

    async remaining(userId: string): Promise<number> {
      const row = (await this.remainingQuery(userId).first()) as { count?: number | string } | undefined;
      return Number(row?.count ?? 0);
    },

    /** Uses a code once: one conditional UPDATE, so a code cannot be spent twice even concurrently. */
    async verify(userId: string, code: string): Promise<MethodSuccess | null> {
      const normalized = normalizeRecoveryCode(code);
      if (normalized.length !== 10) return null;
      const used = await db('recovery_codes')
        .where({ user_id: userId, code_hash: sha256Hex(normalized) })
        .whereNull('used_at')
        .update({ used_at: db.fn.now() }, ['id']);
      return used.length === 1 ? recoveryCodeProof : null;
    },

    async clear(userId: string): Promise<void> {
      await db('recovery_codes').where({ user_id: userId }).delete();
    },
  };
}

export type RecoveryCodeMethod = ReturnType<typeof createRecoveryCodeMethod>;
