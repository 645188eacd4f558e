// The one place that turns proven factors into acr/amr/auth_time. The interaction policy, the
// ID token and account pages all ask this function; nothing else computes an acr.
/** What kind of factor a proof is (NIST SP 800-63B): a method's success names one. */
export type FactorKind = 'knowledge' | 'possession' | 'inherence';

export type Level = 'pwd' | 'mfa' | 'phr';
export const LEVELS: readonly Level[] = ['pwd', 'mfa', 'phr'];

export interface Proof {
  method: string;
  amr: readonly string[];
  factor: FactorKind;
  phishingResistant: boolean;
  /** epoch seconds */
  at: number;
}

export interface AssurancePolicy {
  names: Record<Level, string>;
  /** Seconds an elevation above pwd stays valid for new requests, per level. */
  elevationTtl: Partial<Record<Level, number>>;
}

export interface Assurance {
  level: Level | undefined;
  acr: string | undefined;
  amr: string[];
  authTime: number | undefined;
}

/**
 * When each level was last reached by `proofs`, or undefined when it is not reached. A level is
 * timed from the oldest of the newest proofs it needs: mfa from the second-newest of the newest
 * proof of each factor kind (or from a phishing-resistant proof, which is multi-factor on its own),
 * phr from the newest phishing-resistant proof. So renewing one factor never renews a level that
 * needs two.
 */
function reachedAt(proofs: Proof[]): Record<Level, number | undefined> {
  if (proofs.length === 0) return { pwd: undefined, mfa: undefined, phr: undefined };
  const newest = (list: Proof[]) => (list.length ? Math.max(...list.map((p) => p.at)) : undefined);
  const phr = newest(proofs.filter((p) => p.phishingResistant));
  const perKind = new Map<string, number>();
  for (const p of proofs) perKind.set(p.factor, Math.max(perKind.get(p.factor) ?? 0, p.at));
  const kindTimes = [...perKind.values()].sort((a, b) => b - a);
  const twoKinds = kindTimes.length >= 2 ? kindTimes[1] : undefined;
  const mfa = phr === undefined ? twoKinds : twoKinds === undefined ? phr : Math.max(phr, twoKinds);
  return { pwd: newest(proofs), mfa, phr };
}

export function rank(level: Level | undefined): number {
  return level ? LEVELS.indexOf(level) + 1 : 0;
}

export function levelForAcr(policy: AssurancePolicy, acr: string | undefined): Level | undefined {
  return LEVELS.find((l) => policy.names[l] === acr);
}

/** acr_values in order of preference → the levels we know, unknown values dropped. */
export function requestedLevels(policy: AssurancePolicy, acrValues: string | undefined): Level[] {
  if (!acrValues) return [];
  return acrValues
    .split(' ')
    .map((v) => levelForAcr(policy, v))
    .filter((l): l is Level => l !== undefined);
}

export function assess(proofs: Proof[], policy: AssurancePolicy, now = Math.floor(Date.now() / 1000)): Assurance {
  // One factor stays one factor for the session's life. A level above it counts only for that
  // level's TTL after it was reached; after that the session is back to a lower level for new requests.
  const reached = reachedAt(proofs);
  const level = [...LEVELS].reverse().find((l) => {
    const at = reached[l];
    if (at === undefined) return false;
    const ttl = policy.elevationTtl[l];
    return ttl === undefined || now - at <= ttl;
  });
  const amr = [...new Set(proofs.flatMap((p) => p.amr))];
  if (new Set(proofs.map((p) => p.factor)).size >= 2 && !amr.includes('mfa')) amr.push('mfa');
  return {
    level,
    acr: level ? policy.names[level] : undefined,
    amr,
    authTime: reached.pwd,
  };
}

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
