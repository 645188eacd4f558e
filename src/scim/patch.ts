// PATCH (RFC 7644 §3.5.2) on a resource's writable state: each operation (add, replace, remove;
// with or without a path; paths like `name.givenName`, `emails[type eq "work"].value`,
// `members[value eq "…"]`) changes a plain copy, and the result is validated exactly as a PUT
// body would be and then stored as one replacement. Attributes we do not keep (extension
// schemas, phone numbers…) are ignored, as they are in a POST or PUT; read-only ones are refused.
import { badRequest, ScimError } from './errors.ts';
import { parseFilter, type Comparison } from './filter.ts';
import type { PatchBody } from './schemas.ts';

type Op = PatchBody['Operations'][number];

interface Path {
  attr: string;
  filter?: Comparison[];
  sub?: string;
}

const CORE = /^urn:ietf:params:scim:schemas:core:2\.0:(user|group):/i;
const PATH = /^([A-Za-z$][\w$-]*)(?:\[(.*)\])?(?:\.([A-Za-z$][\w$-]*))?$/;
const READ_ONLY = new Set(['id', 'meta', 'groups', 'schemas']);

/** The path's parts (lower-cased), or undefined for an attribute of a schema we do not keep. */
function parsePath(raw: string): Path | undefined {
  let path = raw.trim();
  if (/^urn:/i.test(path)) {
    if (!CORE.test(path)) return undefined;
    path = path.replace(CORE, '');
  }
  const m = PATH.exec(path);
  if (!m) throw badRequest('invalidPath', `The path ${raw.slice(0, 100)} is not valid.`);
  const filter = m[2] !== undefined ? parseFilter(m[2]) : undefined;
  return { attr: m[1]!.toLowerCase(), filter, sub: m[3]?.toLowerCase() };
}

function readOnly(attr: string): never {
  throw new ScimError(400, `${attr} cannot be changed.`, 'mutability');
}

function matches(entry: Record<string, unknown>, filter: Comparison[]): boolean {
  return filter.every((c) => {
    const key = Object.keys(entry).find((k) => k.toLowerCase() === c.path);
    const v = key ? entry[key] : undefined;
    return typeof v === 'string' && typeof c.value === 'string' ? v.toLowerCase() === c.value.toLowerCase() : v === c.value;
  });
}

/** Keys of `obj` looked up case-insensitively (SCIM attribute names are case-insensitive). */
function setKey(obj: Record<string, unknown>, key: string, value: unknown) {
  const existing = Object.keys(obj).find((k) => k.toLowerCase() === key.toLowerCase());
  if (value === undefined) {
    if (existing) delete obj[existing];
  } else obj[existing ?? key] = value;
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw badRequest('invalidValue', `${what} needs an object value.`);
  return value as Record<string, unknown>;
}

function asList(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [value];
}

/** A user's writable state: { userName, externalId, name: {…}, displayName, emails: [...], active }. */
export type UserState = Record<string, unknown> & { emails: Record<string, unknown>[] };

const USER_SIMPLE: Record<string, string> = { username: 'userName', externalid: 'externalId', displayname: 'displayName', active: 'active' };
const NAME_SUBS: Record<string, string> = { givenname: 'givenName', familyname: 'familyName', formatted: 'formatted' };
const EMAIL_SUBS: Record<string, string> = { value: 'value', type: 'type', primary: 'primary' };

