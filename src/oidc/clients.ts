// Relying-party registrations: stored in the database, secrets sealed at rest.
import { z } from 'zod';
import type { Db } from '../db/knex.ts';
import { decrypt, encrypt, randomToken } from '../security/crypto.ts';
import { createClientCache } from './client-cache.ts';

const GRANT_TYPES = ['authorization_code', 'refresh_token', 'client_credentials'] as const;

export const clientInputSchema = z
  .object({
    clientId: z.string().regex(/^[A-Za-z0-9._~-]{1,128}$/, 'client id: 1-128 characters of A-Z a-z 0-9 . _ ~ -'),
    secret: z.string().min(32, 'client secret: at least 32 characters').optional(),
    public: z.boolean().default(false),
    name: z.string().min(1).max(200).optional(),
    redirectUris: z.array(z.url()).default([]),
    postLogoutRedirectUris: z.array(z.url()).default([]),
    grantTypes: z.array(z.enum(GRANT_TYPES)).default(['authorization_code', 'refresh_token']),
    scope: z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$/, 'scope: space-separated tokens').optional(),
    firstParty: z.boolean().default(false),
    requireVerifiedEmail: z.boolean().default(false),
    resourceServer: z.boolean().default(false),
    // May request the Account API (resource <ISSUER>/api/account, scopes account:read/write).
    accountApi: z.boolean().default(false),
    backchannelLogoutUri: z.url().optional(),
    // Where Security Event Tokens about this client's users are pushed (RFC 8935).
    eventsUri: z.url({ protocol: /^https?$/ }).optional(),
  })
  .superRefine((v, ctx) => {
    if (v.public && v.secret) ctx.addIssue({ code: 'custom', message: '--public and --secret are mutually exclusive' });
    if (v.public && v.resourceServer) ctx.addIssue({ code: 'custom', message: 'a resource server must be a confidential client' });
    if (v.public && v.grantTypes.includes('client_credentials'))
      ctx.addIssue({ code: 'custom', message: 'public clients cannot use client_credentials' });
    if (v.grantTypes.includes('authorization_code') && v.redirectUris.length === 0)
      ctx.addIssue({ code: 'custom', message: 'authorization_code needs at least one --redirect-uri' });
    if (!v.grantTypes.includes('authorization_code') && v.redirectUris.length > 0)
      ctx.addIssue({ code: 'custom', message: '--redirect-uri needs the authorization_code grant type' });
  });

export type ClientInput = z.input<typeof clientInputSchema>;

interface ClientRow {
  client_id: string;
  metadata: Record<string, unknown>;
  secret_enc: string | null;
  first_party: boolean;
  require_verified_email: boolean;
  created_at: Date;
}

/** Builds the OAuth client metadata (RFC 7591 names) the provider validates and uses. */
export function toClientMetadata(input: z.output<typeof clientInputSchema>): Record<string, unknown> {
  const usesCode = input.grantTypes.includes('authorization_code');
  return {
    client_id: input.clientId,
    ...(input.name ? { client_name: input.name } : {}),
    grant_types: input.grantTypes,
    response_types: usesCode ? ['code'] : [],
    redirect_uris: input.redirectUris,
    post_logout_redirect_uris: input.postLogoutRedirectUris,
    token_endpoint_auth_method: input.public ? 'none' : 'client_secret_basic',
    ...(input.scope ? { scope: input.scope } : {}),
    ...(input.backchannelLogoutUri ? { backchannel_logout_uri: input.backchannelLogoutUri, backchannel_logout_session_required: true } : {}),
    ...(input.eventsUri ? { events_uri: input.eventsUri } : {}),
    first_party: input.firstParty,
    require_verified_email: input.requireVerifiedEmail,
    resource_server: input.resourceServer,
    account_api: input.accountApi,
  };
}

export class ClientExistsError extends Error {}

