// What every authentication method returns on success: the facts the assurance function needs.
export type FactorKind = 'knowledge' | 'possession' | 'inherence';

export interface MethodSuccess {
  method: string;
  amr: readonly string[];
  factor: FactorKind;
  phishingResistant: boolean;
}
