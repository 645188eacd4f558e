// `latchkey saml …`: SAML connections (enterprise IdPs) — add, list, show, update, remove, and a
// dry run of a captured response.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import type { Latchkey } from '../app.ts';
import type { Level } from '../assurance/index.ts';
import type { Config } from '../config.ts';
import { ATTRIBUTE_KEYS, ConnectionError, STEP_UP_MODES, createConnectionStore, spUrls, type StepUpMode, type AcrMap, type AttributeKey, type AttributeMap, type ConnectionInput, type SamlConnection } from '../federation/saml/connections.ts';
import { levelFor, mapProfile, parseRoleMap, rolesFor } from '../federation/saml/mapping.ts';
import { MetadataError } from '../federation/saml/metadata.ts';
import { CERT_WARNING_DAYS } from '../federation/saml/maintenance.ts';
import { decodeResponse, validateResponseXml } from '../federation/saml/validate.ts';
import { SamlRejection } from '../federation/saml/xml.ts';
import { findUserByEmail } from '../identity/users.ts';
import { createOutbound } from '../security/outbound.ts';
import { issueScimToken } from '../scim/tokens.ts';

export const SAML_USAGE = `  saml add --name NAME (--metadata FILE | --metadata-url URL) --domains a.com[,b.com]
           [--default-role ROLE] [--map FILE] [--attribute KEY=AttributeName ...]
           [--acr CLASSREF=pwd|mfa|phr ...] [--allow-idp-initiated] [--sso-only]
           [--encrypted-assertions] [--step-up local|idp]
  saml list                              connections, their domains and IdP certificate expiry
  saml show NAME
  saml update NAME [the options of add; --no-sso-only, --no-allow-idp-initiated,
                   --no-encrypted-assertions; metadata is fetched again from --metadata-url]
  saml remove NAME
  saml test NAME --response FILE         validate and map a captured response; changes nothing
  saml scim-token NAME                   a new SCIM bearer token (shown once; replaces the previous one)`;

const LEVELS = new Set<Level>(['pwd', 'mfa', 'phr']);

export interface SamlCliContext {
  latchkey: Latchkey;
  config: Config;
  json: boolean;
  out(text: string): void;
  err(text: string): void;
  usage(message: string): never;
}

function describe(config: Config, c: SamlConnection) {
  const urls = spUrls(config.issuer, c.name);
  const daysLeft = Math.floor((c.idp.certNotAfter.getTime() - Date.now()) / 86_400_000);
  return {
    name: c.name,
    entity_id: urls.entityId,
    acs_url: urls.acsUrl,
    metadata_url: urls.metadataUrl,
    domains: c.domains,
    idp_entity_id: c.idp.entityId,
    idp_sso_url: c.idp.ssoRedirectUrl,
    idp_certificate_expires_at: c.idp.certNotAfter.toISOString(),
    idp_certificate_expires_soon: daysLeft <= CERT_WARNING_DAYS,
    idp_metadata_url: c.metadataUrl,
    attribute_map: c.attributeMap,
    acr_map: c.acrMap,
    role_map: c.roleMap,
    default_role: c.defaultRole,
    allow_idp_initiated: c.allowIdpInitiated,
    sso_only: c.ssoOnly,
    encrypted_assertions: c.encryptedAssertions,
    step_up: c.stepUp,
  };
}

