// "Email me a sign-in link" on the sign-in page. Everything lives under /interaction/:uid so the
// interaction cookie (path-scoped there) comes along, and the browser-binding cookie is scoped
// the same way. The link completes the pending sign-in only in the browser that asked for it.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { createUser, findUserByEmail } from '../../identity/users.ts';
import { humanDuration } from '../../mail/index.ts';
import { boundToBrowser, consumeMagicLink, inspectMagicLink, magicLinkProof, newBindingSecret, parseSignupData, requestMagicLink } from '../../methods/magic-link/index.ts';
import { createRateLimit, RateLimitedError } from '../../security/rate-limit.ts';
import type { FlowDeps } from '../context.ts';
import { clientName, loadInteraction, redirectSeeOther, timedProofs } from '../interaction.ts';
import { renderLogin } from '../login/routes.ts';
import { continueSignIn } from '../sign-in/next-step.ts';
import { addressKey, bodyOf, ipKey, renderConfirmLink, renderLinkProblem, RESPONSE_FLOOR_MS, stringField, withResponseFloor } from '../mail-links.ts';

const BINDING_COOKIE = 'lk.magic';

function bindingCookieOptions(deps: FlowDeps, uid: string) {
  return { signed: true, httpOnly: true, sameSite: 'lax' as const, secure: deps.config.secureCookies, path: `/interaction/${uid}` };
}

/**
 * The secret that binds emailed links to this browser and sign-in (one per browser and
 * interaction: every link asked for here is bound to it). Sign-up links use it too.
 */
export function bindLinksToBrowser(deps: FlowDeps, ctx: Context, uid: string, ttlSeconds: number): string {
  const secret = ctx.cookies.get(BINDING_COOKIE, bindingCookieOptions(deps, uid)) ?? newBindingSecret();
  ctx.cookies.set(BINDING_COOKIE, secret, { ...bindingCookieOptions(deps, uid), maxAge: ttlSeconds * 1000, overwrite: true });
  return secret;
}

