// Request bodies (validated with zod before anything is read from them) and the discovery
// documents: /ServiceProviderConfig, /Schemas and /ResourceTypes (RFC 7643 §5-7).
import { z } from 'zod';
import { badRequest } from './errors.ts';

export const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';
export const GROUP_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Group';
export const PATCH_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
export const LIST_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
const SPC_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig';
const RESOURCE_TYPE_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:ResourceType';
const SCHEMA_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Schema';

export const MAX_PAGE = 200;
export const MAX_MEMBERS = 10_000;

/** Some clients (Entra ID) send booleans as "True"/"False". */
export const booleanish = z.preprocess((v) => (typeof v === 'string' && /^(true|false)$/i.test(v) ? v.toLowerCase() === 'true' : v), z.boolean());

const text = (max: number) => z.string().trim().max(max);
const schemasWith = (urn: string) =>
  z.array(z.string().max(200)).max(20).refine((s) => s.includes(urn), `must include ${urn}`);

export const emailSchema = z.looseObject({
  value: text(320).min(3),
  type: text(64).nullish(),
  primary: booleanish.nullish(),
});

/** A User as the client sends it (POST, PUT, and the state a PATCH produces). Unknown attributes are ignored. */
export const userBody = z.looseObject({
  schemas: schemasWith(USER_SCHEMA),
  userName: text(256).min(1),
  externalId: text(256).nullish(),
  name: z
    .looseObject({ givenName: text(200).nullish(), familyName: text(200).nullish(), formatted: text(200).nullish() })
    .nullish(),
  displayName: text(200).nullish(),
  emails: z.array(emailSchema).max(50).nullish(),
  active: booleanish.optional(),
});
export type UserBody = z.output<typeof userBody>;

export const memberSchema = z.looseObject({ value: text(64).min(1), display: z.string().max(500).nullish() });

export const groupBody = z.looseObject({
  schemas: schemasWith(GROUP_SCHEMA),
  displayName: text(256).min(1),
  externalId: text(256).nullish(),
  members: z.array(memberSchema).max(MAX_MEMBERS).nullish(),
});
export type GroupBody = z.output<typeof groupBody>;

export const patchBody = z.looseObject({
  schemas: schemasWith(PATCH_SCHEMA),
  Operations: z
    .array(
      z.looseObject({
        op: z.string().transform((s) => s.toLowerCase()).pipe(z.enum(['add', 'replace', 'remove'])),
        path: z.string().max(500).optional(),
        value: z.unknown().optional(),
      }),
    )
    .min(1)
    .max(1_000),
});
export type PatchBody = z.output<typeof patchBody>;

/** The body parsed by `schema`, or a SCIM 400 naming the first wrong attribute. */
export function parseScim<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('invalidSyntax', 'The request body must be a JSON object.');
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const where = issue.path.length ? issue.path.join('.') : 'body';
  const scimType = where === 'schemas' || where.startsWith('schemas.') || where.startsWith('Operations') ? 'invalidSyntax' : 'invalidValue';
  throw badRequest(scimType, `${where}: ${issue.message}`);
}

// --- discovery ----------------------------------------------------------------------------

interface Attr {
  name: string;
  type: 'string' | 'boolean' | 'complex' | 'reference' | 'dateTime';
  multiValued?: boolean;
  required?: boolean;
  caseExact?: boolean;
  mutability?: 'readOnly' | 'readWrite' | 'immutable' | 'writeOnly';
  uniqueness?: 'none' | 'server' | 'global';
  description: string;
  subAttributes?: Attr[];
  referenceTypes?: string[];
}

function attribute(a: Attr): Record<string, unknown> {
  return {
    name: a.name,
    type: a.type,
    multiValued: a.multiValued ?? false,
    description: a.description,
    required: a.required ?? false,
    caseExact: a.caseExact ?? false,
    mutability: a.mutability ?? 'readWrite',
    returned: 'default',
    uniqueness: a.uniqueness ?? 'none',
    ...(a.referenceTypes ? { referenceTypes: a.referenceTypes } : {}),
    ...(a.subAttributes ? { subAttributes: a.subAttributes.map(attribute) } : {}),
  };
}

