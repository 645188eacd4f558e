// Registered clients, cached in this process. oidc-provider asks the adapter for the Client on
// nearly every protocol request (token, introspection, userinfo, each sign-in step): without a
// cache that is one database round trip per request for data that changes only by the CLI.
//
// Invalidation: the store's own writes drop the entry at once (this covers the embedded database,
// whose CLI commands run inside the server through the bridge); every change to `oidc_clients`
// also fires `pg_notify('latchkey_clients', client_id)` from a trigger (migration 0011), which
// other processes on the same PostgreSQL hear on a LISTEN connection. While that connection is
// down nothing is cached, and every entry expires after MAX_AGE_MS regardless, so a lost
// notification costs at most that long.
import type { Db } from '../db/knex.ts';
import type { Logger } from '../observability/logger.ts';

export const CLIENTS_CHANNEL = 'latchkey_clients';
const MAX_AGE_MS = 60_000;
// Lookups of unknown ids are cached too (the id comes from the request): bounded.
const MAX_ENTRIES = 1000;
const RECONNECT_MS = 1000;

type Metadata = Record<string, unknown> | undefined;

interface Entry {
  value: Promise<Metadata>;
  at: number;
  /** The invalidation generation the lookup started in: a lookup racing a change is not kept. */
  generation: number;
}

interface ListenConnection {
  query(sql: string): Promise<unknown>;
  on(event: 'notification', listener: (msg: { channel: string; payload?: string }) => void): unknown;
  on(event: 'error' | 'end', listener: (err?: Error) => void): unknown;
  end(): Promise<void>;
}

interface KnexClientInternals {
  config: { client?: unknown };
  acquireRawConnection(): Promise<ListenConnection>;
}

export function createClientCache(db: Db) {
  const entries = new Map<string, Entry>();
  let generation = 0;
  /** Off until watch(): a one-shot CLI process reads the database every time. */
  let enabled = false;
  let listener: ListenConnection | undefined;
  let reconnect: NodeJS.Timeout | undefined;
  let closed = false;
  let log: Logger | undefined;

  function invalidate(clientId?: string): void {
    generation++;
    if (clientId === undefined) entries.clear();
    else entries.delete(clientId);
  }

  async function listen(): Promise<void> {
    const internals = db.client as unknown as KnexClientInternals;
    const connection = await internals.acquireRawConnection();
    if (closed) {
      await connection.end().catch(() => {});
      return;
    }
    const lost = (err?: Error) => {
      if (listener !== connection) return;
      listener = undefined;
      enabled = false;
      invalidate();
      // The handlers stay attached: a late 'error' on an ended client must not go unhandled.
      connection.end().catch(() => {});
      if (closed) return;
      log?.warn({ event: 'clients.listen_lost', err: err?.message }, 'client change notifications lost: not caching clients until reconnected');
      scheduleReconnect();
    };
    connection.on('error', lost);
    connection.on('end', lost);
    connection.on('notification', (msg) => {
      if (msg.channel === CLIENTS_CHANNEL) invalidate(msg.payload || undefined);
    });
    try {
      await connection.query(`LISTEN ${CLIENTS_CHANNEL}`);
    } catch (err) {
      await connection.end().catch(() => {});
      throw err;
    }
    if (closed) {
      await connection.end().catch(() => {});
      return;
    }
    listener = connection;
    // Changes made while nobody listened are unknown: start empty.
    invalidate();
    enabled = true;
  }

  function scheduleReconnect(): void {
    if (closed || reconnect) return;
    reconnect = setTimeout(() => {
      reconnect = undefined;
      listen().catch((err: Error) => {
        log?.warn({ event: 'clients.listen_failed', err: err.message }, 'could not listen for client changes');
        scheduleReconnect();
      });
    }, RECONNECT_MS);
    reconnect.unref();
  }

  return {
    /** `load`'s answer for `clientId`, from the cache while it is fresh. */
    get(clientId: string, load: () => Promise<Metadata>): Promise<Metadata> {
      if (!enabled) return load();
      const now = Date.now();
      const hit = entries.get(clientId);
      if (hit && now - hit.at < MAX_AGE_MS) return hit.value;
      const started = generation;
      const value = load();
      const entry: Entry = { value, at: now, generation: started };
      if (entries.size >= MAX_ENTRIES) entries.delete(entries.keys().next().value!);
      entries.set(clientId, entry);
      // A failed lookup or one overtaken by a change is not served again.
      const drop = () => {
        if (entries.get(clientId) === entry) entries.delete(clientId);
      };
      value.then(() => {
        if (generation !== started) drop();
      }, drop);
      return value;
    },

    invalidate,

    /**
     * Turns the cache on in a long-running server. On PostgreSQL it first subscribes to change
     * notifications (other instances and CLI processes write the same table); the embedded
     * database has one process, whose writes invalidate directly.
     */
    async watch(logger: Logger): Promise<void> {
      log = logger;
      const driver = (db.client as unknown as KnexClientInternals).config.client;
      if (driver !== 'pg') {
        enabled = true;
        return;
      }
      try {
        await listen();
      } catch (err) {
        log.warn({ event: 'clients.listen_failed', err: (err as Error).message }, 'could not listen for client changes');
        scheduleReconnect();
      }
    },

    async close(): Promise<void> {
      closed = true;
      enabled = false;
      if (reconnect) clearTimeout(reconnect);
      const connection = listener;
      listener = undefined;
      invalidate();
      if (connection) await connection.end().catch(() => {});
    },
  };
}

export type ClientCache = ReturnType<typeof createClientCache>;
