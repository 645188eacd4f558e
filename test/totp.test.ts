import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hotp, stepAt } from './helpers/totp.ts';

test('the test TOTP implementation matches RFC 6238 appendix B (SHA-1)', () => {
  const key = Buffer.from('12345678901234567890');
  const vectors: [number, string][] = [
    [59, '94287082'],
    [1111111109, '07081804'],
    [1111111111, '14050471'],
    [1234567890, '89005924'],
    [2000000000, '69279037'],
    [20000000000, '65353130'],
  ];
  for (const [time, code] of vectors) assert.equal(hotp(key, stepAt(time), 8), code, `T=${time}`);
});

test('and RFC 4226 appendix D (HOTP)', () => {
  const key = Buffer.from('12345678901234567890');
  const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];
  expected.forEach((code, counter) => assert.equal(hotp(key, counter), code));
});
