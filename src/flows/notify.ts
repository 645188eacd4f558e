// Security notices by mail (FlowDeps.notify): flows report an event on a user's account, and the
// user hears about it at their current address through the outbox.
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
