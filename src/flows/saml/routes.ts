// Enterprise SSO through SAML: home-realm discovery on the sign-in page, the hand-off to the
// IdP (a signed HTTP-Redirect AuthnRequest), the ACS that checks the IdP's answer, and the
// return under /interaction/:uid (where the interaction and browser-binding cookies live: a
// cross-site POST to the ACS carries neither) that provisions the user and continues the
// sign-in exactly as the password form does. Also: IdP-initiated landings on the account page
// (connections with --allow-idp-initiated), linking an existing local account once its owner
// has signed in locally, and step-up by the IdP itself (--step-up idp).
import type Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import { z } from 'zod';
import { rank, wantedLevels, type Level } from '../../assurance/index.ts';
import { spUrls, type ConnectionStore, type SamlConnection } from '../../federation/saml/connections.ts';
import { levelFor, mapProfile, rolesFor, type AssertionFacts } from '../../federation/saml/mapping.ts';
import { spMetadataXml } from '../../federation/saml/metadata.ts';
import { provisionUser } from '../../federation/saml/provision.ts';
import { withScimGroups } from '../../scim/groups.ts';
import { answerRequest, findRequest, newRelayState, rememberAssertion, saveLanding, saveRequest, takeLanding, takeResult } from '../../federation/saml/requests.ts';
import { dropLink, offerLink, pendingLink, storeLink, takeLink } from '../../federation/saml/links.ts';
import { findUserByEmail, findUserById } from '../../identity/users.ts';
import { ACCOUNT_CLIENT_ID } from '../../oidc/provider.ts';
import { mergeProofs } from '../../sessions/proofs.ts';
import { accountSignInUrl } from '../account/session.ts';
import { renderLogin } from '../login/routes.ts';
import { clearPending, loadPending } from '../sign-in/pending.ts';
import { contextsFor, createAuthnRequest, samlifyCheck, type SpIdentity } from '../../federation/saml/sp.ts';
import { decodeResponse, validateResponseXml } from '../../federation/saml/validate.ts';
import { SamlRejection } from '../../federation/saml/xml.ts';
import { samlProofs } from '../../methods/saml/index.ts';
import { randomToken } from '../../security/crypto.ts';
import type { FlowDeps } from '../context.ts';
import { existingProofs, interactionResultUrl, loadInteraction, redirectSeeOther, timedProofs, type InteractionDetails } from '../interaction.ts';
import { continueSignIn, planFor } from '../sign-in/next-step.ts';

const BINDING_COOKIE = 'lk.saml';
const LANDING_COOKIE = 'lk.saml_landing';
/** An accepted IdP-initiated response is good for this long: a few redirects, not a stored sign-in. */
const LANDING_TTL_SECONDS = 120;
// Reasons that only ask for more assurance of the signed-in user (as the login page's).
const STEP_UP_REASONS = new Set(['acr_values', 'essential_acr', 'essential_acrs']);

export interface SamlDeps {
  connections: ConnectionStore;
}

interface StoredResult {
  nameId: string;
  facts: AssertionFacts;
  /** The answer to a step-up request (the IdP was asked for more once already). */
  stepUp?: boolean;
}

function bindingCookieOptions(deps: FlowDeps, uid: string) {
  return { signed: true, httpOnly: true, sameSite: 'lax' as const, secure: deps.config.secureCookies, path: `/interaction/${uid}` };
}

function bodyOf(ctx: Context): Record<string, unknown> {
  return ((ctx.request as { body?: Record<string, unknown> }).body ?? {}) as Record<string, unknown>;
}

function landingCookieOptions(deps: FlowDeps) {
  return { signed: true, httpOnly: true, sameSite: 'lax' as const, secure: deps.config.secureCookies, path: '/interaction' };
}

