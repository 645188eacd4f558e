// The part of SCIM's filter language (RFC 7644 §3.4.2.2) that provisioning clients use to find
// a resource before creating it: `attr eq "value"`, joined by `and`, with `attr` a simple or
// sub-attribute path (`userName`, `emails.value`, `name.givenName`) or a value filter on a
// multi-valued attribute (`members[value eq "…"]`, `emails[value eq "…"]`). Anything else is
// refused with scimType invalidFilter rather than guessed at.
import { badRequest } from './errors.ts';

export interface Comparison {
  /** Lower-cased attribute path without the core schema URN, e.g. `username`, `emails.value`. */
  path: string;
  value: string | boolean | number | null;
}

const CORE_PREFIX = /^urn:ietf:params:scim:schemas:core:2\.0:(user|group):/i;
const MAX_FILTER = 1_000;

function invalid(detail: string): never {
  throw badRequest('invalidFilter', `The filter is not supported: ${detail}. Use attribute eq "value", optionally joined by and.`);
}

/** Splits a filter into tokens: quoted strings stay whole (JSON escapes allowed). */
function tokenize(filter: string): string[] {
  const tokens: string[] = [];
  let i = 0;
  while (i < filter.length) {
    const c = filter[i]!;
    if (c === ' ' || c === '\t') {
      i++;
    } else if (c === '"') {
      let j = i + 1;
      while (j < filter.length && filter[j] !== '"') j += filter[j] === '\\' ? 2 : 1;
      if (j >= filter.length) invalid('an unterminated string');
      tokens.push(filter.slice(i, j + 1));
      i = j + 1;
    } else if (c === '[' || c === ']' || c === '(' || c === ')') {
      tokens.push(c);
      i++;
    } else {
      let j = i;
      while (j < filter.length && !' \t"[]()'.includes(filter[j]!)) j++;
      tokens.push(filter.slice(i, j));
      i = j;
    }
  }
  return tokens;
}

function literal(token: string | undefined): Comparison['value'] {
  if (token === undefined) invalid('a comparison without a value');
  if (token.startsWith('"')) {
    try {
      return JSON.parse(token) as string;
    } catch {
      invalid('a malformed string');
    }
  }
  if (token === 'true' || token === 'false') return token === 'true';
  if (token === 'null') return null;
  if (/^-?\d+(\.\d+)?$/.test(token)) return Number(token);
  return invalid(`the value ${token.slice(0, 40)}`);
}

function attrPath(token: string | undefined): string {
  if (!token || !/^[A-Za-z][\w:.$-]*$/.test(token)) invalid(`the attribute ${String(token).slice(0, 40)}`);
  return token.replace(CORE_PREFIX, '').toLowerCase();
}

/** Parses `filter` into comparisons that must all hold. Empty or absent: no condition. */
export function parseFilter(filter: unknown): Comparison[] {
  if (filter === undefined || filter === '') return [];
  if (typeof filter !== 'string') invalid('more than one filter parameter');
  if (filter.length > MAX_FILTER) invalid('a filter that long');
  const tokens = tokenize(filter);
  const out: Comparison[] = [];
  let i = 0;
  const expectOp = () => {
    const op = tokens[i++]?.toLowerCase();
    if (op !== 'eq') invalid(`the operator ${String(op).slice(0, 20)}`);
  };
  for (;;) {
    const path = attrPath(tokens[i++]);
    if (tokens[i] === '[') {
      // members[value eq "x"] is members.value eq "x"
      i++;
      const sub = attrPath(tokens[i++]);
      expectOp();
      const value = literal(tokens[i++]);
      if (tokens[i++] !== ']') invalid('an unclosed [');
      out.push({ path: `${path}.${sub}`, value });
    } else {
      expectOp();
      out.push({ path, value: literal(tokens[i++]) });
    }
    if (i >= tokens.length) break;
    if (tokens[i++]?.toLowerCase() !== 'and') invalid(`"${tokens[i - 1]?.slice(0, 20)}" (only and joins comparisons)`);
  }
  return out;
}