function applyUserOp(state: UserState, op: Op['op'], path: Path, value: unknown) {
  const { attr, filter, sub } = path;
  if (READ_ONLY.has(attr)) readOnly(attr);
  if (USER_SIMPLE[attr]) {
    if (filter || sub) throw badRequest('invalidPath', `${attr} has no sub-attributes.`);
    state[USER_SIMPLE[attr]] = op === 'remove' ? null : value;
    return;
  }
  if (attr === 'name') {
    if (filter) throw badRequest('invalidPath', 'name is not multi-valued.');
    const name = { ...((state.name as Record<string, unknown> | null) ?? {}) };
    if (sub) {
      if (!NAME_SUBS[sub]) return; // e.g. name.middleName: not kept
      name[NAME_SUBS[sub]] = op === 'remove' ? null : value;
      state.name = name;
    } else if (op === 'remove') state.name = null;
    else {
      const given = asObject(value, 'name');
      // replace of the whole complex attribute sets exactly what is given; add merges.
      const next: Record<string, unknown> = op === 'replace' ? {} : name;
      for (const [k, v] of Object.entries(given)) if (NAME_SUBS[k.toLowerCase()]) next[NAME_SUBS[k.toLowerCase()]!] = v;
      state.name = next;
    }
    return;
  }
  if (attr === 'emails') {
    if (sub && !EMAIL_SUBS[sub]) return;
    const subKey = sub ? EMAIL_SUBS[sub]! : undefined;
    if (!filter && !subKey) {
      const given = op === 'remove' ? [] : asList(value).map((v) => ({ ...asObject(v, 'emails') }));
      state.emails = op === 'add' ? [...state.emails, ...given] : given;
      if (op !== 'remove' && given.some((e) => e.primary === true)) for (const e of state.emails) if (!given.includes(e)) e.primary = false;
      return;
    }
    // With a filter, the entries it selects; without, the primary one (else the first).
    const selected = filter ? state.emails.filter((e) => matches(e, filter)) : state.emails.filter((e) => e.primary === true).slice(0, 1);
    const targets = selected.length || filter ? selected : state.emails.slice(0, 1);
    if (op === 'remove') {
      if (subKey) targets.forEach((e) => setKey(e, subKey, undefined));
      else state.emails = state.emails.filter((e) => !targets.includes(e));
      return;
    }
    if (targets.length === 0) {
      // `add emails[type eq "work"].value` on a user without a work address creates one.
      const created: Record<string, unknown> = {};
      for (const c of filter ?? []) if (typeof c.value === 'string' || typeof c.value === 'boolean') created[c.path] = c.value;
      if (subKey) created[subKey] = value;
      else Object.assign(created, asObject(value, 'emails'));
      state.emails.push(created);
      return;
    }
    for (const e of targets) {
      if (subKey) setKey(e, subKey, value);
      else for (const [k, v] of Object.entries(asObject(value, 'emails'))) setKey(e, k, v);
    }
    return;
  }
  // Attributes we do not keep (phoneNumbers, title, …) are ignored, as in a POST.
}

export function applyUserPatch(state: UserState, body: PatchBody): UserState {
  for (const operation of body.Operations) applyOperation(operation, (path, value) => applyUserOp(state, operation.op, path, value));
  return state;
}

/** A group's writable state. */
export interface GroupState {
  displayName: unknown;
  externalId: unknown;
  members: string[];
}

function memberIds(value: unknown): string[] {
  return asList(value).map((m) => {
    const v = asObject(m, 'members').value;
    if (typeof v !== 'string' || !v || v.length > 64) throw badRequest('invalidValue', 'Each member needs a value (the user’s id).');
    return v;
  });
}

function applyGroupOp(state: GroupState, op: Op['op'], path: Path, value: unknown) {
  const { attr, filter, sub } = path;
  if (READ_ONLY.has(attr)) readOnly(attr);
  if (attr === 'displayname' || attr === 'externalid') {
    if (filter || sub) throw badRequest('invalidPath', `${attr} has no sub-attributes.`);
    state[attr === 'displayname' ? 'displayName' : 'externalId'] = op === 'remove' ? null : value;
    return;
  }
  if (attr === 'members') {
    if (sub && sub !== 'value') throw badRequest('invalidPath', 'Only members and members[value eq "…"] can be changed.');
    if (filter) {
      if (op !== 'remove') throw badRequest('invalidPath', 'Add members with path "members" and a list of {"value": id}.');
      state.members = state.members.filter((id) => !matches({ value: id }, filter));
      return;
    }
    if (op === 'remove') {
      // Entra ID names the members to remove in the value; no value removes them all.
      const gone = value === undefined || value === null ? undefined : new Set(memberIds(value));
      state.members = gone ? state.members.filter((id) => !gone.has(id)) : [];
      return;
    }
    const ids = value === null ? [] : memberIds(value);
    state.members = op === 'add' ? [...new Set([...state.members, ...ids])] : [...new Set(ids)];
    return;
  }
  // Other attributes are ignored.
}

export function applyGroupPatch(state: GroupState, body: PatchBody, groupId: string): GroupState {
  for (const operation of body.Operations) {
    applyOperation(operation, (path, value) => {
      // Okta sends the group's own id along with a path-less replace.
      if (path.attr === 'id' && !path.filter && !path.sub && value === groupId) return;
      applyGroupOp(state, operation.op, path, value);
    });
  }
  return state;
}

/** Runs one operation: with a path, on it; without, on each attribute of the value object. */
function applyOperation(operation: Op, apply: (path: Path, value: unknown) => void) {
  if (operation.path !== undefined && operation.path.trim() !== '') {
    const path = parsePath(operation.path);
    if (!path) return;
    if (operation.op !== 'remove' && operation.value === undefined) throw badRequest('invalidValue', `${operation.op} ${operation.path} needs a value.`);
    apply(path, operation.value);
    return;
  }
  if (operation.op === 'remove') throw badRequest('noTarget', 'remove needs a path.');
  for (const [key, value] of Object.entries(asObject(operation.value, `${operation.op} without a path`))) {
    if (key === 'schemas') continue;
    const path = parsePath(key);
    if (path) apply(path, value);
  }
}
