// Mail rendering: every mail has a text and an HTML body, both from views/mail/ (overridable by
// THEME_DIR like the pages). Text bodies are rendered without HTML escaping; HTML ones with it.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import nunjucks from 'nunjucks';

const VIEWS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../views');

export const MAIL_TEMPLATES = {
  'verify-email': () => 'Confirm your email address',
  'reset-password': () => 'Reset your password',
  'password-changed': () => 'Your password was changed',
  'magic-link': (vars: Record<string, unknown>) => (vars.signup ? 'Finish creating your account' : 'Your sign-in link'),
  'email-change-confirm': () => 'Confirm your new email address',
  'email-change-notice': () => 'Your email address is being changed',
  'recovery-code-used': () => 'A recovery code was used to sign in',
  'refresh-token-reuse': () => 'An application was signed out after a token was reused',
  'factor-changed': (vars: Record<string, unknown>) =>
    vars.change === 'removed'
      ? 'A sign-in method was removed from your account'
      : vars.change === 'recovery-codes'
        ? 'New recovery codes were created for your account'
        : 'A sign-in method was added to your account',
  'signup-existing': () => 'Someone tried to create an account with your email address',
  'email-in-use': () => 'Someone tried to use your email address',
  'deletion-scheduled': () => 'Your account will be deleted',
  'deletion-reminder': () => 'Your account will be deleted in 3 days',
  'deletion-completed': () => 'Your account was deleted',
  'new-device': (vars: Record<string, unknown>) => `New sign-in from ${String(vars.device ?? 'a new device')}`,
} as const satisfies Record<string, (vars: Record<string, unknown>) => string>;

export type MailTemplate = keyof typeof MAIL_TEMPLATES;

export interface RenderedMail {
  subject: string;
  text: string;
  html: string;
}

/** "30 minutes", "24 hours", "7 days": how long a link lives, for the mail's wording. */
export function humanDuration(seconds: number): string {
  const units: [number, string][] = [
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
    [1, 'second'],
  ];
  for (const [size, unit] of units) {
    if (seconds >= size && seconds % size === 0) {
      const n = seconds / size;
      return `${n} ${unit}${n === 1 ? '' : 's'}`;
    }
  }
  return `${Math.max(1, Math.round(seconds / 60))} minutes`;
}

export function createMailTemplates(options: { productName: string; issuer: string; themeDir?: string }) {
  const dirs = options.themeDir ? [options.themeDir, VIEWS_DIR] : [VIEWS_DIR];
  const loader = () => new nunjucks.FileSystemLoader(dirs, { noCache: false });
  const html = new nunjucks.Environment(loader(), { autoescape: true });
  const text = new nunjucks.Environment(loader(), { autoescape: false });

  return function render(template: MailTemplate, vars: Record<string, unknown>): RenderedMail {
    const subject = `${MAIL_TEMPLATES[template](vars)} · ${options.productName}`;
    const all = { productName: options.productName, issuer: options.issuer, subject, ...vars };
    return {
      subject,
      text: text.render(`mail/${template}.txt.njk`, all).trim() + '\n',
      html: html.render(`mail/${template}.html.njk`, all),
    };
  };
}

export type MailTemplates = ReturnType<typeof createMailTemplates>;
