// Which new passwords are refused (NIST SP 800-63B 5.1.1.2): length 8–128 (configurable minimum),
// no composition rules, and nothing an attacker tries first: a password from a list of common
// and breached passwords (zxcvbn-ts's list, shipped in the package: checked offline, never sent
// anywhere), or one built from the account's email, name or the product's name.
import { dictionary } from '@zxcvbn-ts/language-common';

const COMMON = new Set((dictionary['passwords-common'] as string[]).map((p) => p.toLowerCase()));

export interface PasswordContext {
  email?: string | null;
  name?: string | null;
  productName?: string;
}

/** Words of at least four letters from the context that a password must not contain. */
function contextWords(context: PasswordContext): { word: string; what: string }[] {
  const words: { word: string; what: string }[] = [];
  const add = (value: string | null | undefined, what: string) => {
    for (const part of (value ?? '').toLowerCase().split(/[^\p{L}\p{N}]+/u)) if (part.length >= 4) words.push({ word: part, what });
  };
  const email = context.email?.toLowerCase();
  if (email) {
    words.push({ word: email, what: 'your email address' });
    add(email.split('@')[0], 'your email address');
  }
  add(context.name, 'your name');
  add(context.productName, `the name of this service`);
  return words;
}

/** Why `password` is refused, in words a person understands; undefined when it is acceptable. */
export function passwordProblem(password: string, context: PasswordContext = {}): string | undefined {
  const lower = password.toLowerCase();
  // "Password1!" is "password" to a guesser: the list is checked without trailing digits and symbols too.
  const stem = lower.replace(/[^\p{L}]+$/u, '');
  if (COMMON.has(lower) || (stem.length >= 4 && COMMON.has(stem))) return 'This password is in a list of commonly used passwords. Choose another.';
  const found = contextWords(context).find(({ word }) => lower.includes(word));
  if (found) return `This password contains ${found.what}. Choose one that does not.`;
  return undefined;
}
