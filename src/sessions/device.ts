// A person-readable name for the device behind a user agent ("Chrome on macOS"), from bowser's
// maintained browser and OS tables. Only for display and for "have we seen this device before".
import Bowser from 'bowser';

const MAX_UA = 512;

export function deviceName(userAgent: string | undefined | null): string {
  const ua = (userAgent ?? '').slice(0, MAX_UA);
  if (!ua) return 'Unknown device';
  const { browser, os } = Bowser.parse(ua);
  const name = browser.name?.trim();
  const system = os.name?.trim();
  if (name && system) return `${name} on ${system}`;
  if (name) return name;
  if (system) return `A browser on ${system}`;
  return 'Unknown device';
}
