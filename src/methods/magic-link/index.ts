// The magic-link method: a single-use sign-in link sent by mail, bound to the pending OIDC
// interaction and to the browser that asked for it. The browser keeps a random secret in a
// cookie; the link's token stores only that secret's SHA-256, so the link alone (forwarded,
// leaked, or planted by an attacker for login CSRF) signs nobody in anywhere else.
// Proving control of a mailbox is one factor: amr `email`, counted at the `pwd` level.
import type { Knex } from 'knex';
import type { Db } from '../../db/knex.ts';
import { findUserByEmail, type User } from '../../identity/users.ts';
import { constantTimeEqual, randomToken } from '../../security/crypto.ts';
import { consumeLinkToken, inspectLinkToken, issueLinkToken, tokenHash, type LinkState, type LinkToken } from '../../security/link-tokens.ts';
import type { MethodSuccess } from '../types.ts';

export const magicLinkProof = { method: 'magic-link', amr: ['email'], factor: 'knowledge', phishingResistant: false } as const satisfies MethodSuccess;

/** A new browser-binding secret (kept in a cookie scoped to the interaction). */
export function newBindingSecret(): string {
  return randomToken(32);
}

export type LinkRequest =
  | { kind: 'sign-in'; token: string; user: User }
  | { kind: 'sign-up'; token: string; email: string }
  | { kind: 'none' };

/**
 * Issues a link for `email` in interaction `uid`, bound to `bindingSecret`: for an active
 * account, or (when sign-up by link is allowed) for an address without one.
 */
export async function requestMagicLink(
  db: Db | Knex.Transaction,
  input: { email: string; uid: string; bindingSecret: string; ttlSeconds: number; allowSignup: boolean },
): Promise<LinkRequest> {
  const user = await findUserByEmail(db, input.email);
  const data = { uid: input.uid, binding: tokenHash(input.bindingSecret) };
  if (user) {
    if (user.status !== 'active') return { kind: 'none' };
    const token = await issueLinkToken(db, { purpose: 'magic-link', userId: user.id, boundEmail: user.email, data, ttlSeconds: input.ttlSeconds });
    return { kind: 'sign-in', token, user };
  }
  if (!input.allowSignup) return { kind: 'none' };
  const email = input.email.trim();
  const token = await issueLinkToken(db, { purpose: 'magic-link', userId: null, data: { ...data, email, signup: true }, ttlSeconds: input.ttlSeconds });
  return { kind: 'sign-up', token, email };
}

/** What a sign-up form left in its link: the name and password hash the account is created with. */
export function parseSignupData(data: Record<string, unknown>): { name: string | null; passwordHash: string | null } {
  return {
    name: typeof data.name === 'string' ? data.name : null,
    passwordHash: typeof data.passwordHash === 'string' && data.passwordHash.startsWith('$argon2') ? data.passwordHash : null,
  };
}

/**
 * A link that finishes a sign-up with a password, bound to `bindingSecret` like a sign-in link.
 * The account does not exist until the link is used.
 */
export async function requestSignupLink(
  db: Db | Knex.Transaction,
  input: { email: string; name: string; passwordHash: string; uid: string; bindingSecret: string; ttlSeconds: number },
): Promise<string> {
  const data = { uid: input.uid, binding: tokenHash(input.bindingSecret), email: input.email.trim(), signup: true, name: input.name, passwordHash: input.passwordHash };
  return issueLinkToken(db, { purpose: 'magic-link', userId: null, data, ttlSeconds: input.ttlSeconds });
}

/** The link's state, for the interaction `uid` only (a link for another sign-in is not valid here). */
export async function inspectMagicLink(db: Db, token: unknown, uid: string): Promise<LinkState> {
  const found = await inspectLinkToken(db, token, 'magic-link');
  if (found.state !== 'unknown' && found.token.data.uid !== uid) return { state: 'unknown' };
  return found;
}

/** Whether this browser's binding secret is the one the link was issued to. */
export function boundToBrowser(token: LinkToken, bindingSecret: string | undefined): boolean {
  const stored = token.data.binding;
  return typeof stored === 'string' && typeof bindingSecret === 'string' && bindingSecret.length > 0 && constantTimeEqual(tokenHash(bindingSecret), stored);
}

/** Spends the link: only in interaction `uid`, only from the browser holding `bindingSecret`. */
export async function consumeMagicLink(db: Db | Knex.Transaction, token: unknown, uid: string, bindingSecret: string): Promise<LinkToken | undefined> {
  return consumeLinkToken(db, token, 'magic-link', { uid, binding: tokenHash(bindingSecret) });
}
