// New passwords (NIST SP 800-63B 5.1.1.2): common and breached ones and the account's own words
// are refused with a reason; long unusual phrases pass.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { passwordProblem } from '../src/methods/password/policy.ts';

describe('password policy', () => {
  test('common passwords are refused, also with digits or symbols stuck on', () => {
    for (const p of ['password', 'Password', '123456789', 'qwertyuiop', 'iloveyou', 'Password1!', 'dragon2024', 'football!!']) {
      assert.match(passwordProblem(p) ?? '', /list of commonly used passwords/, p);
    }
  });

  test('the email, its local part, the name and the product name are refused', () => {
    const context = { email: 'Margaret.Hamilton@example.com', name: 'Margaret Hamilton', productName: 'Latchkey' };
    assert.match(passwordProblem('hamilton-rocks-1969', context) ?? '', /your email address|your name/);
    assert.match(passwordProblem('my margaret.hamilton@example.com', context) ?? '', /your email address/);
    assert.match(passwordProblem('open latchkey please', context) ?? '', /the name of this service/);
  });

  test('an unusual phrase passes', () => {
    assert.equal(passwordProblem('correct horse battery staple', { email: 'al@example.com', name: 'Al', productName: 'Latchkey' }), undefined);
    assert.equal(passwordProblem('a long enough password'), undefined);
  });
});
