// Consent: first-party clients are granted silently; third-party clients get a page, and the
// grant is remembered for the user's later sessions.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { findUserById } from '../../identity/users.ts';
import { rememberGrant } from '../../oidc/grants.ts';
import type { FlowDeps } from '../context.ts';
import { finishInteraction, loadInteraction, type InteractionDetails } from '../interaction.ts';

const SCOPE_DESCRIPTIONS: Record<string, string> = {
  openid: 'Confirm your identity',
  profile: 'Your name',
  email: 'Your email address and whether it is verified',
  offline_access: 'Stay connected when you are not using it',
  'account:read': 'See your account, devices and applications',
  'account:write': 'Manage your devices and applications, and delete your account',
};

/** `remember`: the user consented on the page, so later sessions reuse this grant. */
async function grantConsent(deps: FlowDeps, ctx: Context, details: InteractionDetails, remember: boolean) {
  const provider = deps.provider();
  const accountId = details.session!.accountId;
  const clientId = String(details.params.client_id);
  const promptDetails = details.prompt.details as {
    missingOIDCScope?: string[];
    missingOIDCClaims?: string[];
    missingResourceScopes?: Record<string, string[]>;
  };
  const grant = details.grantId
    ? ((await provider.Grant.find(details.grantId)) ?? new provider.Grant({ accountId, clientId }))
    : new provider.Grant({ accountId, clientId });
  if (promptDetails.missingOIDCScope) grant.addOIDCScope(promptDetails.missingOIDCScope.join(' '));
  if (promptDetails.missingOIDCClaims) grant.addOIDCClaims(promptDetails.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(promptDetails.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  if (remember) {
    await rememberGrant(deps.db, accountId, clientId, grantId);
    await deps.audit(ctx, { type: 'consent.granted', userId: accountId, clientId, data: { scopes: promptDetails.missingOIDCScope ?? [] } });
  }
  await finishInteraction(deps, ctx, { consent: { grantId } }, true);
}

export async function showConsent(deps: FlowDeps, ctx: Context, details: InteractionDetails) {
  const client = await deps.provider().Client.find(String(details.params.client_id));
  if (!client) throw Object.assign(new Error('This application is no longer registered.'), { status: 400, expose: true });
  if ((client as unknown as { first_party?: boolean }).first_party) return grantConsent(deps, ctx, details, false);
  const promptDetails = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
  // API scopes (the Account API's) are shown too: the user must see what they allow.
  const asked = [...(promptDetails.missingOIDCScope ?? []), ...Object.values(promptDetails.missingResourceScopes ?? {}).flat()];
  const scopes = [...new Set(asked)].map((name) => ({ name, description: SCOPE_DESCRIPTIONS[name] ?? name }));
  const user = await findUserById(deps.db, details.session!.accountId);
  deps.views.render(ctx, 'consent', {
    title: 'Allow access',
    uid: details.uid,
    clientName: client.clientName ?? client.clientId,
    clientUri: client.clientUri,
    scopes,
    claims: promptDetails.missingOIDCClaims,
    userEmail: user?.email,
  });
}

export function registerConsentRoutes(router: Router, deps: FlowDeps) {
  router.post('/interaction/:uid/consent', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    if (details.prompt.name !== 'consent') throw Object.assign(new Error('This step is already complete.'), { status: 400, expose: true });
    await grantConsent(deps, ctx, details, true);
  });
}
