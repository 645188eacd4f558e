// Runs after `npm ci`: initialises an embedded PostgreSQL (PGlite) once, migrated to this
// version's schema, and keeps it as a template. A first `npm start` unpacks it instead of
// running initdb and every migration, which is most of a cold start.
import fs from 'node:fs';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import { EMBEDDED_TEMPLATE } from '../src/db/knex.ts';
import { migrateLatest } from '../src/db/migrate.ts';

const pglite = await PGlite.create({ dataDir: 'memory://' });
const db = knexFactory({ client: ClientPgLite as unknown as typeof Knex.Client, dialect: 'postgres', connection: { pglite } as Knex.StaticConnectionConfig });
await migrateLatest(db);
const dump = await pglite.dumpDataDir('gzip');
await db.destroy();
fs.mkdirSync(path.dirname(EMBEDDED_TEMPLATE), { recursive: true });
fs.writeFileSync(EMBEDDED_TEMPLATE, Buffer.from(await dump.arrayBuffer()));
process.stdout.write(`latchkey: embedded database template written (${EMBEDDED_TEMPLATE})\n`);
