// What a SAML sign-in proves: the IdP authenticated the person, at the level its
// AuthnContextClassRef maps to by the connection's --acr map (unmapped: one factor). The IdP's
// own factors are not ours to name, so the proof says only how many kinds there were: two for
// mfa, and phishing resistance for phr.
import type { Level } from '../../assurance/index.ts';
import type { MethodSuccess } from '../types.ts';

export const samlProof = { method: 'saml', amr: ['saml'], factor: 'knowledge', phishingResistant: false } as const satisfies MethodSuccess;

export function samlProofs(level: Level): MethodSuccess[] {
  if (level === 'phr') return [{ ...samlProof, amr: ['saml', 'mfa'], phishingResistant: true }];
  if (level === 'mfa') return [{ ...samlProof, amr: ['saml', 'mfa'] }, { method: 'saml', amr: ['saml'], factor: 'possession', phishingResistant: false }];
  return [samlProof];
}