export function registerMagicLinkRoutes(router: Router, deps: FlowDeps) {
  const { perIp, perAddress, windowSeconds } = deps.config.mail.rateLimit;
  const ipLimit = createRateLimit(deps.db, 'mail-ip', perIp, windowSeconds);
  const addressLimit = createRateLimit(deps.db, 'magic-link-address', perAddress, windowSeconds);
  const ttl = deps.config.linkTtl.magicLink;
  const emailSchema = z.string().trim().min(1).max(320).pipe(z.email());

  const cookieOptions = (uid: string) => bindingCookieOptions(deps, uid);
  const bindingSecret = (ctx: Context, uid: string) => ctx.cookies.get(BINDING_COOKIE, cookieOptions(uid));

  function differentBrowser(ctx: Context) {
    deps.views.render(
      ctx,
      'error',
      {
        title: 'Open the link in the same browser',
        heading: 'This sign-in link belongs to another browser',
        message:
          'For your security, a sign-in link works only in the browser where it was requested. Open it in that browser, or sign in again here: go back to the application in this browser, or sign in to your account below.',
        actionUrl: '/account',
        actionText: 'Sign in on this browser',
      },
      403,
    );
  }

  router.post('/interaction/:uid/magic-link', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    if (details.prompt.name !== 'login') throw Object.assign(new Error('This step is already complete.'), { status: 400, expose: true });
    const body = bodyOf(ctx);
    const parsed = emailSchema.safeParse(body.email);
    if (!parsed.success) {
      return renderLogin(deps, ctx, details, { email: stringField(body, 'email')?.slice(0, 320) ?? '', error: 'Enter your email address to get a sign-in link.' }, 400);
    }
    const email = parsed.data;
    try {
      await ipLimit.consume(ipKey(ctx));
      await addressLimit.consume(addressKey(email));
    } catch (err) {
      if (!(err instanceof RateLimitedError)) throw err;
      return renderLogin(deps, ctx, details, { email, error: 'Too many sign-in links were requested. Wait a while, then try again.' }, 429);
    }

    const secret = bindLinksToBrowser(deps, ctx, details.uid, ttl);
    const client = await deps.provider().Client.find(String(details.params.client_id));

    const requested = await withResponseFloor(RESPONSE_FLOOR_MS, async () => {
      const result = await deps.db.transaction(async (trx) => {
        const request = await requestMagicLink(trx, { email, uid: details.uid, bindingSecret: secret, ttlSeconds: ttl, allowSignup: deps.config.magicLinkSignup });
        if (request.kind !== 'none') {
          await deps.mail.enqueue(trx, request.kind === 'sign-in' ? request.user.email : request.email, 'magic-link', {
            email: request.kind === 'sign-in' ? request.user.email : request.email,
            signup: request.kind === 'sign-up',
            clientName: clientName(details, client),
            link: deps.mail.link(`/interaction/${details.uid}/magic-link/verify`, { token: request.token }),
            expiresIn: humanDuration(ttl),
          });
        }
        return request;
      });
      await deps.audit(ctx, {
        type: 'magic_link.requested',
        userId: result.kind === 'sign-in' ? result.user.id : null,
        clientId: String(details.params.client_id),
        data: { outcome: result.kind, emailRef: deps.audit.emailRef(email) },
      });
      return result;
    });
    if (requested.kind !== 'none') deps.mail.kick();

    deps.views.render(ctx, 'message', {
      title: 'Check your email',
      heading: 'Check your email',
      message: deps.config.magicLinkSignup
        ? `We sent a sign-in link to ${email}. Open it in this browser; it works for ${humanDuration(ttl)}.`
        : `If an account exists for ${email}, we sent it a sign-in link. Open it in this browser; it works for ${humanDuration(ttl)}.`,
      actionUrl: `/interaction/${details.uid}`,
      actionText: 'Back to sign in',
    });
  });

  async function checkLink(ctx: Context, token: unknown) {
    const uid = String(ctx.params.uid);
    const found = await inspectMagicLink(deps.db, token, uid);
    if (found.state !== 'valid') {
      renderLinkProblem(deps, ctx, found.state, { url: `/interaction/${uid}`, text: 'Ask for a new link' }, 'sign-in link');
      return undefined;
    }
    const secret = bindingSecret(ctx, uid);
    if (!secret || !boundToBrowser(found.token, secret)) {
      differentBrowser(ctx);
      return undefined;
    }
    return { uid, secret, link: found.token };
  }

  router.get('/interaction/:uid/magic-link/verify', async (ctx) => {
    const checked = await checkLink(ctx, ctx.query.token);
    if (!checked) return;
    const details = await loadInteraction(deps, ctx);
    const client = await deps.provider().Client.find(String(details.params.client_id));
    const email = checked.link.boundEmail ?? String(checked.link.data.email ?? '');
    const name = clientName(details, client);
    renderConfirmLink(deps, ctx, {
      heading: checked.link.userId ? 'Sign in' : 'Create your account',
      message: `Continue as ${email}${name ? ` to ${name}` : ''}.`,
      action: `/interaction/${checked.uid}/magic-link/verify`,
      token: String(ctx.query.token),
      button: checked.link.userId ? 'Sign in' : 'Create account and sign in',
    });
  });

  router.post('/interaction/:uid/magic-link/verify', async (ctx) => {
    const token = stringField(bodyOf(ctx), 'token');
    const checked = await checkLink(ctx, token);
    if (!checked) return;
    const details = await loadInteraction(deps, ctx);
    if (details.prompt.name !== 'login') throw Object.assign(new Error('This step is already complete.'), { status: 400, expose: true });
    const clientId = String(details.params.client_id);

    const outcome = await deps.db.transaction(async (trx) => {
      const spent = await consumeMagicLink(trx, token, checked.uid, checked.secret);
      if (!spent) return undefined;
      if (spent.userId) {
        // The mailbox was just proven: the address is verified.
        await trx('users').where({ id: spent.userId, email_verified: false }).update({ email_verified: true, updated_at: trx.fn.now() });
        return { userId: spent.userId, created: false, via: 'magic-link' };
      }
      // A sign-up link: the account is created only now that the mailbox is proven, from this
      // browser (the one that filled in the form), so nobody can pre-register someone else's address.
      const email = String(spent.data.email ?? '');
      const signup = parseSignupData(spent.data);
      if (!spent.data.signup || !email || (!signup.passwordHash && !deps.config.magicLinkSignup)) return undefined;
      const existing = await findUserByEmail(trx, email);
      if (existing) return existing.status === 'active' ? { userId: existing.id, created: false, via: 'magic-link' } : undefined;
      const user = await createUser(trx, { email, emailVerified: true, name: signup.name, passwordHash: signup.passwordHash });
      // The spent link no longer needs the password hash it carried.
      await trx('link_tokens').where({ id: spent.id }).update({ data: trx.raw("data - 'passwordHash'") });
      return { userId: user.id, created: true, via: signup.passwordHash ? 'signup' : 'magic-link' };
    });
    if (!outcome) {
      return renderLinkProblem(deps, ctx, (await inspectMagicLink(deps.db, token, checked.uid)).state, { url: `/interaction/${checked.uid}`, text: 'Ask for a new link' }, 'sign-in link');
    }
    ctx.cookies.set(BINDING_COOKIE, null, cookieOptions(checked.uid));
    if (outcome.created) await deps.audit(ctx, { type: 'user.signup', userId: outcome.userId, clientId, data: { via: outcome.via } });
    deps.metrics.loginAttempts.inc({ method: 'magic-link', result: 'success' });
    await deps.audit(ctx, { type: 'login.success', userId: outcome.userId, clientId, data: { method: 'magic-link', via: outcome.via } });
    redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, outcome.userId, timedProofs([magicLinkProof])));
  });
}
