// The per-client `require_verified_email` policy, as an interaction prompt: a signed-in user
// whose email is not verified gets no authorization code for such a client. The prompt shows a
// "verify your email" page (flows/verify-email), and the interaction continues once verified.
// With prompt=none the client gets `interaction_required`.
import { interactionPolicy, type KoaContextWithOIDC } from 'oidc-provider';
import type { Db } from '../db/knex.ts';
import { findUserById } from '../identity/users.ts';

const { Check, Prompt } = interactionPolicy;

export const VERIFY_EMAIL_PROMPT = 'verify_email';

export function requiresVerifiedEmail(client: unknown): boolean {
  return (client as { require_verified_email?: boolean } | undefined)?.require_verified_email === true;
}

/** Adds the prompt right after `login` (before consent) to an interaction policy. */
export function withVerifiedEmailPrompt<P extends ReturnType<typeof interactionPolicy.base>>(policy: P, db: Db): P {
  const prompt = new Prompt(
    { name: VERIFY_EMAIL_PROMPT, requestable: false },
    new Check('email_not_verified', 'this client requires a verified email address', 'interaction_required', async (ctx: KoaContextWithOIDC) => {
      const accountId = ctx.oidc.session?.accountId;
      if (!accountId || !requiresVerifiedEmail(ctx.oidc.client)) return Check.NO_NEED_TO_PROMPT;
      const user = await findUserById(db, accountId);
      return user && !user.email_verified ? Check.REQUEST_PROMPT : Check.NO_NEED_TO_PROMPT;
    }),
  );
  const login = policy.findIndex((p) => p.name === 'login');
  policy.add(prompt, login + 1);
  return policy;
}
