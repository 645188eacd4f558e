// An independent RFC 4226/6238 implementation for tests (node:crypto only), so codes the
// server accepts are not produced by the library under test. Checked against RFC 6238 vectors.
import crypto from 'node:crypto';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

export function base32Decode(input: string): Buffer {
  const clean = input.replace(/=+$/, '').toUpperCase();
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const ch of clean) {
    const idx = BASE32.indexOf(ch);
    if (idx < 0) throw new Error(`invalid base32 character ${ch}`);
    value = (value << 5) | idx;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

export function hotp(key: Buffer, counter: number, digits = 6, algorithm = 'sha1'): string {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = crypto.createHmac(algorithm, key).update(msg).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return String(binary).padStart(digits, '0');
}

export const stepAt = (epochSeconds: number, period = 30) => Math.floor(epochSeconds / period);

/**
 * Hands out codes for a secret the way a careful user would, never reusing a time step: the
 * server accepts the current step ±1 and each step once, so a test that signs in several times
 * quickly takes the next unused step and waits for the clock when it has used them all.
 */
export class Authenticator {
  private key: Buffer;
  private lastStep = -1;

  constructor(secretBase32: string) {
    this.key = base32Decode(secretBase32);
  }

  async nextCode(): Promise<string> {
    for (;;) {
      const t = Date.now() / 1000;
      const now = stepAt(t);
      // The previous step is safe only while the next boundary is not about to move the window.
      const earliest = (now + 1) * 30 - t > 5 ? now - 1 : now;
      const candidate = Math.max(earliest, this.lastStep + 1);
      if (candidate <= now + 1) {
        this.lastStep = candidate;
        return hotp(this.key, candidate);
      }
      await new Promise((r) => setTimeout(r, ((now + 1) * 30 - t) * 1000 + 50));
    }
  }

  /** A code for a step that was already used (replay). */
  replayCode(): string {
    return hotp(this.key, this.lastStep);
  }
}
