// What every authentication method returns on success: the facts the assurance function needs.
import type { FactorKind } from '../assurance/index.ts';

export type { FactorKind };

export interface MethodSuccess {
  method: string;
  amr: readonly string[];
  factor: FactorKind;
  phishingResistant: boolean;
}
