// Which methods a user has, and so which assurance levels they can reach. Flows and the
// interaction policy ask this; adding a method means adding it here, not to every flow.
import type { Level } from '../assurance/index.ts';
import type { Db } from '../db/knex.ts';
import type { PasskeyMethod } from './passkey/index.ts';
import type { RecoveryCodeMethod } from './recovery-code/index.ts';
import type { TotpMethod } from './totp/index.ts';

export interface Enrolled {
  totp: boolean;
  passkeys: number;
  recoveryCodes: number;
}

export function createFactorRegistry(db: Db, methods: { totp: TotpMethod; recoveryCodes: RecoveryCodeMethod; passkeys: PasskeyMethod }) {
  /** Asked at every step of every sign-in: one statement, each method contributing its own query. */
  async function enrolled(userId: string): Promise<Enrolled> {
    const row = (await db
      .select({
        totp: db.raw('exists ?', [methods.totp.enrolledQuery(userId)]),
        passkeys: db.raw('?', [methods.passkeys.countQuery(userId)]),
        recoveryCodes: db.raw('?', [methods.recoveryCodes.remainingQuery(userId)]),
      })
      .first()) as { totp: boolean; passkeys: number | string; recoveryCodes: number | string };
    return { totp: Boolean(row.totp), passkeys: Number(row.passkeys), recoveryCodes: Number(row.recoveryCodes) };
  }

  return {
    enrolled,
    /** Levels this user can prove: a second factor reaches mfa, a (user-verifying) passkey phr. */
    capabilities(e: Enrolled): Set<Level> {
      const levels = new Set<Level>(['pwd']);
      if (e.totp || e.passkeys > 0) levels.add('mfa');
      if (e.passkeys > 0) levels.add('phr');
      return levels;
    },
    hasSecondFactor(e: Enrolled): boolean {
      return e.totp || e.passkeys > 0;
    },
  };
}

export type FactorRegistry = ReturnType<typeof createFactorRegistry>;
