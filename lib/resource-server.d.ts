export declare const DEFAULT_ACR_RANKING: string[];
export interface Requirement {
  acr?: string;
  maxAge?: number;
  ranking?: string[];
  now?: number;
}
export type CheckResult = { ok: true } | { ok: false; status: 401; wwwAuthenticate: string; body: { error: string; error_description: string } };
export declare function bearerChallenge(options: { error: string; description?: string; acrValues?: string[]; maxAge?: number }): string;
export declare function checkAuthentication(claims: { active?: boolean; acr?: string; auth_time?: number } | undefined, requirement?: Requirement): CheckResult;
export declare function checkAccessToken(
  claims: { active?: boolean; token_type?: string; aud?: string | string[] } | undefined,
  options?: { audience?: string | string[] },
): CheckResult;
export declare function createStepUpGuard(options: {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Refuse access tokens whose `aud` does not contain this value (any one of them, for an array). */
  audience?: string | string[];
  ranking?: string[];
  fetchImpl?: typeof fetch;
}): {
  check(authorization: string | undefined, requirement?: Requirement): Promise<CheckResult & { claims?: Record<string, unknown> }>;
  middleware(requirement?: Requirement): (req: { headers: { authorization?: string } }, res: { statusCode: number; setHeader(n: string, v: string): void; end(b: string): void }, next: (err?: unknown) => void) => Promise<void>;
  introspect(token: string): Promise<Record<string, unknown>>;
};
