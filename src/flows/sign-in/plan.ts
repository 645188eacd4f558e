// What a sign-in still needs: the level the RP asked for (first acr_values entry this user
// can satisfy, OIDC Core 3.1.2.1), at least two factors when the user has a second factor,
// minus what has been proven recently enough. When nothing the user has can meet the request,
// a new factor may be enrolled inline, but only by someone who has just proven every factor the
// user already has: a password alone never adds a second factor to an account that has one.
import { LEVELS, rank, targetLevel, type AssurancePolicy, type Level, type Proof } from '../../assurance/index.ts';
import type { Enrolled, FactorRegistry } from '../../methods/registry.ts';

export type NextStep =
  | { kind: 'done'; proofs: Proof[] }
  /** The first factor again (password, passkey or link): what the session proved is too old. */
  | { kind: 'first-factor' }
  | { kind: 'factor'; need: Level; enrolled: Enrolled }
  | { kind: 'enroll'; enrolled: Enrolled }
  | { kind: 'unmet'; wanted: Level[]; enrolled: Enrolled };

export interface StepPolicy {
  assurance: AssurancePolicy;
  /** Inline enrolment when the user cannot meet the request ('deny': the RP gets an error). */
  enroll: 'inline' | 'deny';
  /** Enrolment needs the user's existing factors proven within this many seconds. */
  recentAuthSeconds: number;
}

type Missing = 'nothing' | 'first' | 'second' | 'passkey';

/**
 * What `proofs` lack to reach `level` with every proof it needs younger than `maxAge` seconds
 * (undefined: no limit). Mirrors assess(): mfa is two factor kinds or a phishing-resistant proof.
 */
export function missingFor(proofs: Proof[], level: Level, maxAge: number | undefined, now: number): Missing {
  const fresh = proofs.filter((p) => maxAge === undefined || now - p.at <= maxAge);
  if (level === 'phr') return fresh.some((p) => p.phishingResistant) ? 'nothing' : 'passkey';
  if (level === 'pwd') return fresh.length > 0 ? 'nothing' : 'first';
  if (fresh.some((p) => p.phishingResistant)) return 'nothing';
  const kinds = new Set(fresh.map((p) => p.factor));
  if (kinds.size >= 2) return 'nothing';
  // One knowledge proof: a second factor completes it. Anything else: start from the first factor.
  return kinds.has('knowledge') ? 'second' : 'first';
}

function ask(missing: Exclude<Missing, 'nothing'>, enrolled: Enrolled): NextStep {
  if (missing === 'first') return { kind: 'first-factor' };
  return { kind: 'factor', need: missing === 'passkey' ? 'phr' : 'mfa', enrolled };
}

export function nextStep(policy: StepPolicy, factors: FactorRegistry, enrolled: Enrolled, wanted: Level[], proofs: Proof[], now = Math.floor(Date.now() / 1000)): NextStep {
  // A level this sign-in's proofs already reach counts as one the user can meet, even with no
  // local factor for it (an IdP that authenticated with mfa, through a SAML connection's --acr).
  const capable = new Set(factors.capabilities(enrolled));
  for (const level of LEVELS) if (missingFor(proofs, level, policy.assurance.elevationTtl[level], now) === 'nothing') capable.add(level);
  const target = targetLevel(wanted, capable);
  const floor: Level = factors.hasSecondFactor(enrolled) ? 'mfa' : 'pwd';
  if (target === 'unmet') {
    if (policy.enroll === 'deny') return { kind: 'unmet', wanted, enrolled };
    const missing = missingFor(proofs, floor, policy.recentAuthSeconds, now);
    return missing === 'nothing' ? { kind: 'enroll', enrolled } : ask(missing, enrolled);
  }
  const need = LEVELS[Math.max(rank(target ?? 'pwd'), rank(floor)) - 1]!;
  const missing = missingFor(proofs, need, policy.assurance.elevationTtl[need], now);
  return missing === 'nothing' ? { kind: 'done', proofs } : ask(missing, enrolled);
}
