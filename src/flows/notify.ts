// Security notices by mail (FlowDeps.notify): flows report an event on a user's account, and the
// user hears about it at their current address through the outbox.
import type { Context } from 'koa';
import type { FlowDeps, SecurityNotice } from './context.ts';

export function securityNotifier(deps: Pick<FlowDeps, 'db' | 'mail'>): NonNullable<FlowDeps['notify']> {
  return async (user, event: SecurityNotice, vars) => {
    await deps.mail.enqueue(deps.db, user.email, event, {
      ...vars,
      name: user.name,
      email: user.email,
      accountLink: deps.mail.link('/account'),
      resetLink: deps.mail.link('/forgot-password'),
    });
    deps.mail.kick();
  };
}

const METHOD_LABELS: Record<string, string> = {
  totp: 'An authenticator app',
  passkey: 'A passkey',
  'recovery-code': 'Recovery codes',
};

export type FactorChange = 'added' | 'removed' | 'recovery-codes';

/**
 * Every enrolment, removal and recovery-code regeneration is audited and mailed to the account's
 * owner (ASVS 2.2.3): whoever added a factor with a stolen password or session is seen at once.
 */
export async function reportFactorChange(
  deps: Pick<FlowDeps, 'audit' | 'notify'>,
  ctx: Context,
  user: { id: string; email: string; name: string | null },
  change: FactorChange,
  method: string,
  via: 'sign-in' | 'account',
): Promise<void> {
  const type = change === 'added' ? 'factor.enrolled' : change === 'removed' ? 'factor.removed' : 'recovery_codes.regenerated';
  await deps.audit(ctx, { type, userId: user.id, data: { method, via } });
  await deps.notify?.(user, 'factor-changed', { change, methodLabel: METHOD_LABELS[method] ?? 'A sign-in method', via, when: new Date().toUTCString() });
}