export async function samlCommand(action: string | undefined, args: string[], cli: SamlCliContext): Promise<number> {
  const { latchkey, config } = cli;
  const store = createConnectionStore(latchkey.db, latchkey.atRestKey);
  const print = (value: unknown, human: () => string) => cli.out(cli.json ? JSON.stringify(value, null, 2) + '\n' : human() + '\n');
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    allowNegative: true,
    options: {
      name: { type: 'string' },
      metadata: { type: 'string' },
      'metadata-url': { type: 'string' },
      domains: { type: 'string' },
      'default-role': { type: 'string' },
      map: { type: 'string' },
      attribute: { type: 'string', multiple: true },
      acr: { type: 'string', multiple: true },
      'allow-idp-initiated': { type: 'boolean' },
      'sso-only': { type: 'boolean' },
      'encrypted-assertions': { type: 'boolean' },
      'step-up': { type: 'string' },
      response: { type: 'string' },
      json: { type: 'boolean' },
    },
  });

  function readFile(path: string, what: string): string {
    try {
      return fs.readFileSync(path, 'utf8');
    } catch {
      throw new ConnectionError(`cannot read the ${what} file ${path}`);
    }
  }

  async function fetchMetadata(url: string): Promise<string> {
    const outbound = createOutbound(config.outboundAllowOrigins);
    let res;
    try {
      res = await outbound(url, { timeoutMs: 10_000, maxBytes: 2 * 1024 * 1024 });
    } catch (err) {
      throw new ConnectionError(`cannot fetch metadata from ${url}: ${(err as Error).message}`);
    }
    if (res.status !== 200) throw new ConnectionError(`cannot fetch metadata from ${url}: HTTP ${res.status}`);
    return res.body;
  }

  function attributeMap(list: string[] | undefined): AttributeMap | undefined {
    if (!list) return undefined;
    const map: AttributeMap = {};
    for (const item of list) {
      const [key, ...rest] = item.split('=');
      const value = rest.join('=');
      if (!ATTRIBUTE_KEYS.includes(key as AttributeKey) || !value) cli.usage(`--attribute takes KEY=AttributeName with KEY one of ${ATTRIBUTE_KEYS.join(', ')}`);
      map[key as AttributeKey] = value;
    }
    return map;
  }

  function acrMap(list: string[] | undefined): AcrMap | undefined {
    if (!list) return undefined;
    const map: AcrMap = {};
    for (const item of list) {
      const at = item.lastIndexOf('=');
      const ref = item.slice(0, at);
      const level = item.slice(at + 1) as Level;
      if (at <= 0 || !LEVELS.has(level)) cli.usage('--acr takes CLASSREF=pwd|mfa|phr');
      map[ref] = level;
    }
    return map;
  }

  async function inputFrom(required: boolean): Promise<Partial<ConnectionInput>> {
    const input: Partial<ConnectionInput> = {};
    if (values.metadata && values['metadata-url']) cli.usage('give --metadata or --metadata-url, not both');
    if (values.metadata) input.metadata = readFile(values.metadata, 'metadata');
    if (values['metadata-url']) {
      input.metadataUrl = values['metadata-url'];
      input.metadata = await fetchMetadata(values['metadata-url']);
    }
    if (required && !input.metadata) cli.usage('saml add needs --metadata FILE or --metadata-url URL');
    if (values.domains !== undefined) input.domains = values.domains.split(',').map((d) => d.trim()).filter(Boolean);
    if (required && !input.domains?.length) cli.usage('saml add needs --domains');
    if (values['default-role'] !== undefined) input.defaultRole = values['default-role'] || null;
    if (values.map !== undefined) {
      try {
        input.roleMap = parseRoleMap(readFile(values.map, 'map'));
      } catch (err) {
        if (err instanceof ConnectionError) throw err;
        throw new ConnectionError(`the map file ${values.map} is not a valid role map: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    const attrs = attributeMap(values.attribute);
    if (attrs) input.attributeMap = attrs;
    const acr = acrMap(values.acr);
    if (acr) input.acrMap = acr;
    if (values['allow-idp-initiated'] !== undefined) input.allowIdpInitiated = values['allow-idp-initiated'];
    if (values['sso-only'] !== undefined) input.ssoOnly = values['sso-only'];
    if (values['encrypted-assertions'] !== undefined) input.encryptedAssertions = values['encrypted-assertions'];
    if (values['step-up'] !== undefined) {
      if (!STEP_UP_MODES.includes(values['step-up'] as StepUpMode)) cli.usage('--step-up takes local or idp');
      input.stepUp = values['step-up'] as StepUpMode;
    }
    return input;
  }

  const nameArg = () => {
    const name = positionals[0] ?? values.name;
    if (!name) cli.usage(`saml ${action} needs a connection name`);
    return name;
  };

  try {
    switch (action) {
      case 'add': {
        if (!values.name) cli.usage('saml add needs --name');
        const input = (await inputFrom(true)) as ConnectionInput;
        const created = await store.create(values.name, input);
        await latchkey.audit(undefined, { type: 'saml.connection_added', data: { connection: created.name, domains: created.domains } });
        const d = describe(config, created);
        print({ name: d.name, entity_id: d.entity_id, acs_url: d.acs_url, metadata_url: d.metadata_url, domains: d.domains }, () =>
          [`connection ${d.name} added`, `SP entity ID: ${d.entity_id}`, `ACS URL:      ${d.acs_url}`, `SP metadata:  ${d.metadata_url}`, `domains:      ${d.domains.join(', ')}`].join('\n'),
        );
        return 0;
      }
      case 'list': {
        const list = (await store.list()).map((c) => describe(config, c));
        print(list, () =>
          list.map((c) => `${c.name.padEnd(20)} ${c.domains.join(',').padEnd(30)} IdP certificate expires ${c.idp_certificate_expires_at.slice(0, 10)}${c.idp_certificate_expires_soon ? ' (SOON)' : ''}${c.sso_only ? '  sso-only' : ''}`).join('\n') || '(no connections)',
        );
        return 0;
      }
      case 'show': {
        const found = await store.get(nameArg());
        if (!found) {
          cli.err(`latchkey: no connection ${nameArg()}\n`);
          return 1;
        }
        const d = describe(config, found);
        print(d, () => JSON.stringify(d, null, 2));
        return 0;
      }
      case 'update': {
        const name = nameArg();
        const input = await inputFrom(false);
        // Without new metadata, a connection that has a metadata URL is refreshed from it.
        if (!input.metadata) {
          const current = await store.get(name);
          if (current?.metadataUrl) input.metadata = await fetchMetadata(current.metadataUrl);
        }
        const updated = await store.update(name, input);
        await latchkey.audit(undefined, { type: 'saml.connection_updated', data: { connection: name, fields: Object.keys(input) } });
        const d = describe(config, updated);
        print(d, () => `connection ${name} updated`);
        return 0;
      }
      case 'remove': {
        const name = nameArg();
        const removed = await store.remove(name);
        if (removed) await latchkey.audit(undefined, { type: 'saml.connection_removed', data: { connection: name } });
        print({ name, removed }, () => (removed ? `removed ${name}` : `no connection ${name}`));
        return removed ? 0 : 1;
      }
      case 'test': {
        const name = nameArg();
        if (!values.response) cli.usage('saml test needs --response FILE');
        const connection = await store.get(name);
        if (!connection) {
          cli.err(`latchkey: no connection ${name}\n`);
          return 1;
        }
        const raw = readFile(values.response, 'response').trim();
        const urls = spUrls(config.issuer, name);
        try {
          // The file may hold the base64 form field or the XML itself.
          const xml = raw.startsWith('<') ? raw : decodeResponse(raw);
          const validated = validateResponseXml(xml, {
            connection,
            spEntityId: urls.entityId,
            acsUrl: urls.acsUrl,
            skewSeconds: config.saml.clockSkewSeconds,
            decryptionKeyPem: await store.spEncryptionKey(name),
          });
          const profile = mapProfile(validated.facts, connection.attributeMap);
          const roles = rolesFor(profile.groups, connection.roleMap, connection.defaultRole);
          const linked = await latchkey.db('saml_identities').where({ connection_name: name, name_id: validated.facts.nameId }).first('user_id');
          const byEmail = !linked && profile.email ? await findUserByEmail(latchkey.db, profile.email) : undefined;
          const result = {
            valid: true,
            name_id: validated.facts.nameId,
            email: profile.email,
            name: profile.name,
            groups: profile.groups,
            roles,
            level: levelFor(validated.facts.authnContextClassRef, connection.acrMap),
            in_response_to: validated.inResponseTo,
            user: linked ? { id: linked.user_id, action: 'update' } : byEmail ? { id: byEmail.id, action: 'link: offered to this existing account, made only after its owner signs in locally and confirms' } : { id: null, action: 'create' },
          };
          print(result, () => JSON.stringify(result, null, 2));
          return 0;
        } catch (err) {
          if (!(err instanceof SamlRejection)) throw err;
          print({ valid: false, reason: err.reason, detail: err.message }, () => `rejected: ${err.message}`);
          return 1;
        }
      }
      case 'scim-token': {
        const name = nameArg();
        if (!(await store.get(name))) {
          cli.err(`latchkey: no connection ${name}\n`);
          return 1;
        }
        // Only its hash is stored: this is the one time anyone sees it.
        const token = await issueScimToken(latchkey.db, name);
        await latchkey.audit(undefined, { type: 'scim.token_issued', data: { connection: name } });
        const baseUrl = `${config.issuer}/scim/v2/${name}`;
        print({ connection: name, scim_base_url: baseUrl, token }, () => [`SCIM base URL: ${baseUrl}`, `Bearer token:  ${token}`, '(shown once; a new token replaces this one)'].join('\n'));
        return 0;
      }
      default:
        return cli.usage(`unknown saml command ${action ?? ''}`);
    }
  } catch (err) {
    if (err instanceof ConnectionError || err instanceof MetadataError) {
      cli.err(`latchkey: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
