// One knex factory: PostgreSQL when DATABASE_URL is set, otherwise embedded PGlite on disk.
import fs from 'node:fs';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import pg from 'pg';
import type { Config } from '../config.ts';

export type Db = Knex;

// bigint (count(*), bigserial) as JS numbers: our counters never exceed 2^53.
pg.types.setTypeParser(20, (v) => Number.parseInt(v, 10));

export function createDb(config: Pick<Config, 'databaseUrl' | 'dataDir' | 'databasePoolMax'>): Db {
  if (config.databaseUrl) {
    return knexFactory({
      client: 'pg',
      connection: config.databaseUrl,
      pool: { min: 0, max: config.databasePoolMax },
    });
  }
  const dir = path.join(config.dataDir, 'pglite');
  fs.mkdirSync(dir, { recursive: true });
  return knexFactory({ client: ClientPgLite as unknown as typeof Knex.Client, dialect: 'postgres', connection: { filename: dir } });
}

export function isEmbedded(config: Pick<Config, 'databaseUrl'>): boolean {
  return !config.databaseUrl;
}
