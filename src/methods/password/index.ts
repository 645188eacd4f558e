// The password method: argon2id hashing, verification with transparent re-hashing, and the
// policy for acceptable passwords. Timing is the same whether or not the account exists.
import argon2 from 'argon2';
import { z } from 'zod';
import type { Config } from '../../config.ts';
import type { Db } from '../../db/knex.ts';
import { findUserByEmail, setPasswordHash, type User } from '../../identity/users.ts';
import type { MethodSuccess } from '../types.ts';
import { passwordProblem, type PasswordContext } from './policy.ts';

export { passwordProblem, type PasswordContext };

const ARGON2ID = 2 as const; // argon2.argon2id, as the literal the typings want

export const passwordProof = { method: 'password', amr: ['pwd'], factor: 'knowledge', phishingResistant: false } as const;

/** A new password: length, and not a common one or one built from `context` (see policy.ts). */
export function passwordSchema(config: Pick<Config, 'password' | 'productName'>, context: PasswordContext = {}) {
  return z
    .string()
    .min(config.password.minLength, `Use at least ${config.password.minLength} characters.`)
    .max(config.password.maxLength, `Use at most ${config.password.maxLength} characters.`)
    .superRefine((password, issues) => {
      const problem = passwordProblem(password, { productName: config.productName, ...context });
      if (problem) issues.addIssue({ code: 'custom', message: problem });
    });
}

export function createPasswordMethod(db: Db, config: Pick<Config, 'argon2' | 'password'>) {
  const options = { type: ARGON2ID, ...config.argon2 };
  // Verified against when the account does not exist, so unknown emails cost the same time.
  const dummyHash = argon2.hash('latchkey-timing-equaliser', options);

  async function hash(password: string): Promise<string> {
    return argon2.hash(password, options);
  }

  async function verifyHash(hashValue: string | null, password: string): Promise<boolean> {
    if (password.length > config.password.maxLength) return false;
    try {
      return await argon2.verify(hashValue ?? (await dummyHash), password);
    } catch {
      return false; // malformed stored hash: treat as mismatch
    }
  }

  /**
   * Checks a password against `user` (looked up by the caller; undefined when the address is
   * unknown, which costs the same time). Returns the user on success; upgrades the hash when the
   * parameters changed.
   */
  async function verifyUser(user: User | undefined, password: string): Promise<(MethodSuccess & { user: User }) | null> {
    const ok = await verifyHash(user?.password_hash ?? null, password);
    if (!ok || !user || !user.password_hash || user.status !== 'active') return null;
    if (argon2.needsRehash(user.password_hash, options)) {
      await setPasswordHash(db, user.id, await hash(password));
    }
    return { ...passwordProof, user };
  }

  /** Checks email + password. */
  async function verify(email: string, password: string): Promise<(MethodSuccess & { user: User }) | null> {
    return verifyUser(await findUserByEmail(db, email), password);
  }

  return { hash, verify, verifyUser, verifyHash };
}

export type PasswordMethod = ReturnType<typeof createPasswordMethod>;
