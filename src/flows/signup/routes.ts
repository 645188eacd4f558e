// Sign-up inside a pending OIDC interaction: create the account, then finish the login prompt.
import type Router from '@koa/router';
import { z } from 'zod';
import { createUser, EmailTakenError } from '../../identity/users.ts';
import { passwordProof, passwordSchema } from '../../methods/password/index.ts';
import { validateBody } from '../../http/forms.ts';
import type { FlowDeps } from '../context.ts';
import { loadInteraction, redirectSeeOther, timedProofs } from '../interaction.ts';
import { continueSignIn } from '../step-up/routes.ts';
import { sendVerificationMail } from '../verify-email/routes.ts';

export function registerSignupRoutes(router: Router, deps: FlowDeps) {
  const signupForm = z.object({
    name: z.string().trim().min(1, 'Enter your name.').max(200, 'Use at most 200 characters.'),
    email: z.string().trim().max(320, 'That email address is too long.').pipe(z.email('Enter a valid email address.')),
    password: passwordSchema(deps.config),
  });

  const page = (uid: string, vars: Record<string, unknown>) => ({
    title: 'Create your account',
    uid,
    passwordMinLength: deps.config.password.minLength,
    ...vars,
  });

  router.get('/interaction/:uid/signup', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    deps.views.render(ctx, 'signup', page(details.uid, {}));
  });

  router.post('/interaction/:uid/signup', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    if (details.prompt.name !== 'login') throw Object.assign(new Error('This step is already complete.'), { status: 400, expose: true });
    const result = validateBody(ctx, signupForm);
    if (!result.ok) {
      const { name, email } = result.raw;
      return deps.views.render(
        ctx,
        'signup',
        page(details.uid, {
          name: typeof name === 'string' ? name : '',
          email: typeof email === 'string' ? email : '',
          fieldErrors: result.fieldErrors,
          error: 'Please correct the highlighted fields.',
        }),
        400,
      );
    }
    const { name, email, password } = result.data;
    let user;
    try {
      const passwordHash = await deps.password.hash(password);
      // The account and its verification mail commit together; the mail is sent after commit.
      user = await deps.db.transaction(async (trx) => {
        const created = await createUser(trx, { email, name, passwordHash });
        await sendVerificationMail(deps, trx, created);
        return created;
      });
    } catch (err) {
      if (!(err instanceof EmailTakenError)) throw err;
      return deps.views.render(
        ctx,
        'signup',
        page(details.uid, { name, email, fieldErrors: { email: 'An account with this email already exists. Sign in instead.' } }),
        409,
      );
    }
    deps.mail.kick();
    const clientId = String(details.params.client_id);
    await deps.audit(ctx, { type: 'user.signup', userId: user.id, clientId });
    await deps.audit(ctx, { type: 'login.success', userId: user.id, clientId, data: { method: 'password', via: 'signup' } });
    // A new account has one factor: if the app asked for more, enrolment follows inline.
    redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, user.id, timedProofs([passwordProof])));
  });
}