export function createClientStore(db: Db, atRestKey: Buffer) {
  const aad = (clientId: string) => `client-secret:${clientId}`;
  // The provider's lookups are cached; every write below drops the entry (see client-cache.ts).
  const cache = createClientCache(db);

  async function loadForProvider(clientId: string): Promise<Record<string, unknown> | undefined> {
    const row = await db<ClientRow>('oidc_clients').where({ client_id: clientId }).first();
    if (!row) return undefined;
    return {
      ...row.metadata,
      ...(row.secret_enc ? { client_secret: decrypt(atRestKey, row.secret_enc, aad(row.client_id)) } : {}),
    };
  }

  return {
    cache,

    /** Returns the metadata plus the generated secret, which is shown once and then only stored sealed. */
    async create(
      raw: ClientInput,
      validate?: (metadata: Record<string, unknown>) => Promise<void>,
    ): Promise<Record<string, unknown> & { client_id: string; client_secret?: string }> {
      const input = clientInputSchema.parse(raw);
      const metadata = toClientMetadata(input);
      const secret = input.public ? undefined : (input.secret ?? randomToken(32));
      if (validate) await validate(secret ? { ...metadata, client_secret: secret } : metadata);
      try {
        await db('oidc_clients').insert({
          client_id: input.clientId,
          metadata: JSON.stringify(metadata),
          secret_enc: secret ? encrypt(atRestKey, secret, aad(input.clientId)) : null,
          first_party: input.firstParty,
          require_verified_email: input.requireVerifiedEmail,
        });
      } catch (err) {
        if ((err as { code?: string }).code === '23505') throw new ClientExistsError(`client ${input.clientId} already exists`);
        throw err;
      } finally {
        cache.invalidate(input.clientId);
      }
      return { ...metadata, client_id: input.clientId, ...(secret ? { client_secret: secret } : {}) };
    },

    /** Full metadata including the plain secret, for the provider only. */
    async findForProvider(clientId: string): Promise<Record<string, unknown> | undefined> {
      // A client id arrives from request bodies the provider parses itself: PostgreSQL refuses
      // NUL in text, and no registered id has one.
      if (typeof clientId !== 'string' || clientId.includes('\0')) return undefined;
      // A copy: the cached object is shared by every request.
      const metadata = await cache.get(clientId, () => loadForProvider(clientId));
      return metadata && { ...metadata };
    },

    /** Sets (or with null removes) the client's events_uri; false when there is no such client. */
    async setEventsUri(clientId: string, eventsUri: string | null, validate?: (metadata: Record<string, unknown>) => Promise<void>): Promise<boolean> {
      const parsed = eventsUri === null ? null : z.url({ protocol: /^https?$/ }).parse(eventsUri);
      const row = await db<ClientRow>('oidc_clients').where({ client_id: clientId }).first('metadata');
      if (!row) return false;
      const { events_uri: _old, ...rest } = row.metadata;
      const metadata = parsed ? { ...rest, events_uri: parsed } : rest;
      if (validate) await validate(metadata);
      await db('oidc_clients').where({ client_id: clientId }).update({ metadata: JSON.stringify(metadata), updated_at: db.fn.now() });
      cache.invalidate(clientId);
      return true;
    },

    /** Allows or stops the client's use of the Account API; false when there is no such client. */
    async setAccountApi(clientId: string, allowed: boolean, validate?: (metadata: Record<string, unknown>) => Promise<void>): Promise<boolean> {
      const row = await db<ClientRow>('oidc_clients').where({ client_id: clientId }).first('metadata');
      if (!row) return false;
      const metadata = { ...row.metadata, account_api: allowed };
      if (validate) await validate(metadata);
      await db('oidc_clients').where({ client_id: clientId }).update({ metadata: JSON.stringify(metadata), updated_at: db.fn.now() });
      cache.invalidate(clientId);
      return true;
    },

    async list() {
      const rows = await db<ClientRow>('oidc_clients').select('client_id', 'metadata', 'created_at').orderBy('created_at');
      return rows.map((r) => ({ ...r.metadata, client_id: r.client_id, created_at: r.created_at }) as unknown as Record<string, unknown> & { client_id: string; redirect_uris: string[] });
    },

    async delete(clientId: string): Promise<boolean> {
      return db.transaction(async (trx) => {
        // returning(): PGlite's driver reports no row count for DELETE.
        const removed = (await trx('oidc_clients').where({ client_id: clientId }).delete(['client_id'])).length;
        if (removed) {
          // Tokens and grants issued to the client die with it.
          await trx('oidc_payloads').where({ client_id: clientId }).delete();
        }
        return removed > 0;
      }).finally(() => cache.invalidate(clientId));
    },
  };
}

export type ClientStore = ReturnType<typeof createClientStore>;
