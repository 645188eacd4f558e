// Login history: every sign-in attempt on an account, success or failure, as the audit trail
// recorded it (each factor of a sign-in is one attempt: a right password followed by a wrong code
// shows as both). The device name is derived from the stored user agent when read.
import type { Db } from '../db/knex.ts';
import { deviceName } from './device.ts';

const OUTCOMES: Record<string, string> = {
  'login.success': 'success',
  'login.failure': 'failure',
  'login.throttled': 'blocked',
  'login.unmet_requirements': 'failure',
};

export interface LoginAttempt {
  at: string;
  ip: string | null;
  device: string;
  method: string | null;
  outcome: string;
  /** Where it happened when not the sign-in page: 'reauth' (account page confirmation). */
  via: string | null;
}

export async function loginHistory(db: Db, userId: string, limit = 20): Promise<LoginAttempt[]> {
  const rows = (await db('audit_events')
    .where({ user_id: userId })
    .whereIn('type', Object.keys(OUTCOMES))
    .orderBy('at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit)
    .select('at', 'type', 'ip', 'user_agent', 'data')) as { at: Date; type: string; ip: string | null; user_agent: string | null; data: Record<string, unknown> }[];
  return rows.map((r) => ({
    at: new Date(r.at).toISOString(),
    ip: r.ip,
    device: deviceName(r.user_agent),
    method: typeof r.data?.method === 'string' ? r.data.method : null,
    outcome: OUTCOMES[r.type] ?? 'failure',
    via: typeof r.data?.via === 'string' ? r.data.via : null,
  }));
}
