// Sign-up inside a pending OIDC interaction. The form never says whether an address already has
// an account: every valid submission answers "check your email". A free address gets a link that
// creates the account (with the name and password typed here) when it is opened in this browser;
// a taken one gets a mail telling its owner someone tried. So sign-up neither enumerates accounts
// nor lets anyone pre-register another person's address with a password of their choosing.
import type Router from '@koa/router';
import { z } from 'zod';
import { findUserByEmail } from '../../identity/users.ts';
import { humanDuration } from '../../mail/index.ts';
import { requestSignupLink } from '../../methods/magic-link/index.ts';
import { passwordProblem, passwordSchema } from '../../methods/password/index.ts';
import { validateBody } from '../../http/forms.ts';
import { createRateLimit, RateLimitedError } from '../../security/rate-limit.ts';
import type { FlowDeps } from '../context.ts';
import { clientName, loadInteraction } from '../interaction.ts';
import { addressKey, ipKey, RESPONSE_FLOOR_MS, withResponseFloor } from '../mail-links.ts';
import { bindLinksToBrowser } from '../magic-link/routes.ts';

export function registerSignupRoutes(router: Router, deps: FlowDeps) {
  const signupForm = z
    .object({
      name: z.string().trim().min(1, 'Enter your name.').max(200, 'Use at most 200 characters.'),
      email: z.string().trim().max(320, 'That email address is too long.').pipe(z.email('Enter a valid email address.')),
      password: passwordSchema(deps.config),
    })
    .superRefine((form, issues) => {
      const problem = passwordProblem(form.password, { email: form.email, name: form.name });
      if (problem) issues.addIssue({ code: 'custom', path: ['password'], message: problem });
    });
  const { perIp, perAddress, windowSeconds } = deps.config.mail.rateLimit;
  const signupIpLimit = createRateLimit(deps.db, 'signup-ip', deps.config.rateLimits.signupPerIp, windowSeconds);
  const mailIpLimit = createRateLimit(deps.db, 'mail-ip', perIp, windowSeconds);
  const addressLimit = createRateLimit(deps.db, 'signup-address', perAddress, windowSeconds);
  // Sign-up links live as long as verification links: the mail may be read later, elsewhere first.
  const ttl = deps.config.linkTtl.verifyEmail;

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
          name: typeof name === 'string' ? name.slice(0, 200) : '',
          email: typeof email === 'string' ? email.slice(0, 320) : '',
          fieldErrors: result.fieldErrors,
          error: 'Please correct the highlighted fields.',
        }),
        400,
      );
    }
    const { name, email, password } = result.data;
    // Limits before any lookup, so they answer alike for taken and free addresses.
    try {
      await signupIpLimit.consume(ipKey(ctx));
      await mailIpLimit.consume(ipKey(ctx));
      await addressLimit.consume(addressKey(email));
    } catch (err) {
      if (!(err instanceof RateLimitedError)) throw err;
      ctx.set('Retry-After', String(err.retryAfterSeconds));
      return deps.views.render(ctx, 'signup', page(details.uid, { name, email, error: 'Too many sign-ups from here. Wait a while, then try again.' }), 429);
    }

    const secret = bindLinksToBrowser(deps, ctx, details.uid, ttl);
    const client = await deps.provider().Client.find(String(details.params.client_id));
    const clientId = String(details.params.client_id);
    await withResponseFloor(RESPONSE_FLOOR_MS, async () => {
      // Hashed either way: the answer takes the same time for a taken address.
      const passwordHash = await deps.password.hash(password);
      const existing = await findUserByEmail(deps.db, email);
      if (existing) {
        await deps.mail.enqueue(deps.db, existing.email, 'signup-existing', { name: existing.name, email: existing.email, resetLink: deps.mail.link('/forgot-password') });
        await deps.audit(ctx, { type: 'signup.existing_address', userId: existing.id, clientId });
      } else {
        // The link and its mail commit together.
        await deps.db.transaction(async (trx) => {
          const token = await requestSignupLink(trx, { email, name, passwordHash, uid: details.uid, bindingSecret: secret, ttlSeconds: ttl });
          await deps.mail.enqueue(trx, email, 'magic-link', {
            email,
            signup: true,
            clientName: clientName(details, client),
            link: deps.mail.link(`/interaction/${details.uid}/magic-link/verify`, { token }),
            expiresIn: humanDuration(ttl),
          });
        });
        await deps.audit(ctx, { type: 'magic_link.requested', clientId, data: { outcome: 'sign-up', emailRef: deps.audit.emailRef(email) } });
      }
    });
    deps.mail.kick();
    deps.views.render(ctx, 'message', {
      title: 'Check your email',
      heading: 'Check your email',
      message: `We sent a link to ${email}. Open it in this browser to finish creating your account; it works for ${humanDuration(ttl)}. If you already have an account, the mail tells you how to sign in.`,
      actionUrl: `/interaction/${details.uid}`,
      actionText: 'Back to sign in',
    });
  });
}
