// Interaction policy: oidc-provider's defaults plus the checks the assurance model needs.
import { interactionPolicy, type KoaContextWithOIDC } from 'oidc-provider';
import type { Db } from '../db/knex.ts';
import type { FactorRegistry } from '../methods/registry.ts';
import { loadSessionProofs } from '../sessions/proofs.ts';
import { assess, rank, targetLevel, wantedLevels, type AssurancePolicy, type Proof } from '../assurance/index.ts';

const { Check, base } = interactionPolicy;

/** The proofs behind the current session: fresh from this request's login, else stored. */
export async function sessionProofs(ctx: KoaContextWithOIDC, db: Db): Promise<Proof[]> {
  const fresh = (ctx.oidc.result as { latchkey?: { proofs?: Proof[] } } | undefined)?.latchkey?.proofs;
  if (fresh) return fresh;
  const session = ctx.oidc.session;
  if (!session?.uid || !session.accountId) return [];
  return loadSessionProofs(db, session.uid, session.accountId);
}

export function createInteractionPolicy(assurance: AssurancePolicy, db: Db, factors: FactorRegistry) {
  const policy = base();
  const login = policy.get('login')!;
  // The default policy only enforces an essential claims.acr; RPs mostly send acr_values.
  // The session's level is recomputed now, so an elevation older than its TTL no longer counts.
  login.checks.add(
    new Check('acr_values', 'the requested authentication context is above the current one', async (ctx: KoaContextWithOIDC) => {
      const { oidc } = ctx;
      if (!oidc.session?.accountId || oidc.result?.login) return Check.NO_NEED_TO_PROMPT;
      const wanted = wantedLevels(assurance, oidc.params ?? {}, oidc.claims as never);
      if (wanted.length === 0) return Check.NO_NEED_TO_PROMPT;
      const enrolled = await factors.enrolled(oidc.session.accountId);
      const target = targetLevel(wanted, factors.capabilities(enrolled));
      if (target === 'unmet' || target === undefined) return Check.REQUEST_PROMPT;
      const current = assess(await sessionProofs(ctx, db), assurance).level;
      return rank(current) >= rank(target) ? Check.NO_NEED_TO_PROMPT : Check.REQUEST_PROMPT;
    }),
  );
  return policy;
}
