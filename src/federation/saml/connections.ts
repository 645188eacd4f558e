// SAML connections: one enterprise IdP each, with the domains it owns, how its attributes and
// authentication contexts map to ours, and our own SP signing key for it (sealed at rest).
import type { Knex } from 'knex';
import { z } from 'zod';
import type { Level } from '../../assurance/index.ts';
import type { Db } from '../../db/knex.ts';
import { decrypt, encrypt } from '../../security/crypto.ts';
import { generateSpKey, parseIdpMetadata, type IdpInfo } from './metadata.ts';
import { roleMapSchema, type RoleMap } from './mapping.ts';

export const CONNECTION_NAME = /^[a-z0-9-]{1,40}$/;
export const ATTRIBUTE_KEYS = ['email', 'name', 'given_name', 'family_name', 'groups'] as const;
export type AttributeKey = (typeof ATTRIBUTE_KEYS)[number];
export type AttributeMap = Partial<Record<AttributeKey, string>>;
/** IdP AuthnContextClassRef → our level. */
export type AcrMap = Record<string, Level>;
/** How a sign-in is stepped up above the level the IdP gave: the user's local factors, or the IdP again. */
export type StepUpMode = 'local' | 'idp';
export const STEP_UP_MODES: readonly StepUpMode[] = ['local', 'idp'];

const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

export const domainSchema = z
  .string()
  .trim()
  .toLowerCase()
  .regex(DOMAIN, 'must be a domain name such as acme.com');

export interface SamlConnection {
  name: string;
  idp: IdpInfo;
  idpMetadata: string;
  metadataUrl: string | null;
  metadataFetchedAt: Date | null;
  spCertificate: string;
  attributeMap: AttributeMap;
  acrMap: AcrMap;
  roleMap: RoleMap | null;
  defaultRole: string | null;
  allowIdpInitiated: boolean;
  ssoOnly: boolean;
  /** EncryptedAssertion required, to our encryption certificate (published in the SP metadata). */
  encryptedAssertions: boolean;
  spEncryptionCertificate: string | null;
  stepUp: StepUpMode;
  domains: string[];
  createdAt: Date;
  updatedAt: Date;
}

interface Row {
  name: string;
  idp_entity_id: string;
  idp_metadata: string;
  metadata_url: string | null;
  metadata_fetched_at: Date | null;
  sp_private_key_enc: string;
  sp_certificate: string;
  attribute_map: AttributeMap;
  acr_map: AcrMap;
  role_map: RoleMap | null;
  default_role: string | null;
  allow_idp_initiated: boolean;
  sso_only: boolean;
  encrypted_assertions: boolean;
  sp_enc_key_enc: string | null;
  sp_enc_certificate: string | null;
  step_up: StepUpMode;
  created_at: Date;
  updated_at: Date;
}

export class ConnectionError extends Error {}

/** The public URLs of a connection on this issuer. */
export function spUrls(issuer: string, name: string) {
  const entityId = `${issuer}/saml/${name}`;
  return { entityId, acsUrl: `${entityId}/acs`, metadataUrl: `${entityId}/metadata` };
}

