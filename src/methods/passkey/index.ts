// Passkeys (WebAuthn) via @simplewebauthn/server: registration, discoverable sign-in, and use
// as a second factor. Challenges are server-side, single use and expire after five minutes.
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import type { Db } from '../../db/knex.ts';
import type { MethodSuccess } from '../types.ts';

const CHALLENGE_TTL_SECONDS = 300;

// Loaded on the first passkey request, not at start-up: the library and its CBOR/COSE
// dependencies are a tenth of the server's start time, and many deployments never use passkeys.
let library: Promise<typeof import('@simplewebauthn/server')> | undefined;
const webauthn = () => (library ??= import('@simplewebauthn/server'));

export interface PasskeyConfig {
  rpId: string;
  rpName: string;
  origin: string;
}

export interface PasskeyRow {
  id: string;
  user_id: string;
  name: string;
  public_key: Buffer;
  counter: number | string;
  transports: string[];
  device_type: string | null;
  backed_up: boolean;
  created_at: Date;
  last_used_at: Date | null;
}

export class PasskeyError extends Error {
  /** Set when the failure is a security signal worth an audit event. */
  readonly audit?: 'counter_rollback' | 'wrong_user';
  /** The credential's owner, when the credential is known (for the audit event). */
  readonly userId?: string;
  constructor(message: string, audit?: 'counter_rollback' | 'wrong_user', userId?: string) {
    super(message);
    this.audit = audit;
    this.userId = userId;
  }
}

/** A user-verified passkey is phishing-resistant and multi-factor on its own. */
export function passkeyProof(userVerified: boolean, backedUp: boolean): MethodSuccess {
  const key = backedUp ? 'swk' : 'hwk';
  return userVerified
    ? { method: 'passkey', amr: [key, 'mfa'], factor: 'possession', phishingResistant: true }
    : { method: 'passkey', amr: [key], factor: 'possession', phishingResistant: false };
}

