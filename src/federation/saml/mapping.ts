// From a validated assertion to our terms: the profile (email, names), the IdP's groups, the
// roles the declarative map grants for them, and the assurance level of its authentication context.
import { z } from 'zod';
import type { Level } from '../../assurance/index.ts';
import type { AcrMap, AttributeKey, AttributeMap } from './connections.ts';
import { NAMEID_EMAIL } from './metadata.ts';

const role = z.string().trim().min(1).max(100);

/** `{ groups: { "Engineering": ["developer"] }, default: ["member"], drop_unmapped: true }` */
export const roleMapSchema = z
  .object({
    groups: z.record(z.string().min(1).max(256), z.array(role)).default({}),
    default: z.array(role).default([]),
    // Unmapped groups are not roles unless the map says to pass them through.
    drop_unmapped: z.boolean().default(true),
  })
  .strict();

export type RoleMap = z.infer<typeof roleMapSchema>;

/** A role map file's text: JSON, or the YAML subset such a map needs (see parseSimpleYaml). */
export function parseRoleMap(text: string): RoleMap {
  const trimmed = text.trim();
  const data = trimmed.startsWith('{') ? JSON.parse(trimmed) : parseSimpleYaml(trimmed);
  return roleMapSchema.parse(data);
}

function yamlScalar(raw: string): unknown {
  const v = raw.trim();
  if (v === 'true' || v === 'false') return v === 'true';
  if (v.startsWith('[') && v.endsWith(']')) {
    const inner = v.slice(1, -1).trim();
    return inner ? inner.split(',').map((s) => yamlScalar(s)) : [];
  }
  if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) return v.slice(1, -1);
  return v;
}

function yamlKey(raw: string): string {
  const k = raw.trim();
  return (k.startsWith('"') && k.endsWith('"')) || (k.startsWith("'") && k.endsWith("'")) ? k.slice(1, -1) : k;
}

/**
 * The YAML a role map is written in: two levels of `key:` mappings, values that are scalars,
 * flow lists (`[a, b]`) or block lists (`- a`), and `#` comments. Anything else is refused.
 */
export function parseSimpleYaml(text: string): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  let topKey: string | undefined; // the top-level key whose block we are in
  let innerList: unknown[] | undefined; // the nested key's block list we are in
  for (const [i, rawLine] of text.split(/\r?\n/).entries()) {
    const line = rawLine.replace(/(^|\s)#.*$/, '');
    if (!line.trim()) continue;
    const indent = line.length - line.trimStart().length;
    const body = line.trim();
    const where = `role map line ${i + 1}`;
    if (indent === 0) {
      innerList = undefined;
      const m = /^("[^"]*"|'[^']*'|[^:\s][^:]*):(?:\s+(.*))?$/.exec(body);
      if (!m) throw new Error(`${where}: expected "key:" or "key: value"`);
      topKey = yamlKey(m[1]!);
      root[topKey] = m[2]?.trim() ? yamlScalar(m[2]) : undefined;
      if (m[2]?.trim()) topKey = undefined;
      continue;
    }
    if (!topKey) throw new Error(`${where}: unexpected indentation`);
    if (body.startsWith('- ')) {
      const target = innerList ?? (root[topKey] === undefined ? (root[topKey] = []) : root[topKey]);
      if (!Array.isArray(target)) throw new Error(`${where}: a list item inside a mapping`);
      target.push(yamlScalar(body.slice(2)));
      continue;
    }
    const m = /^("[^"]*"|'[^']*'|[^:\s][^:]*):(?:\s+(.*))?$/.exec(body);
    if (!m) throw new Error(`${where}: expected "key: value"`);
    const section = root[topKey] === undefined ? (root[topKey] = {}) : root[topKey];
    if (typeof section !== 'object' || section === null || Array.isArray(section)) throw new Error(`${where}: a mapping inside a list`);
    const key = yamlKey(m[1]!);
    if (m[2]?.trim()) {
      (section as Record<string, unknown>)[key] = yamlScalar(m[2]);
      innerList = undefined;
    } else {
      innerList = [];
      (section as Record<string, unknown>)[key] = innerList;
    }
  }
  return root;
}

export interface AssertionFacts {
  nameId: string;
  nameIdFormat: string | null;
  attributes: Record<string, string[]>;
  authnContextClassRef: string | null;
}

export interface MappedProfile {
  email: string | null;
  name: string | null;
  groups: string[];
}

const DEFAULT_ATTRIBUTES: Record<AttributeKey, string[]> = {
  email: ['email', 'mail', 'urn:oid:0.9.2342.19200300.100.1.3'],
  name: ['name', 'displayName', 'urn:oid:2.16.840.1.113730.3.1.241'],
  given_name: ['given_name', 'givenName', 'urn:oid:2.5.4.42'],
  family_name: ['family_name', 'sn', 'surname', 'urn:oid:2.5.4.4'],
  groups: ['groups'],
};

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

function first(facts: AssertionFacts, map: AttributeMap, key: AttributeKey): string | undefined {
  const names = map[key] ? [map[key]!] : DEFAULT_ATTRIBUTES[key];
  for (const n of names) {
    const v = facts.attributes[n]?.find((x) => x.trim());
    if (v) return v.trim();
  }
  return undefined;
}

export function mapProfile(facts: AssertionFacts, map: AttributeMap): MappedProfile {
  // The NameID is the email when it is one (and the format does not say otherwise), unless mapped.
  const nameIdIsEmail = EMAIL.test(facts.nameId) && (!facts.nameIdFormat || facts.nameIdFormat === NAMEID_EMAIL || facts.nameIdFormat.endsWith(':unspecified'));
  const email = (map.email ? first(facts, map, 'email') : nameIdIsEmail ? facts.nameId : first(facts, map, 'email')) ?? null;
  const given = first(facts, map, 'given_name');
  const family = first(facts, map, 'family_name');
  const name = first(facts, map, 'name') ?? ([given, family].filter(Boolean).join(' ') || null);
  const groupsAttr = map.groups ?? 'groups';
  const groups = [...new Set((facts.attributes[groupsAttr] ?? []).map((g) => g.trim()).filter(Boolean))].sort();
  return { email: email && EMAIL.test(email) ? email : null, name: name ? name.slice(0, 200) : null, groups };
}

/** The roles the map grants for `groups` (sorted, unique). */
export function rolesFor(groups: string[], roleMap: RoleMap | null, defaultRole: string | null): string[] {
  const roles = new Set<string>(roleMap?.default ?? []);
  if (defaultRole) roles.add(defaultRole);
  for (const g of groups) {
    const granted = roleMap?.groups[g];
    if (granted) granted.forEach((r) => roles.add(r));
    else if (roleMap && !roleMap.drop_unmapped) roles.add(g);
  }
  return [...roles].sort();
}

/** The IdP's authentication context as our level: mapped by the connection, else one factor. */
export function levelFor(classRef: string | null, acrMap: AcrMap): Level {
  return (classRef && acrMap[classRef]) || 'pwd';
}
