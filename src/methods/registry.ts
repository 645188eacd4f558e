// Which methods a user has, and so which assurance levels they can reach. Flows and the
// interaction policy ask this; adding a method means adding it here, not to every flow.
import type { Level } from '../assurance/index.ts';
import type { PasskeyMethod } from './passkey/index.ts';
import type { RecoveryCodeMethod } from './recovery-code/index.ts';
import type { TotpMethod } from './totp/index.ts';

export interface Enrolled {
  totp: boolean;
  passkeys: number;
  recoveryCodes: number;
}

export function createFactorRegistry(methods: { totp: TotpMethod; recoveryCodes: RecoveryCodeMethod; passkeys: PasskeyMethod }) {
  async function enrolled(userId: string): Promise<Enrolled> {
    const [totp, passkeys, recoveryCodes] = await Promise.all([
      methods.totp.isEnrolled(userId),
      methods.passkeys.count(userId),
      methods.recoveryCodes.remaining(userId),
    ]);
    return { totp, passkeys, recoveryCodes };
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