const belowWanted = (level: Level, wanted: Level[]) => wanted.length > 0 && rank(level) < Math.min(...wanted.map(rank));

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
    return {
      entityId: urls.entityId,
      acsUrl: urls.acsUrl,
      certificatePem: connection.spCertificate,
      privateKeyPem: await connections.spPrivateKey(connection.name),
      encryptionKeyPem: connection.encryptedAssertions ? await connections.spEncryptionKey(connection.name) : null,
    };
  }

  async function reject(ctx: Context, connection: string, err: SamlRejection, extra: { userId?: string; clientId?: string } = {}) {
    await deps.audit(ctx, { type: 'saml.rejected', userId: extra.userId ?? null, clientId: extra.clientId ?? null, data: { connection, reason: err.reason } });
    ctx.state.log?.warn({ event: 'saml.rejected', connection, reason: err.reason, detail: err.message }, 'SAML response rejected');
    const refused = err.reason === 'deactivated' || err.reason === 'no_email';
    deps.views.render(
      ctx,
      'error',
      {
        title: 'Single sign-on failed',
        heading: refused ? 'This account can’t sign in here' : 'We couldn’t sign you in with your organisation',
        message:
          err.reason === 'deactivated'
            ? 'This account has been deactivated. Contact your IT team if you think this is a mistake.'
            : err.reason === 'no_email'
              ? 'Your organisation did not send an email address for you. Contact your IT team.'
              : 'The answer from your organisation’s sign-in service was not accepted. Go back to the application and start signing in again; if it keeps happening, contact your IT team with the reference below.',
        status: refused ? 403 : 400,
        requestId: ctx.state.requestId,
      },
      refused ? 403 : 400,
    );
  }

  /**
   * Sends the browser to `connection`'s IdP for the interaction in `details`; `stepUp` asks the
   * IdP itself for more than it gave (ForceAuthn, and the class refs that meet the request).
   */
  async function startSso(ctx: Context, details: InteractionDetails, connection: SamlConnection, stepUp = false) {
    const cookie = bindingCookieOptions(deps, details.uid);
    const bindingSecret = ctx.cookies.get(BINDING_COOKIE, cookie) ?? randomToken(32);
    ctx.cookies.set(BINDING_COOKIE, bindingSecret, { ...cookie, maxAge: deps.config.ttl.interaction * 1000, overwrite: true });
    const relayState = newRelayState();
    const reasons = details.prompt.reasons;
    const forceAuthn = stepUp || reasons.includes('login_prompt') || reasons.includes('max_age');
    const requestedContexts = contextsFor(connection.acrMap, wantedLevels(deps.assurance, details.params, claimsParam(details)));
    const request = createAuthnRequest(connection, await spIdentity(connection), { relayState, forceAuthn, requestedContexts });
    await saveRequest(deps.db, { relayState, requestId: request.id, connectionName: connection.name, interactionUid: details.uid, bindingSecret, ttlSeconds: deps.config.ttl.interaction, stepUp });
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
      // The owner of a local account that a SAML sign-in offered to link signs in to it with its
      // password, whatever the domain's policy: that is the one way the link is made.
      if (password && connection.ssoOnly && (await linkOfferFor(m[1]!, email))) return next();
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

  async function linkOfferFor(uid: string, email: string): Promise<boolean> {
    const link = await pendingLink(deps.db, uid);
    if (!link) return false;
    const user = await findUserByEmail(deps.db, email);
    return user?.id === link.userId;
  }

  /**
   * In front of the sign-in page (GET /interaction/:uid): the landing of an IdP-initiated
   * response (only in the account pages' own sign-in it started), and step-up by the IdP for a
   * session that came from a connection with --step-up idp.
   */
  const entry: Middleware = async (ctx, next) => {
    if (ctx.method !== 'GET') return next();
    const m = /^\/interaction\/([^/]+)$/.exec(ctx.path);
    if (!m) return next();
    const landing = ctx.cookies.get(LANDING_COOKIE, landingCookieOptions(deps));
    const hasSession = Boolean(ctx.cookies.get(deps.provider().cookieName('session')));
    if (!landing && !hasSession) return next();
    ctx.params = { ...ctx.params, uid: m[1]! };
    const details = await loadInteraction(deps, ctx);
    if (details.prompt.name !== 'login') return next();
    if (landing && details.params.client_id === ACCOUNT_CLIENT_ID) {
      ctx.cookies.set(LANDING_COOKIE, null, landingCookieOptions(deps));
      ctx.set('Cache-Control', 'no-store');
      const taken = await takeLanding(deps.db, landing, details.params.state);
      if (!taken) return reject(ctx, '', new SamlRejection('landing_unavailable'));
      const connection = await connections.get(taken.connectionName);
      if (!connection) return reject(ctx, taken.connectionName, new SamlRejection('unknown_connection'));
      return completeSignIn(ctx, details, connection, taken.result as StoredResult, false);
    }
    const accountId = details.session?.accountId;
    if (accountId && details.prompt.reasons.length > 0 && details.prompt.reasons.every((r) => STEP_UP_REASONS.has(r))) {
      const connection = await stepUpConnection(details, accountId);
      if (connection) {
        ctx.set('Cache-Control', 'no-store');
        return startSso(ctx, details, connection, true);
      }
    }
    return next();
  };
  pages.use(entry);

  /** The --step-up idp connection that proved this session, when the session came from SAML. */
  async function stepUpConnection(details: InteractionDetails, accountId: string): Promise<SamlConnection | undefined> {
    const proofs = await existingProofs(deps, details, accountId);
    if (!proofs.some((p) => p.method === 'saml')) return undefined;
    const identity = await deps.db('saml_identities').where({ user_id: accountId }).orderByRaw('last_login_at DESC NULLS LAST').first('connection_name');
    const connection = identity ? await connections.get(identity.connection_name) : undefined;
    return connection?.stepUp === 'idp' ? connection : undefined;
  }

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
    ctx.body = spMetadataXml({
      entityId: urls.entityId,
      acsUrl: urls.acsUrl,
      certificatePem: connection.spCertificate,
      encryptionCertificatePem: connection.encryptedAssertions ? connection.spEncryptionCertificate : null,
    });
  });

  acs.post('/saml/:name/acs', async (ctx) => {
    const connection = await connections.get(ctx.params.name!);
    if (!connection) throw Object.assign(new Error('Unknown single sign-on connection.'), { status: 404, expose: true });
    const body = bodyOf(ctx);
    try {
      const sp = await spIdentity(connection);
      const xml = decodeResponse(body.SAMLResponse);
      const validated = validateResponseXml(xml, { connection, spEntityId: sp.entityId, acsUrl: sp.acsUrl, skewSeconds: skew, decryptionKeyPem: sp.encryptionKeyPem });
      if (validated.inResponseTo === null) {
        // Unsolicited (IdP-initiated): only where the connection allows it, with every other check
        // (replay cache included). It lands once on the account page, through the account pages'
        // own sign-in started here, in this browser; no RP gets a code, and the RelayState is
        // never a destination (no open redirect).
        if (!connection.allowIdpInitiated) throw new SamlRejection('unsolicited');
        await samlifyCheck(connection, sp, String(body.SAMLResponse), skew);
        if (!(await rememberAssertion(deps.db, connection.name, validated.assertionId, validated.replayUntil))) throw new SamlRejection('replay');
        const state = randomToken(16);
        const result: StoredResult = { nameId: validated.facts.nameId, facts: validated.facts };
        const token = await saveLanding(deps.db, { connectionName: connection.name, state, result, ttlSeconds: LANDING_TTL_SECONDS });
        ctx.cookies.set(LANDING_COOKIE, token, { ...landingCookieOptions(deps), maxAge: LANDING_TTL_SECONDS * 1000, overwrite: true });
        ctx.set('Cache-Control', 'no-store');
        return redirectSeeOther(ctx, accountSignInUrl(deps, ctx, state, '/account', { prompt: 'login' }));
      }
      const request = await findRequest(deps.db, body.RelayState);
      if (!request || request.connectionName !== connection.name) throw new SamlRejection('unknown_relay_state');
      if (request.requestId !== validated.inResponseTo) throw new SamlRejection('in_response_to');
      if (request.expired) throw new SamlRejection('request_expired');
      await samlifyCheck(connection, sp, String(body.SAMLResponse), skew);
      if (!(await rememberAssertion(deps.db, connection.name, validated.assertionId, validated.replayUntil))) throw new SamlRejection('replay');
      const result: StoredResult = { nameId: validated.facts.nameId, facts: validated.facts, stepUp: request.stepUp };
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
    if (details.prompt.name !== 'login') throw Object.assign(new Error('This step is already complete.'), { status: 400, expose: true });
    const connection = await connections.get(request.connectionName);
    if (!connection) return reject(ctx, request.connectionName, new SamlRejection('unknown_connection'));
    return completeSignIn(ctx, details, connection, stored, Boolean(stored.stepUp));
  });

  /**
   * After an accepted assertion, in the interaction it belongs to: provision (or find) the user,
   * offer a link to an existing local account, ask the IdP for more (--step-up idp), or continue
   * the sign-in through the state machine (which asks for local factors when more is needed).
   */
  async function completeSignIn(ctx: Context, details: InteractionDetails, connection: SamlConnection, stored: StoredResult, answeredStepUp: boolean) {
    const clientId = String(details.params.client_id);
    const profile = mapProfile(stored.facts, connection.attributeMap);
    // Groups the connection provisioned by SCIM count with the assertion's (src/scim/groups.ts).
    const roles = rolesFor(await withScimGroups(deps.db, connection.name, stored.nameId, profile.groups), connection.roleMap, connection.defaultRole);
    const outcome = await provisionUser(deps.db, { connection, nameId: stored.nameId, profile, roles });
    if (outcome.kind === 'refused') return reject(ctx, connection.name, new SamlRejection(outcome.reason), { clientId });
    if (outcome.kind === 'email_taken') return offerLinkPage(ctx, details, connection, stored, outcome.userId);
    if (outcome.created) await deps.audit(ctx, { type: 'user.created', userId: outcome.userId, clientId, data: { via: 'saml', connection: connection.name } });
    if (outcome.roles.added.length || outcome.roles.removed.length) {
      await deps.audit(ctx, { type: 'user.roles_changed', userId: outcome.userId, data: { connection: connection.name, added: outcome.roles.added, removed: outcome.roles.removed } });
    }
    const level = levelFor(stored.facts.authnContextClassRef, connection.acrMap);
    deps.metrics.loginAttempts.inc({ method: 'saml', result: 'success' });
    await deps.audit(ctx, { type: 'login.success', userId: outcome.userId, clientId, data: { method: 'saml', connection: connection.name, level } });
    if (connection.stepUp === 'idp') {
      const wanted = wantedLevels(deps.assurance, details.params, claimsParam(details));
      if (belowWanted(level, wanted)) {
        // The IdP is asked for more once; an IdP that still gives less ends the sign-in.
        if (!answeredStepUp) return startSso(ctx, details, connection, true);
        await deps.audit(ctx, { type: 'login.unmet_requirements', userId: outcome.userId, clientId, data: { wanted, via: 'saml', connection: connection.name, level } });
        return redirectSeeOther(
          ctx,
          await interactionResultUrl(deps, ctx, { error: 'unmet_authentication_requirements', error_description: 'the identity provider did not authenticate the user at the requested level' }, false),
        );
      }
    }
    redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, outcome.userId, timedProofs(samlProofs(level))));
  }

  // --- linking an existing local account --------------------------------------------------------

  async function offerLinkPage(ctx: Context, details: InteractionDetails, connection: SamlConnection, stored: StoredResult, userId: string) {
    await offerLink(deps.db, { interactionUid: details.uid, connectionName: connection.name, nameId: stored.nameId, userId, facts: stored.facts }, deps.config.ttl.interaction);
    await deps.audit(ctx, { type: 'saml.link_offered', userId, clientId: String(details.params.client_id), data: { connection: connection.name } });
    const user = await findUserById(deps.db, userId);
    ctx.set('Cache-Control', 'no-store');
    deps.views.render(ctx, 'saml-link', { title: 'Link your account', uid: details.uid, step: 'offer', email: user?.email ?? '', connection: connection.name }, 409);
  }

  /**
   * The offer of this interaction and the local sign-in that may confirm it: the same user, every
   * factor the state machine asks for proven, by local methods only and just now.
   */
  async function confirmableLink(details: InteractionDetails) {
    const link = await pendingLink(deps.db, details.uid);
    const pending = await loadPending(deps.db, details.uid);
    if (!link || !pending || pending.userId !== link.userId) return undefined;
    const now = Math.floor(Date.now() / 1000);
    if (pending.proofs.length === 0 || pending.proofs.some((p) => p.method === 'saml') || !pending.proofs.some((p) => now - p.at <= deps.config.recentAuthSeconds)) return undefined;
    const { step } = await planFor(deps, details, link.userId, pending.proofs);
    return step.kind === 'done' ? { link, proofs: pending.proofs } : undefined;
  }

  const linkExpired = () => Object.assign(new Error('This request to link your account has expired. Go back to the application and sign in with single sign-on again.'), { status: 400, expose: true });

  pages.get('/interaction/:uid/saml/link/sign-in', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const link = await pendingLink(deps.db, details.uid);
    const user = link ? await findUserById(deps.db, link.userId) : undefined;
    if (!link || !user || details.prompt.name !== 'login') throw linkExpired();
    ctx.set('Cache-Control', 'no-store');
    return renderLogin(deps, ctx, details, { email: user.email, notice: `Sign in to your account to link it to ${link.connectionName} single sign-on.` });
  });

  pages.get('/interaction/:uid/saml/link', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    if (details.prompt.name !== 'login') throw linkExpired();
    const ready = await confirmableLink(details);
    if (!ready) throw linkExpired();
    const user = await findUserById(deps.db, ready.link.userId);
    ctx.set('Cache-Control', 'no-store');
    deps.views.render(ctx, 'saml-link', { title: 'Link your account', uid: details.uid, step: 'confirm', email: user?.email ?? '', connection: ready.link.connectionName });
  });

  const linkForm = z.object({ action: z.enum(['confirm', 'cancel']) });
  pages.post('/interaction/:uid/saml/link', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    if (details.prompt.name !== 'login') throw linkExpired();
    const parsed = linkForm.safeParse(bodyOf(ctx));
    const clientId = String(details.params.client_id);
    if (!parsed.success || parsed.data.action === 'cancel') {
      const link = await pendingLink(deps.db, details.uid);
      await dropLink(deps.db, details.uid);
      await clearPending(deps.db, details.uid);
      if (link) await deps.audit(ctx, { type: 'saml.link_declined', userId: link.userId, clientId, data: { connection: link.connectionName } });
      return redirectSeeOther(ctx, `/interaction/${details.uid}`);
    }
    const ready = await confirmableLink(details);
    const link = ready ? await takeLink(deps.db, details.uid, ready.link.userId) : undefined;
    if (!ready || !link) throw linkExpired();
    const connection = await connections.get(link.connectionName);
    if (!connection) return reject(ctx, link.connectionName, new SamlRejection('unknown_connection'), { clientId });
    if (!(await storeLink(deps.db, link))) return reject(ctx, connection.name, new SamlRejection('already_linked'), { userId: link.userId, clientId });
    await deps.audit(ctx, { type: 'saml.linked', userId: link.userId, clientId, data: { connection: connection.name } });
    const profile = mapProfile(link.facts, connection.attributeMap);
    const outcome = await provisionUser(deps.db, { connection, nameId: link.nameId, profile, roles: rolesFor(profile.groups, connection.roleMap, connection.defaultRole) });
    if (outcome.kind !== 'ok') return reject(ctx, connection.name, new SamlRejection(outcome.kind === 'refused' ? outcome.reason : 'already_linked'), { userId: link.userId, clientId });
    if (outcome.roles.added.length || outcome.roles.removed.length) {
      await deps.audit(ctx, { type: 'user.roles_changed', userId: outcome.userId, data: { connection: connection.name, added: outcome.roles.added, removed: outcome.roles.removed } });
    }
    const level = levelFor(link.facts.authnContextClassRef, connection.acrMap);
    await deps.audit(ctx, { type: 'login.success', userId: outcome.userId, clientId, data: { method: 'saml', connection: connection.name, level } });
    // The sign-in completes with both: what the owner just proved locally and what the IdP said.
    redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, outcome.userId, mergeProofs(ready.proofs, timedProofs(samlProofs(level)))));
  });
}
