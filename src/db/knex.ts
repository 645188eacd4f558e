// One knex factory: PostgreSQL when DATABASE_URL is set, otherwise embedded PGlite on disk.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import pg from 'pg';
import type { Config } from '../config.ts';

export type Db = Knex;

// bigint (count(*), bigserial) as JS numbers: our counters never exceed 2^53.
pg.types.setTypeParser(20, (v) => Number.parseInt(v, 10));

/** A migrated PGlite data directory made at install time (scripts/embedded-template.ts). */
export const EMBEDDED_TEMPLATE = fileURLToPath(new URL('../../node_modules/.cache/latchkey/pglite-template', import.meta.url));

/**
 * The embedded database holds password hashes, sessions and encrypted keys: only the service's
 * own user may enter its directory. `narrow` also fixes one an older version made 0755; an
 * existing DATA_DIR is the operator's choice and is left as it is.
 */
function privateDir(dir: string, narrow: boolean): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (narrow && (fs.statSync(dir).mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
}

function embeddedInstance(dir: string): PGlite {
  // A first start copies the template instead of running initdb and every migration: most of a
  // cold start. Without the template (install scripts skipped) PGlite initialises from scratch.
  const fresh = !fs.existsSync(path.join(dir, 'PG_VERSION'));
  if (fresh && fs.existsSync(path.join(EMBEDDED_TEMPLATE, 'PG_VERSION'))) {
    fs.cpSync(EMBEDDED_TEMPLATE, dir, { recursive: true });
  }
  return new PGlite({ dataDir: dir });
}

export function createDb(config: Pick<Config, 'databaseUrl' | 'dataDir' | 'databasePoolMax'>): Db {
  if (config.databaseUrl) {
    return knexFactory({
      client: 'pg',
      connection: config.databaseUrl,
      pool: { min: 0, max: config.databasePoolMax },
    });
  }
  const dir = path.join(config.dataDir, 'pglite');
  privateDir(config.dataDir, false);
  privateDir(dir, true);
  return knexFactory({
    client: ClientPgLite as unknown as typeof Knex.Client,
    dialect: 'postgres',
    connection: { pglite: embeddedInstance(dir) } as Knex.StaticConnectionConfig,
  });
}

export function isEmbedded(config: Pick<Config, 'databaseUrl'>): boolean {
  return !config.databaseUrl;
}
