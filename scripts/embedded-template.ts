// Runs after `npm ci`: initialises an embedded PostgreSQL (PGlite) data directory once, migrated
// to this version's schema, and keeps it as a template. A first `npm start` copies it instead of
// running initdb and every migration, which is most of a cold start.
import fs from 'node:fs';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import { EMBEDDED_TEMPLATE } from '../src/db/knex.ts';
import { migrateLatest } from '../src/db/migrate.ts';

const building = `${EMBEDDED_TEMPLATE}.building-${process.pid}`;
fs.rmSync(building, { recursive: true, force: true });
fs.mkdirSync(path.dirname(building), { recursive: true });
const pglite = await PGlite.create({ dataDir: building });
const db = knexFactory({ client: ClientPgLite as unknown as typeof Knex.Client, dialect: 'postgres', connection: { pglite } as Knex.StaticConnectionConfig });
await migrateLatest(db);
await db.destroy(); // closes PGlite: the directory is consistent on disk
fs.rmSync(EMBEDDED_TEMPLATE, { recursive: true, force: true });
fs.renameSync(building, EMBEDDED_TEMPLATE);
process.stdout.write(`latchkey: embedded database template written (${EMBEDDED_TEMPLATE})\n`);