function toConnection(row: Row, domains: string[]): SamlConnection {
  return {
    name: row.name,
    idp: parseIdpMetadata(row.idp_metadata),
    idpMetadata: row.idp_metadata,
    metadataUrl: row.metadata_url,
    metadataFetchedAt: row.metadata_fetched_at,
    spCertificate: row.sp_certificate,
    attributeMap: row.attribute_map ?? {},
    acrMap: row.acr_map ?? {},
    roleMap: row.role_map ? roleMapSchema.parse(row.role_map) : null,
    defaultRole: row.default_role,
    allowIdpInitiated: row.allow_idp_initiated,
    ssoOnly: row.sso_only,
    encryptedAssertions: row.encrypted_assertions,
    spEncryptionCertificate: row.sp_enc_certificate,
    stepUp: row.step_up === 'idp' ? 'idp' : 'local',
    domains,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const keyAad = (name: string) => `saml-sp-key:${name}`;
const encKeyAad = (name: string) => `saml-sp-enc-key:${name}`;

export interface ConnectionInput {
  metadata: string;
  metadataUrl?: string | null;
  domains: string[];
  attributeMap?: AttributeMap;
  acrMap?: AcrMap;
  roleMap?: RoleMap | null;
  defaultRole?: string | null;
  allowIdpInitiated?: boolean;
  ssoOnly?: boolean;
  encryptedAssertions?: boolean;
  stepUp?: StepUpMode;
}

async function claimDomains(trx: Knex.Transaction, name: string, domains: string[]) {
  const normalized = [...new Set(domains.map((d) => domainSchema.parse(d)))];
  if (normalized.length === 0) throw new ConnectionError('a connection needs at least one domain');
  const taken = await trx('saml_domains').whereIn('domain', normalized).whereNot('connection_name', name).select('domain', 'connection_name');
  if (taken.length) throw new ConnectionError(`domain ${taken[0].domain} already belongs to connection ${taken[0].connection_name}`);
  await trx('saml_domains').where({ connection_name: name }).delete();
  await trx('saml_domains').insert(normalized.map((domain) => ({ domain, connection_name: name })));
}

export function createConnectionStore(db: Db, atRestKey: Buffer) {
  async function domainsOf(names: string[]): Promise<Map<string, string[]>> {
    const rows = names.length ? await db('saml_domains').whereIn('connection_name', names).orderBy('domain') : [];
    const map = new Map<string, string[]>();
    for (const r of rows) map.set(r.connection_name, [...(map.get(r.connection_name) ?? []), r.domain]);
    return map;
  }

  async function get(name: string): Promise<SamlConnection | undefined> {
    if (!CONNECTION_NAME.test(name)) return undefined;
    const row = await db<Row>('saml_connections').where({ name }).first();
    if (!row) return undefined;
    return toConnection(row, (await domainsOf([name])).get(name) ?? []);
  }

  return {
    get,

    async list(): Promise<SamlConnection[]> {
      const rows = await db<Row>('saml_connections').orderBy('name');
      const domains = await domainsOf(rows.map((r) => r.name));
      return rows.map((r) => toConnection(r, domains.get(r.name) ?? []));
    },

    /** The connection that owns the domain of `emailOrDomain`, if any. */
    async forDomain(emailOrDomain: string): Promise<SamlConnection | undefined> {
      const domain = emailOrDomain.trim().toLowerCase().split('@').pop() ?? '';
      if (!DOMAIN.test(domain)) return undefined;
      const row = await db('saml_domains').where({ domain }).first('connection_name');
      return row ? get(row.connection_name) : undefined;
    },

    async create(name: string, input: ConnectionInput): Promise<SamlConnection> {
      if (!CONNECTION_NAME.test(name)) throw new ConnectionError('a connection name is 1-40 characters of a-z, 0-9 and -');
      const idp = parseIdpMetadata(input.metadata);
      const sp = await generateSpKey(name);
      const enc = input.encryptedAssertions ? await generateSpKey(`${name} encryption`) : undefined;
      await db.transaction(async (trx) => {
        if (await trx('saml_connections').where({ name }).first('name')) throw new ConnectionError(`connection ${name} already exists`);
        await trx('saml_connections').insert({
          name,
          idp_entity_id: idp.entityId,
          idp_metadata: input.metadata,
          metadata_url: input.metadataUrl ?? null,
          metadata_fetched_at: input.metadataUrl ? trx.fn.now() : null,
          sp_private_key_enc: encrypt(atRestKey, sp.privateKeyPem, keyAad(name)),
          sp_certificate: sp.certificatePem,
          attribute_map: JSON.stringify(input.attributeMap ?? {}),
          acr_map: JSON.stringify(input.acrMap ?? {}),
          role_map: input.roleMap ? JSON.stringify(input.roleMap) : null,
          default_role: input.defaultRole ?? null,
          allow_idp_initiated: input.allowIdpInitiated ?? false,
          sso_only: input.ssoOnly ?? false,
          encrypted_assertions: input.encryptedAssertions ?? false,
          sp_enc_key_enc: enc ? encrypt(atRestKey, enc.privateKeyPem, encKeyAad(name)) : null,
          sp_enc_certificate: enc?.certificatePem ?? null,
          step_up: input.stepUp ?? 'local',
        });
        await claimDomains(trx, name, input.domains);
      });
      return (await get(name))!;
    },

    /** Changes only the fields given. */
    async update(name: string, input: Partial<ConnectionInput>): Promise<SamlConnection> {
      const current = await get(name);
      if (!current) throw new ConnectionError(`no connection ${name}`);
      const changes: Record<string, unknown> = { updated_at: db.fn.now() };
      if (input.metadata !== undefined) {
        const idp = parseIdpMetadata(input.metadata);
        changes.idp_metadata = input.metadata;
        changes.idp_entity_id = idp.entityId;
        if (input.metadataUrl) changes.metadata_fetched_at = changes.metadata_checked_at = db.fn.now();
      }
      if (input.metadataUrl !== undefined) changes.metadata_url = input.metadataUrl;
      if (input.attributeMap !== undefined) changes.attribute_map = JSON.stringify(input.attributeMap);
      if (input.acrMap !== undefined) changes.acr_map = JSON.stringify(input.acrMap);
      if (input.roleMap !== undefined) changes.role_map = input.roleMap ? JSON.stringify(input.roleMap) : null;
      if (input.defaultRole !== undefined) changes.default_role = input.defaultRole;
      if (input.allowIdpInitiated !== undefined) changes.allow_idp_initiated = input.allowIdpInitiated;
      if (input.ssoOnly !== undefined) changes.sso_only = input.ssoOnly;
      if (input.stepUp !== undefined) changes.step_up = input.stepUp;
      if (input.encryptedAssertions !== undefined) {
        changes.encrypted_assertions = input.encryptedAssertions;
        // The encryption key is made once and kept when encryption is turned off and on again,
        // so an IdP that still has our certificate keeps working.
        if (input.encryptedAssertions && !current.spEncryptionCertificate) {
          const enc = await generateSpKey(`${name} encryption`);
          changes.sp_enc_key_enc = encrypt(atRestKey, enc.privateKeyPem, encKeyAad(name));
          changes.sp_enc_certificate = enc.certificatePem;
        }
      }
      await db.transaction(async (trx) => {
        await trx('saml_connections').where({ name }).update(changes);
        if (input.domains !== undefined) await claimDomains(trx, name, input.domains);
      });
      return (await get(name))!;
    },

    async remove(name: string): Promise<boolean> {
      if (!CONNECTION_NAME.test(name)) return false;
      return (await db('saml_connections').where({ name }).delete(['name'])).length > 0;
    },

    /** The SP signing key, unsealed, for signing AuthnRequests. */
    async spPrivateKey(name: string): Promise<string> {
      const row = await db<Row>('saml_connections').where({ name }).first('sp_private_key_enc');
      if (!row) throw new ConnectionError(`no connection ${name}`);
      return decrypt(atRestKey, row.sp_private_key_enc, keyAad(name));
    },

    /** The SP encryption key, unsealed, for decrypting EncryptedAssertions (null when there is none). */
    async spEncryptionKey(name: string): Promise<string | null> {
      const row = await db<Row>('saml_connections').where({ name }).first('sp_enc_key_enc');
      if (!row) throw new ConnectionError(`no connection ${name}`);
      return row.sp_enc_key_enc ? decrypt(atRestKey, row.sp_enc_key_enc, encKeyAad(name)) : null;
    },
  };
}

export type ConnectionStore = ReturnType<typeof createConnectionStore>;