export function createPasskeyMethod(db: Db, config: PasskeyConfig) {
  async function storeChallenge(challenge: string, purpose: string, binding: string, userId?: string) {
    await db('webauthn_challenges').insert({
      challenge,
      purpose,
      binding,
      user_id: userId ?? null,
      expires_at: db.raw('now() + make_interval(secs => ?)', [CHALLENGE_TTL_SECONDS]),
    });
  }

  /** Atomically marks the challenge used; true only for an unexpired, unused one of this binding. */
  function challengeConsumer(purpose: string, binding: string) {
    return async (challenge: string) => {
      const used = await db('webauthn_challenges')
        .where({ challenge, purpose, binding })
        .whereNull('consumed_at')
        .andWhere('expires_at', '>', db.fn.now())
        .update({ consumed_at: db.fn.now() }, ['challenge']);
      return used.length === 1;
    };
  }

  async function listFor(userId: string): Promise<PasskeyRow[]> {
    return db<PasskeyRow>('passkeys').where({ user_id: userId }).orderBy('created_at');
  }

  return {
    list: listFor,

    /** The number of `userId`'s passkeys: unexecuted, for the registry's one enrolment query. */
    countQuery(userId: string) {
      return db('passkeys').where({ user_id: userId }).count('*');
    },

    async registrationOptions(user: { id: string; email: string; name: string | null }, binding: string) {
      const existing = await listFor(user.id);
      const options = await (await webauthn()).generateRegistrationOptions({
        rpName: config.rpName,
        rpID: config.rpId,
        userName: user.email,
        userDisplayName: user.name ?? user.email,
        userID: new TextEncoder().encode(user.id),
        attestationType: 'none',
        excludeCredentials: existing.map((p) => ({ id: p.id, transports: p.transports })),
        // Discoverable (passwordless) and user-verifying, so a passkey alone reaches the phr level.
        authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
      });
      await storeChallenge(options.challenge, 'register', binding, user.id);
      return options;
    },

    async register(userId: string, binding: string, response: RegistrationResponseJSON, name: string) {
      const verification = await (await webauthn()).verifyRegistrationResponse({
        response,
        expectedChallenge: challengeConsumer('register', binding),
        expectedOrigin: config.origin,
        expectedRPID: config.rpId,
        requireUserVerification: true,
      }).catch((err: Error) => {
        throw new PasskeyError(`The passkey could not be registered: ${err.message}`);
      });
      if (!verification.verified) throw new PasskeyError('The passkey could not be verified.');
      const info = verification.registrationInfo;
      await db('passkeys').insert({
        id: info.credential.id,
        user_id: userId,
        name: name.trim().slice(0, 100) || 'Passkey',
        public_key: Buffer.from(info.credential.publicKey),
        counter: info.credential.counter,
        transports: JSON.stringify(info.credential.transports ?? []),
        device_type: info.credentialDeviceType,
        backed_up: info.credentialBackedUp,
        aaguid: info.aaguid,
      });
      return info.credential.id;
    },

    /** Options for sign-in: any discoverable passkey (userId unset) or one of the user's. */
    async authenticationOptions(binding: string, userId?: string) {
      const allow = userId ? await listFor(userId) : [];
      const options = await (await webauthn()).generateAuthenticationOptions({
        rpID: config.rpId,
        allowCredentials: allow.map((p) => ({ id: p.id, transports: p.transports as never })),
        userVerification: userId ? 'preferred' : 'required',
      });
      await storeChallenge(options.challenge, 'authenticate', binding, userId);
      return options;
    },

    /**
     * Verifies an assertion. `expectedUserId` (second factor, re-authentication) must own the
     * credential; without it (passwordless) the credential names the user.
     */
    async authenticate(binding: string, response: AuthenticationResponseJSON, expectedUserId?: string) {
      const stored = await db<PasskeyRow>('passkeys').where({ id: response.id }).first();
      if (!stored) throw new PasskeyError('This passkey is not registered here.');
      if (expectedUserId && stored.user_id !== expectedUserId) throw new PasskeyError('This passkey belongs to another account.', 'wrong_user');
      const storedCounter = Number(stored.counter);
      let verification;
      try {
        verification = await (await webauthn()).verifyAuthenticationResponse({
          response,
          expectedChallenge: challengeConsumer('authenticate', binding),
          expectedOrigin: config.origin,
          expectedRPID: config.rpId,
          credential: { id: stored.id, publicKey: new Uint8Array(stored.public_key), counter: storedCounter, transports: stored.transports },
          requireUserVerification: !expectedUserId,
        });
      } catch (err) {
        const message = (err as Error).message;
        if (/counter/i.test(message)) throw new PasskeyError('This passkey reported a signature counter that went backwards; it may be cloned.', 'counter_rollback', stored.user_id);
        throw new PasskeyError(`The passkey could not be verified: ${message}`, undefined, stored.user_id);
      }
      if (!verification.verified) throw new PasskeyError('The passkey could not be verified.', undefined, stored.user_id);
      const { newCounter, userVerified, credentialBackedUp } = verification.authenticationInfo;
      // A counter that does not increase (when the authenticator keeps one) signals a clone.
      if ((newCounter > 0 || storedCounter > 0) && newCounter <= storedCounter) {
        throw new PasskeyError('This passkey reported a signature counter that went backwards; it may be cloned.', 'counter_rollback', stored.user_id);
      }
      // Conditional on the counter we checked, so two concurrent uses of one signature lose one.
      const updated = await db('passkeys')
        .where({ id: stored.id, counter: stored.counter })
        .update({ counter: newCounter, backed_up: credentialBackedUp, last_used_at: db.fn.now() }, ['id']);
      if (updated.length !== 1) throw new PasskeyError('This passkey was used concurrently; try again.', 'counter_rollback', stored.user_id);
      return { userId: stored.user_id, credentialId: stored.id, proof: passkeyProof(userVerified, credentialBackedUp) };
    },

    async rename(userId: string, id: string, name: string): Promise<boolean> {
      return (await db('passkeys').where({ user_id: userId, id }).update({ name: name.trim().slice(0, 100) || 'Passkey' }, ['id'])).length === 1;
    },

    async remove(userId: string, id: string): Promise<boolean> {
      return (await db('passkeys').where({ user_id: userId, id }).delete(['id'])).length === 1;
    },
  };
}

export type PasskeyMethod = ReturnType<typeof createPasskeyMethod>;