const USER_ATTRIBUTES: Attr[] = [
  { name: 'userName', type: 'string', required: true, uniqueness: 'server', description: 'The NameID the IdP sends in its SAML assertions for this user: SCIM and single sign-on find the same account by it.' },
  { name: 'externalId', type: 'string', caseExact: true, description: 'The client’s own identifier for the user. Stored and filterable; not used to link sign-ins.' },
  {
    name: 'name',
    type: 'complex',
    description: 'The user’s name.',
    subAttributes: [
      { name: 'formatted', type: 'string', description: 'The full name.' },
      { name: 'givenName', type: 'string', description: 'Given name.' },
      { name: 'familyName', type: 'string', description: 'Family name.' },
    ],
  },
  { name: 'displayName', type: 'string', description: 'The name shown to applications (the `name` claim).' },
  {
    name: 'emails',
    type: 'complex',
    multiValued: true,
    required: true,
    description: 'Email addresses; the primary one (else the first) is the account’s address. Others are not kept.',
    subAttributes: [
      { name: 'value', type: 'string', description: 'The address.' },
      { name: 'type', type: 'string', description: 'work, home or other.' },
      { name: 'primary', type: 'boolean', description: 'The address to use.' },
    ],
  },
  { name: 'active', type: 'boolean', description: 'false deactivates the account: every session, grant and token is revoked, and sign-in is refused.' },
  {
    name: 'groups',
    type: 'complex',
    multiValued: true,
    mutability: 'readOnly',
    description: 'The connection’s groups the user is a member of (change them through /Groups).',
    subAttributes: [
      { name: 'value', type: 'string', mutability: 'readOnly', description: 'The group’s id.' },
      { name: 'display', type: 'string', mutability: 'readOnly', description: 'The group’s displayName.' },
      { name: '$ref', type: 'reference', mutability: 'readOnly', referenceTypes: ['Group'], description: 'The group’s URI.' },
    ],
  },
];

const GROUP_ATTRIBUTES: Attr[] = [
  { name: 'displayName', type: 'string', required: true, uniqueness: 'server', description: 'The group name the connection’s role map is written against (as for SAML groups).' },
  { name: 'externalId', type: 'string', caseExact: true, description: 'The client’s own identifier for the group.' },
  {
    name: 'members',
    type: 'complex',
    multiValued: true,
    description: 'Users of this connection in the group.',
    subAttributes: [
      { name: 'value', type: 'string', mutability: 'immutable', description: 'The user’s id.' },
      { name: 'display', type: 'string', mutability: 'readOnly', description: 'The user’s userName.' },
      { name: '$ref', type: 'reference', mutability: 'immutable', referenceTypes: ['User'], description: 'The user’s URI.' },
    ],
  },
];

export function schemaDocuments(base: string) {
  const doc = (id: string, name: string, description: string, attrs: Attr[]) => ({
    schemas: [SCHEMA_SCHEMA],
    id,
    name,
    description,
    attributes: attrs.map(attribute),
    meta: { resourceType: 'Schema', location: `${base}/Schemas/${id}` },
  });
  return [doc(USER_SCHEMA, 'User', 'User account', USER_ATTRIBUTES), doc(GROUP_SCHEMA, 'Group', 'Group', GROUP_ATTRIBUTES)];
}

export function resourceTypes(base: string) {
  const type = (id: string, endpoint: string, schema: string, description: string) => ({
    schemas: [RESOURCE_TYPE_SCHEMA],
    id,
    name: id,
    endpoint,
    description,
    schema,
    schemaExtensions: [],
    meta: { resourceType: 'ResourceType', location: `${base}/ResourceTypes/${id}` },
  });
  return [type('User', '/Users', USER_SCHEMA, 'User account'), type('Group', '/Groups', GROUP_SCHEMA, 'Group')];
}

export function serviceProviderConfig(base: string) {
  return {
    schemas: [SPC_SCHEMA],
    patch: { supported: true },
    bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
    filter: { supported: true, maxResults: MAX_PAGE },
    changePassword: { supported: false },
    sort: { supported: false },
    etag: { supported: false },
    authenticationSchemes: [
      {
        type: 'oauthbearertoken',
        name: 'Bearer token',
        description: 'The connection’s SCIM token, from `latchkey saml scim-token NAME`, as Authorization: Bearer.',
        primary: true,
      },
    ],
    meta: { resourceType: 'ServiceProviderConfig', location: `${base}/ServiceProviderConfig` },
  };
}

export function listResponse(resources: unknown[], totalResults: number, startIndex: number) {
  return { schemas: [LIST_SCHEMA], totalResults, itemsPerPage: resources.length, startIndex, Resources: resources };
}
