// Browser session timeouts, whichever comes first: idle (SESSION_IDLE_TTL, or SESSION_REMEMBER_TTL
// when "Keep me signed in" was ticked) and absolute (SESSION_MAX_TTL from the session's first
// sign-in: its iat, which the adapter drops while nobody is signed in, so a signed-out session the
// browser kept does not age the sign-in). oidc-provider saves the session with this TTL on every
// use, and the adapter refuses a session past its expiry (on the database's clock), so each use
// slides the idle window but never past the absolute end. test/e2e/session-timeouts.test.ts
// checks this with the default TTLs under a moved clock.
export interface SessionTimeouts {
  idle: number;
  rememberIdle: number;
  max: number;
}

/** The part of oidc-provider's Session this reads: `transient` is "not remembered", `iat` its creation. */
export interface TimedSession {
  transient?: boolean;
  iat?: number;
}

export function sessionTtl(timeouts: SessionTimeouts, session: TimedSession, now = Math.floor(Date.now() / 1000)): number {
  const idle = session.transient ? timeouts.idle : timeouts.rememberIdle;
  const left = (session.iat ?? now) + timeouts.max - now;
  // At least a second (the library refuses 0); a session past its absolute end is never saved
  // with more than that, so it expires before its next use.
  return Math.max(1, Math.min(idle, left));
}
