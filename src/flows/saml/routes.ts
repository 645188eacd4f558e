// Enterprise SSO through SAML: home-realm discovery on the sign-in page, the hand-off to the
// IdP (a signed HTTP-Redirect AuthnRequest), the ACS that checks the IdP's answer, and the
// return under /interaction/:uid (where the interaction and browser-binding cookies live: a
// cross-site POST to the ACS carries neither) that provisions the user and continues the
// sign-in exactly as the password form does.
import type Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import { z } from 'zod';
import { wantedLevels } from '../../assurance/index.ts';
import { spUrls, type ConnectionStore, type SamlConnection } from '../../federation/saml/connections.ts';
import { levelFor, mapProfile, rolesFor, type AssertionFacts } from '../../federation/saml/mapping.ts';
import { spMetadataXml } from '../../federation/saml/metadata.ts';
import { provisionUser } from '../../federation/saml/provision.ts';
import { answerRequest, findRequest, newRelayState, rememberAssertion, saveRequest, takeResult } from '../../federation/saml/requests.ts';
import { contextsFor, createAuthnRequest, samlifyCheck, type SpIdentity } from '../../federation/saml/sp.ts';
import { decodeResponse, validateResponseXml } from '../../federation/saml/validate.ts';
import { SamlRejection } from '../../federation/saml/xml.ts';
import { samlProofs } from '../../methods/saml/index.ts';
import { randomToken } from '../../security/crypto.ts';
import type { FlowDeps } from '../context.ts';
import { loadInteraction, redirectSeeOther, timedProofs, type InteractionDetails } from '../interaction.ts';
import { continueSignIn } from '../sign-in/next-step.ts';

const BINDING_COOKIE = 'lk.saml';

export interface SamlDeps {
  connections: ConnectionStore;
}

interface StoredResult {
  nameId: string;
  facts: AssertionFacts;
}

function bindingCookieOptions(deps: FlowDeps, uid: string) {
  return { signed: true, httpOnly: true, sameSite: 'lax' as const, secure: deps.config.secureCookies, path: `/interaction/${uid}` };
}

function bodyOf(ctx: Context): Record<string, unknown> {
  return ((ctx.request as { body?: Record<string, unknown> }).body ?? {}) as Record<string, unknown>;
}

function claimsParam(details: InteractionDetails) {
  try {
    return typeof details.params.claims === 'string' ? JSON.parse(details.params.claims) : undefined;
  } catch {
    return undefined;
  }
}

