// Throwaway databases for tests: a fresh PostgreSQL database on the server named by
// DATABASE_URL when it is set, otherwise (or on request) an embedded PGlite in a temp dir.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import knexFactory from 'knex';
import { createDb, type Db } from '../../src/db/knex.ts';
import { migrateLatest } from '../../src/db/migrate.ts';

export interface TestDbConfig {
  databaseUrl?: string;
  dataDir: string;
  databasePoolMax: number;
}

export interface TestDatabase {
  db: Db;
  config: TestDbConfig;
  cleanup(): Promise<void>;
}

/** createDb wants databaseUrl as a present (possibly undefined) key. */
export function dbOptions(config: TestDbConfig) {
  return { databaseUrl: config.databaseUrl, dataDir: config.dataDir, databasePoolMax: config.databasePoolMax };
}

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-test-'));
}

/** Always the embedded PGlite backend, in a fresh temp dir removed by cleanup(). */
export async function pgliteDatabase(): Promise<TestDatabase> {
  const dataDir = tempDir();
  const config: TestDbConfig = { dataDir, databasePoolMax: 1 };
  const db = createDb(dbOptions(config));
  try {
    await migrateLatest(db);
  } catch (err) {
    await db.destroy().catch(() => {});
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  return {
    db,
    config,
    async cleanup() {
      try {
        await db.destroy();
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** A fresh, migrated PostgreSQL database on the server of `serverUrl`, dropped by cleanup(). */
export async function postgresDatabase(serverUrl: string): Promise<TestDatabase> {
  const name = `latchkey_t_${crypto.randomBytes(8).toString('hex')}`;
  const maintenanceUrl = new URL(serverUrl);
  maintenanceUrl.pathname = '/postgres';
  const databaseUrl = new URL(serverUrl);
  databaseUrl.pathname = `/${name}`;

  const admin = knexFactory({ client: 'pg', connection: maintenanceUrl.toString(), pool: { min: 0, max: 1 } });
  const dropDatabase = async () => {
    await admin.raw('DROP DATABASE IF EXISTS ?? WITH (FORCE)', [name]);
  };
  let db: Db | undefined;
  // Not inside try: when CREATE fails there is nothing to drop, but the admin pool must close.
  try {
    await admin.raw('CREATE DATABASE ??', [name]);
  } catch (err) {
    await admin.destroy();
    throw err;
  }
  const dataDir = tempDir();
  const config: TestDbConfig = { databaseUrl: databaseUrl.toString(), dataDir, databasePoolMax: 5 };
  try {
    db = createDb(dbOptions(config));
    await migrateLatest(db);
  } catch (err) {
    await db?.destroy().catch(() => {});
    await dropDatabase().catch(() => {});
    await admin.destroy();
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const migrated = db;
  return {
    db: migrated,
    config,
    async cleanup() {
      try {
        await migrated.destroy();
        await dropDatabase();
      } finally {
        await admin.destroy();
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** PostgreSQL when DATABASE_URL is set, otherwise embedded PGlite. */
export async function testDatabase(): Promise<TestDatabase> {
  const url = process.env.DATABASE_URL;
  return url ? postgresDatabase(url) : pgliteDatabase();
}
