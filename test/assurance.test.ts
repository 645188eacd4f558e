// The assurance function and the sign-in plan, as pure functions: levels are timed from the
// proofs they need, and enrolment is offered only after every existing factor was proven.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assess, type AssurancePolicy, type Proof } from '../src/assurance/index.ts';
import { nextStep, type StepPolicy } from '../src/flows/sign-in/plan.ts';
import type { Enrolled, FactorRegistry } from '../src/methods/registry.ts';

const NOW = 1_000_000;
const policy: AssurancePolicy = { names: { pwd: 'pwd', mfa: 'mfa', phr: 'phr' }, elevationTtl: { mfa: 900, phr: 900 } };
const steps: StepPolicy = { assurance: policy, enroll: 'inline', recentAuthSeconds: 300 };

const password = (ago: number): Proof => ({ method: 'password', amr: ['pwd'], factor: 'knowledge', phishingResistant: false, at: NOW - ago });
const totp = (ago: number): Proof => ({ method: 'totp', amr: ['otp'], factor: 'possession', phishingResistant: false, at: NOW - ago });
const passkey = (ago: number): Proof => ({ method: 'passkey', amr: ['hwk', 'mfa'], factor: 'possession', phishingResistant: true, at: NOW - ago });

// The registry's decisions without a database: what a user has enrolled is given directly.
const factors = {
  enrolled: async () => ({ totp: false, passkeys: 0, recoveryCodes: 0 }),
  capabilities(e: Enrolled) {
    const levels = new Set(['pwd'] as const as readonly ('pwd' | 'mfa' | 'phr')[]);
    if (e.totp || e.passkeys > 0) levels.add('mfa');
    if (e.passkeys > 0) levels.add('phr');
    return levels;
  },
  hasSecondFactor: (e: Enrolled) => e.totp || e.passkeys > 0,
} as unknown as FactorRegistry;

const none: Enrolled = { totp: false, passkeys: 0, recoveryCodes: 0 };
const withTotp: Enrolled = { totp: true, passkeys: 0, recoveryCodes: 10 };

describe('assess', () => {
  test('mfa from two factor kinds, while both are within the TTL', () => {
    assert.equal(assess([password(10), totp(5)], policy, NOW).level, 'mfa');
    assert.equal(assess([password(1000), totp(5)], policy, NOW).level, 'pwd', 'an old password does not combine with a new code');
  });

  test('renewing one factor does not renew an expired elevation', () => {
    // Both proven long ago (mfa expired), then the password alone again: still one factor's worth.
    assert.equal(assess([totp(2000), password(1)], policy, NOW).level, 'pwd');
  });

  test('a user-verifying passkey is phr on its own, and mfa after phr expires only while fresh enough', () => {
    assert.equal(assess([passkey(10)], policy, NOW).level, 'phr');
    assert.equal(assess([passkey(1000)], policy, NOW).level, 'pwd');
    assert.deepEqual(assess([password(10), totp(5)], policy, NOW).amr.sort(), ['mfa', 'otp', 'pwd']);
  });

  test('auth_time is the newest proof', () => {
    assert.equal(assess([password(100), totp(5)], policy, NOW).authTime, NOW - 5);
  });
});

describe('nextStep', () => {
  test('a password alone never reaches enrolment for a user who has a second factor', () => {
    const step = nextStep(steps, factors, withTotp, ['phr'], [password(1)], NOW);
    assert.equal(step.kind, 'factor');
    assert.equal(step.kind === 'factor' && step.need, 'mfa');
    assert.equal(nextStep(steps, factors, withTotp, ['phr'], [password(1), totp(1)], NOW).kind, 'enroll');
  });

  test('enrolment from old session proofs asks for the first factor again', () => {
    assert.equal(nextStep(steps, factors, none, ['mfa'], [password(400)], NOW).kind, 'first-factor');
    assert.equal(nextStep(steps, factors, none, ['mfa'], [password(10)], NOW).kind, 'enroll');
    assert.equal(nextStep(steps, factors, withTotp, ['phr'], [password(400), totp(400)], NOW).kind, 'first-factor');
  });

  test('STEP_UP_ENROLL=deny answers unmet instead', () => {
    assert.equal(nextStep({ ...steps, enroll: 'deny' }, factors, none, ['mfa'], [password(1)], NOW).kind, 'unmet');
  });

  test('step-up asks only for what is missing', () => {
    assert.equal(nextStep(steps, factors, withTotp, ['mfa'], [password(100)], NOW).kind, 'factor');
    assert.equal(nextStep(steps, factors, withTotp, ['mfa'], [password(1000)], NOW).kind, 'first-factor');
    assert.equal(nextStep(steps, factors, withTotp, [], [password(1), totp(1)], NOW).kind, 'done');
  });
});