export function registerSamlRoutes(pages: Router, acs: Router, deps: FlowDeps, saml: SamlDeps) {
  const { connections } = saml;
  const skew = deps.config.saml.clockSkewSeconds;

  async function spIdentity(connection: SamlConnection): Promise<SpIdentity> {
    const urls = spUrls(deps.config.issuer, connection.name);
    return { entityId: urls.entityId, acsUrl: urls.acsUrl, certificatePem: connection.spCertificate, privateKeyPem: await connections.spPrivateKey(connection.name) };
  }

  async function reject(ctx: Context, connection: string, err: SamlRejection, extra: { userId?: string; clientId?: string } = {}) {
    await deps.audit(ctx, { type: 'saml.rejected', userId: extra.userId ?? null, clientId: extra.clientId ?? null, data: { connection, reason: err.reason } });
    ctx.state.log?.warn({ event: 'saml.rejected', connection, reason: err.reason, detail: err.message }, 'SAML response rejected');
    const refused = err.reason === 'deactivated' || err.reason === 'email_taken' || err.reason === 'no_email';
    deps.views.render(
      ctx,
      'error',
      {
        title: 'Single sign-on failed',
        heading: refused ? 'This account can’t sign in here' : 'We couldn’t sign you in with your organisation',
        message:
          err.reason === 'deactivated'
            ? 'This account has been deactivated. Contact your IT team if you think this is a mistake.'
            : err.reason === 'email_taken'
              ? 'An account with this email address already exists here. Sign in to it with its password first; it is never linked to single sign-on by email alone.'
              : err.reason === 'no_email'
                ? 'Your organisation did not send an email address for you. Contact your IT team.'
                : 'The answer from your organisation’s sign-in service was not accepted. Go back to the application and start signing in again; if it keeps happening, contact your IT team with the reference below.',
        status: refused ? 403 : 400,
        requestId: ctx.state.requestId,
      },
      refused ? 403 : 400,
    );
  }

  /** Sends the browser to `connection`'s IdP for the interaction in `details`. */
  async function startSso(ctx: Context, details: InteractionDetails, connection: SamlConnection) {
    const cookie = bindingCookieOptions(deps, details.uid);
    const bindingSecret = ctx.cookies.get(BINDING_COOKIE, cookie) ?? randomToken(32);
    ctx.cookies.set(BINDING_COOKIE, bindingSecret, { ...cookie, maxAge: deps.config.ttl.interaction * 1000, overwrite: true });
    const relayState = newRelayState();
    const reasons = details.prompt.reasons;
    const forceAuthn = reasons.includes('login_prompt') || reasons.includes('max_age');
    const requestedContexts = contextsFor(connection.acrMap, wantedLevels(deps.assurance, details.params, claimsParam(details)));
    const request = createAuthnRequest(connection, await spIdentity(connection), { relayState, forceAuthn, requestedContexts });
    await saveRequest(deps.db, { relayState, requestId: request.id, connectionName: connection.name, interactionUid: details.uid, bindingSecret, ttlSeconds: deps.config.ttl.interaction });
    ctx.set('Cache-Control', 'no-store');
    redirectSeeOther(ctx, request.url);
  }

  function renderSsoForm(ctx: Context, uid: string, extra: Record<string, unknown> = {}, status = 200) {
    deps.views.render(ctx, 'saml-sso', { title: 'Sign in with SSO', uid, value: '', ...extra }, status);
  }

  function renderSsoOnly(ctx: Context, connection: SamlConnection, uid: string | undefined, domain: string) {
    deps.views.render(
      ctx,
      'message',
      {
        title: 'Use your organisation’s sign-in',
        heading: 'Use your organisation’s sign-in',
        message: `Accounts at ${domain} sign in through your organisation’s single sign-on. Passwords, emailed sign-in links, sign-up and password resets are not available for this domain.`,
        actionUrl: uid ? `/interaction/${uid}/saml/start?connection=${encodeURIComponent(connection.name)}` : undefined,
        actionText: 'Continue with single sign-on',
      },
      403,
    );
  }

  // --- home-realm discovery -------------------------------------------------------------------

  /**
   * In front of the sign-in forms: an email at a connection's domain with no password goes to
   * that IdP; for --sso-only domains the password form, emailed links, sign-up and reset are
   * refused with a page that says so (and nothing is mailed).
   */
  const discovery: Middleware = async (ctx, next) => {
    if (ctx.method !== 'POST') return next();
    const m = /^\/interaction\/([^/]+)\/(login|magic-link|signup)$/.exec(ctx.path);
    const isReset = ctx.path === '/forgot-password';
    if (!m && !isReset) return next();
    const email = bodyOf(ctx).email;
    if (typeof email !== 'string' || !email.includes('@') || email.length > 320) return next();
    const connection = await connections.forDomain(email);
    if (!connection) return next();
    const domain = email.trim().toLowerCase().split('@').pop()!;
    const uid = m?.[1];
    if (m?.[2] === 'login') {
      const password = bodyOf(ctx).password;
      if (!password || connection.ssoOnly) {
        if (password && connection.ssoOnly) {
          await deps.audit(ctx, { type: 'login.failure', data: { method: 'password', reason: 'sso_only', connection: connection.name, emailRef: deps.audit.emailRef(email) } });
          return renderSsoOnly(ctx, connection, uid, domain);
        }
        ctx.params = { ...ctx.params, uid: uid! };
        const details = await loadInteraction(deps, ctx);
        if (details.prompt.name !== 'login') throw Object.assign(new Error('This step is already complete.'), { status: 400, expose: true });
        return startSso(ctx, details, connection);
      }
      return next();
    }
    if (connection.ssoOnly) return renderSsoOnly(ctx, connection, uid, domain);
    return next();
  };
  pages.use(discovery);

  pages.get('/interaction/:uid/sso', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    ctx.set('Cache-Control', 'no-store');
    renderSsoForm(ctx, details.uid);
  });

  const ssoForm = z.object({ domain: z.string().trim().min(1).max(320) });
  pages.post('/interaction/:uid/sso', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    if (details.prompt.name !== 'login') throw Object.assign(new Error('This step is already complete.'), { status: 400, expose: true });
    const parsed = ssoForm.safeParse(bodyOf(ctx));
    if (!parsed.success) return renderSsoForm(ctx, details.uid, { error: 'Enter your work email or your company’s domain.' }, 400);
    const connection = await connections.forDomain(parsed.data.domain);
    if (!connection) return renderSsoForm(ctx, details.uid, { value: parsed.data.domain, error: 'Single sign-on is not set up for that domain. Check the spelling, or sign in another way.' }, 400);
    return startSso(ctx, details, connection);
  });

  pages.get('/interaction/:uid/saml/start', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    if (details.prompt.name !== 'login') throw Object.assign(new Error('This step is already complete.'), { status: 400, expose: true });
    const connection = await connections.get(String(ctx.query.connection ?? ''));
    if (!connection) throw Object.assign(new Error('Unknown single sign-on connection.'), { status: 404, expose: true });
    return startSso(ctx, details, connection);
  });

  // --- the IdP's answer -----------------------------------------------------------------------

  acs.get('/saml/:name/metadata', async (ctx) => {
    const connection = await connections.get(ctx.params.name!);
    if (!connection) throw Object.assign(new Error('Unknown single sign-on connection.'), { status: 404, expose: true });
    const urls = spUrls(deps.config.issuer, connection.name);
    ctx.type = 'application/samlmetadata+xml';
    ctx.body = spMetadataXml({ entityId: urls.entityId, acsUrl: urls.acsUrl, certificatePem: connection.spCertificate });
  });

  acs.post('/saml/:name/acs', async (ctx) => {
    const connection = await connections.get(ctx.params.name!);
    if (!connection) throw Object.assign(new Error('Unknown single sign-on connection.'), { status: 404, expose: true });
    const body = bodyOf(ctx);
    try {
      const sp = await spIdentity(connection);
      const xml = decodeResponse(body.SAMLResponse);
      const validated = validateResponseXml(xml, { connection, spEntityId: sp.entityId, acsUrl: sp.acsUrl, skewSeconds: skew });
      // Only answers to requests we sent: IdP-initiated sign-in is not offered yet.
      if (validated.inResponseTo === null) throw new SamlRejection('unsolicited');
      const request = await findRequest(deps.db, body.RelayState);
      if (!request || request.connectionName !== connection.name) throw new SamlRejection('unknown_relay_state');
      if (request.requestId !== validated.inResponseTo) throw new SamlRejection('in_response_to');
      if (request.expired) throw new SamlRejection('request_expired');
      await samlifyCheck(connection, sp, String(body.SAMLResponse), skew);
      if (!(await rememberAssertion(deps.db, connection.name, validated.assertionId, validated.replayUntil))) throw new SamlRejection('replay');
      const result: StoredResult = { nameId: validated.facts.nameId, facts: validated.facts };
      if (!(await answerRequest(deps.db, request.relayHash, result))) throw new SamlRejection('already_answered');
      ctx.set('Cache-Control', 'no-store');
      redirectSeeOther(ctx, `/interaction/${request.interactionUid}/saml/return?state=${encodeURIComponent(String(body.RelayState))}`);
    } catch (err) {
      if (err instanceof SamlRejection) return reject(ctx, connection.name, err);
      throw err;
    }
  });

  pages.get('/interaction/:uid/saml/return', async (ctx) => {
    const uid = ctx.params.uid!;
    const request = await findRequest(deps.db, ctx.query.state);
    if (!request || request.interactionUid !== uid) return reject(ctx, request?.connectionName ?? '', new SamlRejection('unknown_relay_state'));
    // Only the browser that started this sign-in may finish it.
    const secret = ctx.cookies.get(BINDING_COOKIE, bindingCookieOptions(deps, uid));
    const stored = secret ? ((await takeResult(deps.db, request.relayHash, secret)) as StoredResult | undefined) : undefined;
    if (!stored) return reject(ctx, request.connectionName, new SamlRejection(secret ? 'result_unavailable' : 'other_browser'));
    ctx.cookies.set(BINDING_COOKIE, null, bindingCookieOptions(deps, uid));
    const details = await loadInteraction(deps, ctx);
    const clientId = String(details.params.client_id);
    if (details.prompt.name !== 'login') throw Object.assign(new Error('This step is already complete.'), { status: 400, expose: true });
    const connection = await connections.get(request.connectionName);
    if (!connection) return reject(ctx, request.connectionName, new SamlRejection('unknown_connection'));

    const profile = mapProfile(stored.facts, connection.attributeMap);
    const roles = rolesFor(profile.groups, connection.roleMap, connection.defaultRole);
    const outcome = await provisionUser(deps.db, { connection, nameId: stored.nameId, profile, roles });
    if (outcome.kind === 'refused') return reject(ctx, connection.name, new SamlRejection(outcome.reason), { clientId });
    if (outcome.created) await deps.audit(ctx, { type: 'user.created', userId: outcome.userId, clientId, data: { via: 'saml', connection: connection.name } });
    if (outcome.roles.added.length || outcome.roles.removed.length) {
      await deps.audit(ctx, { type: 'user.roles_changed', userId: outcome.userId, data: { connection: connection.name, added: outcome.roles.added, removed: outcome.roles.removed } });
    }
    const level = levelFor(stored.facts.authnContextClassRef, connection.acrMap);
    deps.metrics.loginAttempts.inc({ method: 'saml', result: 'success' });
    await deps.audit(ctx, { type: 'login.success', userId: outcome.userId, clientId, data: { method: 'saml', connection: connection.name, level } });
    redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, outcome.userId, timedProofs(samlProofs(level))));
  });
}
