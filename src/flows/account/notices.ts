// What the account page may say after an action: a fixed set of messages chosen by code. The
// page never echoes text from the URL, so nobody can make a trusted page say what they like.
export const ACCOUNT_NOTICES = {
  'totp-already-on': 'Your authenticator app is already set up.',
  'totp-on': 'Authenticator app turned on.',
  'totp-still-on': 'That code is not valid: the authenticator app is still on.',
  'totp-off': 'Authenticator app turned off.',
  'recovery-needs-factor': 'Recovery codes come with a second step: set one up first.',
  'passkey-added': 'Passkey added.',
  'passkey-renamed': 'Passkey renamed.',
  'passkey-name-invalid': 'Give the passkey a name of at most 100 characters.',
  'passkey-not-found': 'That passkey was not found.',
  'passkey-last': 'This is your only way to sign in: add another before removing it.',
  'passkey-removed': 'Passkey removed.',
  'email-change-sent': 'We sent a confirmation link to the new address. Your address changes when you open it.',
  'verification-sent': 'We sent a new verification link. Check your inbox (and your spam folder).',
  'verification-limited': 'We have sent several links already. Wait a while before asking for another one.',
  'already-verified': 'Your email address is already verified.',
  'profile-updated': 'Profile saved.',
  'access-removed': 'Access removed. The application has to ask you again before it can use your account.',
} as const;

export type AccountNotice = keyof typeof ACCOUNT_NOTICES;

export function accountNoticeUrl(code: AccountNotice): string {
  return `/account?notice=${code}`;
}

/** The message for a notice code from the query string; anything else shows nothing. */
export function accountNoticeText(code: unknown): string | undefined {
  return typeof code === 'string' && Object.hasOwn(ACCOUNT_NOTICES, code) ? ACCOUNT_NOTICES[code as AccountNotice] : undefined;
}
