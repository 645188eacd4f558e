// The password method: argon2id hashing, verification with transparent re-hashing, and the
// policy for acceptable passwords. Timing is the same whether or not the account exists.
import argon2 from 'argon2';
import { z } from 'zod';
import type { Config } from '../../config.ts';
import type { Db } from '../../db/knex.ts';
import { findUserByEmail, setPasswordHash, type User } from '../../identity/users.ts';
import type { MethodSuccess } from '../types.ts';
import { passwordProblem, type PasswordContext } from './policy.ts';
import { lowerWorkerThreadPriority } from './thread-priority.ts';

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

/** Too many password checks waiting already: refused at once (503), to be retried after `retryAfterSeconds`. */
export class PasswordBusyError extends Error {
  status = 503;
  expose = true;
  retryAfterSeconds: number;
  constructor(retryAfterSeconds: number) {
    super('We are handling many sign-ins right now. Please try again in a moment.');
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/**
 * argon2 runs on libuv's thread pool, and each hash takes tens of milliseconds of a core. At most
 * `maxConcurrency` run at once (more only slows every one of them and starves the rest of the
 * server); up to `maxQueue` wait. A caller that may be shed (a sign-in) is refused at once when the
 * queue is full, so a flood of sign-ins gets fast 503s instead of a queue that grows without end,
 * and token requests keep their latency. Other callers (sign-up, password change) wait their turn.
 */
export function createArgon2Pool({ maxConcurrency, maxQueue }: { maxConcurrency: number; maxQueue: number }) {
  let active = 0;
  const waiting: Array<() => void> = [];
  let averageMs = 50; // moving average of one hash, for Retry-After

  const full = () => active >= maxConcurrency && waiting.length >= maxQueue;
  const busy = () => new PasswordBusyError(Math.max(1, Math.ceil((((waiting.length + active) / maxConcurrency) * averageMs) / 1000)));

  return {
    /** Throws PasswordBusyError when a sign-in would be shed now: lets a caller refuse before any other work. */
    admit(): void {
      if (full()) throw busy();
    },
    async run<T>(work: () => Promise<T>, shed: boolean): Promise<T> {
      if (active < maxConcurrency) active++;
      else {
        if (shed && full()) throw busy();
        await new Promise<void>((resolve) => waiting.push(resolve));
      }
      const started = performance.now();
      try {
        return await work();
      } finally {
        averageMs = 0.9 * averageMs + 0.1 * (performance.now() - started);
        // The slot passes straight to the next in line.
        const next = waiting.shift();
        if (next) next();
        else active--;
      }
    },
  };
}

export function createPasswordMethod(db: Db, config: Pick<Config, 'argon2' | 'argon2Pool' | 'argon2Nice' | 'password'>) {
  const argon2Options = { type: ARGON2ID, ...config.argon2 };
  const pool = createArgon2Pool(config.argon2Pool);
  // Verified against when the account does not exist, so unknown emails cost the same time.
  const dummyHash = argon2.hash('latchkey-timing-equaliser', argon2Options);
  // Computing it started libuv's thread pool (all of its threads at once): now they can be lowered.
  void dummyHash.then(() => lowerWorkerThreadPriority(config.argon2Nice), () => {});

  async function hash(password: string): Promise<string> {
    return pool.run(() => argon2.hash(password, argon2Options), false);
  }

  /** `shed`: refuse with PasswordBusyError instead of waiting when too many checks are queued. */
  async function verifyHash(hashValue: string | null, password: string, shed = false): Promise<boolean> {
    if (password.length > config.password.maxLength) return false;
    const stored = hashValue ?? (await dummyHash);
    return pool.run(async () => {
      try {
        return await argon2.verify(stored, password);
      } catch {
        return false; // malformed stored hash: treat as mismatch
      }
    }, shed);
  }

  /**
   * Checks a password against `user` (looked up by the caller; undefined when the address is
   * unknown, which costs the same time). Returns the user on success; upgrades the hash when the
   * parameters changed.
   */
  async function verifyUser(user: User | undefined, password: string, options: { shed?: boolean } = {}): Promise<(MethodSuccess & { user: User }) | null> {
    const ok = await verifyHash(user?.password_hash ?? null, password, options.shed);
    if (!ok || !user || !user.password_hash || user.status !== 'active') return null;
    if (argon2.needsRehash(user.password_hash, argon2Options)) {
      await setPasswordHash(db, user.id, await hash(password));
    }
    return { ...passwordProof, user };
  }

  /** Checks email + password. */
  async function verify(email: string, password: string): Promise<(MethodSuccess & { user: User }) | null> {
    return verifyUser(await findUserByEmail(db, email), password);
  }

  return { hash, verify, verifyUser, verifyHash, pool };
}

export type PasswordMethod = ReturnType<typeof createPasswordMethod>;
