// The one place that turns proven factors into acr/amr/auth_time. The interaction policy, the
// ID token and account pages all ask this function; nothing else computes an acr.
import type { FactorKind } from '../methods/types.ts';

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

function levelOf(proofs: Proof[]): Level | undefined {
  if (proofs.length === 0) return undefined;
  if (proofs.some((p) => p.phishingResistant)) return 'phr';
  const kinds = new Set(proofs.map((p) => p.factor));
  return kinds.size >= 2 ? 'mfa' : 'pwd';
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
  // One factor stays one factor for the session's life. A level above it was reached when its
  // last factor was proven (a step-up adds a factor to the session's earlier ones), and counts
  // only for that level's TTL; after that the session is back to one factor for new requests.
  let level = levelOf(proofs);
  const reachedAt = proofs.length ? Math.max(...proofs.map((p) => p.at)) : 0;
  while (level && level !== 'pwd') {
    const ttl = policy.elevationTtl[level];
    if (ttl === undefined || now - reachedAt <= ttl) break;
    level = LEVELS[LEVELS.indexOf(level) - 1];
  }
  const amr = [...new Set(proofs.flatMap((p) => p.amr))];
  if (new Set(proofs.map((p) => p.factor)).size >= 2 && !amr.includes('mfa')) amr.push('mfa');
  return {
    level,
    acr: level ? policy.names[level] : undefined,
    amr,
    authTime: proofs.length ? Math.max(...proofs.map((p) => p.at)) : undefined,
  };
}
