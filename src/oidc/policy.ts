// Interaction policy: oidc-provider's defaults plus the checks the assurance model needs.
import { interactionPolicy, type KoaContextWithOIDC } from 'oidc-provider';
import { levelForAcr, rank, requestedLevels, type AssurancePolicy } from './assurance.ts';

const { Check, base } = interactionPolicy;

export function createInteractionPolicy(assurance: AssurancePolicy) {
  const policy = base();
  const login = policy.get('login')!;
  // The default policy only enforces an essential claims.acr; RPs mostly send acr_values.
  login.checks.add(
    new Check('acr_values', 'the requested authentication context is above the current one', (ctx: KoaContextWithOIDC) => {
      const { oidc } = ctx;
      if (!oidc.session?.accountId || oidc.result?.login) return Check.NO_NEED_TO_PROMPT;
      const wanted = requestedLevels(assurance, oidc.params?.acr_values as string | undefined);
      if (wanted.length === 0) return Check.NO_NEED_TO_PROMPT;
      const current = levelForAcr(assurance, oidc.session.acr);
      // Met when the session is at or above the most preferred level asked for.
      return rank(current) >= rank(wanted[0]) ? Check.NO_NEED_TO_PROMPT : Check.REQUEST_PROMPT;
    }),
  );
  return policy;
}
