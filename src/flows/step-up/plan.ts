// What a sign-in still needs: the level the RP asked for (first acr_values entry this user
// can satisfy, OIDC Core 3.1.2.1), at least two factors when the user has a second factor,
// minus what has been proven already.
import { assess, LEVELS, rank, requestedLevels, type AssurancePolicy, type Level, type Proof } from '../../oidc/assurance.ts';
import type { Enrolled, FactorRegistry } from '../../methods/registry.ts';

export type NextStep =
  | { kind: 'done'; proofs: Proof[] }
  | { kind: 'factor'; need: Level; enrolled: Enrolled }
  | { kind: 'unmet'; wanted: Level[]; enrolled: Enrolled };

/** The level to reach for this request; undefined when none was asked, 'unmet' when none can be. */
export function targetLevel(wanted: Level[], capable: Set<Level>): Level | 'unmet' | undefined {
  if (wanted.length === 0) return undefined;
  return wanted.find((l) => capable.has(l)) ?? 'unmet';
}

/** acr levels asked for, from acr_values and from an essential claims.id_token.acr request. */
export function wantedLevels(policy: AssurancePolicy, params: Record<string, unknown>, claims?: { id_token?: { acr?: { values?: string[]; value?: string } } }): Level[] {
  const fromParam = requestedLevels(policy, params.acr_values as string | undefined);
  const acrClaim = claims?.id_token?.acr;
  const fromClaims = requestedLevels(policy, [...(acrClaim?.values ?? []), ...(acrClaim?.value ? [acrClaim.value] : [])].join(' '));
  return [...new Set([...fromParam, ...fromClaims])];
}

export function nextStep(policy: AssurancePolicy, factors: FactorRegistry, enrolled: Enrolled, wanted: Level[], proofs: Proof[]): NextStep {
  const target = targetLevel(wanted, factors.capabilities(enrolled));
  if (target === 'unmet') return { kind: 'unmet', wanted, enrolled };
  const floor: Level = factors.hasSecondFactor(enrolled) ? 'mfa' : 'pwd';
  const need = LEVELS[Math.max(rank(target ?? 'pwd'), rank(floor)) - 1]!;
  const current = assess(proofs, policy).level;
  return rank(current) >= rank(need) ? { kind: 'done', proofs } : { kind: 'factor', need, enrolled };
}
