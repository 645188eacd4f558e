// Device sessions: one row per browser sign-in, keyed by oidc-provider's session uid (stable across
// id rotation). A row is listed only while its provider session lives, so logout, timeouts,
// revocation and a password reset need no bookkeeping here; the sweep removes the leftovers.
import crypto from 'node:crypto';
import type { Db } from '../db/knex.ts';
import { deviceName } from './device.ts';

export interface DeviceSession {
  id: string;
  session_uid: string;
  user_id: string;
  device: string;
  ip: string | null;
  methods: string[];
  acr: string | null;
  remember: boolean;
  created_at: Date;
  last_active_at: Date;
  last_auth_at: Date;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const COLUMNS = ['id', 'session_uid', 'user_id', 'device', 'ip', 'methods', 'acr', 'remember', 'created_at', 'last_active_at', 'last_auth_at'];
/** Last activity is written at most this often per session. */
export const TOUCH_EVERY_SECONDS = 60;

export interface SignInRecord {
  sessionUid: string;
  userId: string;
  userAgent?: string | null;
  ip?: string | null;
  methods: string[];
  acr?: string | null;
  remember: boolean;
}

export interface RecordedSignIn {
  id: string;
  device: string;
  /** A new session (not a step-up of an existing one). */
  created: boolean;
  /** Created from a device name or an address this user never signed in from (and not their first sign-in). */
  newDevice: boolean;
}

/** Live provider sessions only: expired and deleted ones are not devices any more. */
function whereLive(db: Db) {
  return db('oidc_payloads as p')
    .select(db.raw('1'))
    .where('p.model', 'Session')
    .whereRaw('p.uid = device_sessions.session_uid')
    .where((q) => q.whereNull('p.expires_at').orWhere('p.expires_at', '>', db.fn.now()));
}

/** Records a completed sign-in (or a step-up of the same session) and remembers the device and address. */
export async function recordSignIn(db: Db, input: SignInRecord): Promise<RecordedSignIn> {
  const device = deviceName(input.userAgent);
  const ip = input.ip ?? null;
  const result = await db.raw(
    `INSERT INTO device_sessions (id, session_uid, user_id, device, user_agent, ip, methods, acr, remember)
     VALUES (?, ?, ?, ?, ?, ?, ?::jsonb, ?, ?)
     ON CONFLICT (session_uid) DO UPDATE SET methods = excluded.methods, acr = excluded.acr, remember = excluded.remember,
       last_auth_at = now(), last_active_at = now()
       WHERE device_sessions.user_id = excluded.user_id
     RETURNING id, (xmax = 0) AS inserted`,
    [crypto.randomUUID(), input.sessionUid, input.userId, device, input.userAgent?.slice(0, 512) ?? null, ip, JSON.stringify(input.methods), input.acr ?? null, input.remember],
  );
  const row = (result as { rows: { id: string; inserted: boolean }[] }).rows[0];
  if (!row) return { id: '', device, created: false, newDevice: false };
  if (!row.inserted) return { id: row.id, device, created: false, newDevice: false };

  // One statement: note the device (and address) as seen, learning which of them are new to this
  // account and whether the account had seen anything before. The CTE reads the table as it was
  // before the upsert; of two sign-ins racing from one new device, only one inserts.
  const values = ip ? '(?, ?, ?), (?, ?, ?)' : '(?, ?, ?)';
  const { rows: noted } = (await db.raw(
    `WITH before AS (SELECT EXISTS (SELECT 1 FROM known_devices WHERE user_id = ?) AS known),
          noted AS (INSERT INTO known_devices (user_id, kind, value) VALUES ${values}
                    ON CONFLICT (user_id, kind, value) DO UPDATE SET last_seen_at = now()
                    RETURNING (xmax = 0) AS inserted)
     SELECT (SELECT known FROM before) AS known, inserted FROM noted`,
    [input.userId, input.userId, 'device', device, ...(ip ? [input.userId, 'ip', ip] : [])],
  )) as { rows: { known: boolean; inserted: boolean }[] };
  // The first sign-in of an account sets what is known; it is nobody's "new" device.
  const newDevice = Boolean(noted[0]?.known) && noted.some((n) => n.inserted);
  return { id: row.id, device, created: true, newDevice };
}

/** Notes activity on a session, writing at most once a minute. True when it wrote. */
export async function touchDeviceSession(db: Db, sessionUid: string): Promise<boolean> {
  const rows = await db('device_sessions')
    .where({ session_uid: sessionUid })
    .where('last_active_at', '<', db.raw('now() - make_interval(secs => ?)', [TOUCH_EVERY_SECONDS]))
    .update({ last_active_at: db.fn.now() }, ['id']);
  return rows.length > 0;
}

/** The user's signed-in devices, most recently active first. */
export async function listDeviceSessions(db: Db, userId: string): Promise<DeviceSession[]> {
  return db('device_sessions').where({ user_id: userId }).whereExists(whereLive(db)).orderBy('last_active_at', 'desc').select(COLUMNS);
}

/** One of the user's live device sessions by its public id. */
export async function findDeviceSession(db: Db, userId: string, id: string): Promise<DeviceSession | undefined> {
  if (!UUID_RE.test(id)) return undefined;
  return db('device_sessions').where({ id, user_id: userId }).whereExists(whereLive(db)).first(COLUMNS);
}

/** The JSON shape of the account page and the CLI. */
export function deviceSessionJson(row: DeviceSession, currentUid?: string) {
  return {
    id: row.id,
    device: row.device,
    ip: row.ip,
    created_at: new Date(row.created_at).toISOString(),
    last_active_at: new Date(row.last_active_at).toISOString(),
    current: row.session_uid === currentUid,
    methods: row.methods,
    acr: row.acr,
  };
}

/** Device-session rows whose provider session is gone (logged out, expired, revoked). */
export async function purgeEndedDeviceSessions(db: Db, limit = 5000): Promise<number> {
  const ended = db('device_sessions')
    .select('session_uid')
    // Rows are written a moment before the provider saves a new session.
    .where('last_active_at', '<', db.raw("now() - interval '10 minutes'"))
    .whereNotExists(whereLive(db))
    .limit(limit);
  const rows = await db('device_sessions').whereIn('session_uid', ended).delete(['id']);
  return rows.length;
}

/** Whether the user ticked "Keep me signed in" when this session signed in. */
export async function sessionRemembered(db: Db, sessionUid: string, userId: string): Promise<boolean> {
  const row = await db('device_sessions').where({ session_uid: sessionUid, user_id: userId }).first('remember');
  return Boolean(row?.remember);
}
