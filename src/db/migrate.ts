// Migrations are listed here explicitly (not discovered from the file system) so that the
// set that runs is exactly the set that was reviewed and type-checked.
import type { Knex } from 'knex';
import * as m0001 from '../../migrations/0001_core.ts';
import * as m0002 from '../../migrations/0002_email.ts';
import * as m0003 from '../../migrations/0003_factors.ts';
import * as m0004 from '../../migrations/0004_security.ts';
import * as m0005 from '../../migrations/0005_saml.ts';
import * as m0006 from '../../migrations/0006_deletion.ts';
import * as m0007 from '../../migrations/0007_scim.ts';
import * as m0008 from '../../migrations/0008_saml_more.ts';
import * as m0009 from '../../migrations/0009_sessions.ts';
import * as m0010 from '../../migrations/0010_account.ts';
import * as m0011 from '../../migrations/0011_indexes.ts';
import * as m0012 from '../../migrations/0012_audit_chain.ts';

interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

const migrations: Record<string, Migration> = {
  '0001_core': m0001,
  '0002_email': m0002,
  '0003_factors': m0003,
  '0004_security': m0004,
  '0005_saml': m0005,
  '0006_deletion': m0006,
  '0007_scim': m0007,
  '0008_saml_more': m0008,
  '0009_sessions': m0009,
  '0010_account': m0010,
  '0011_indexes': m0011,
  '0012_audit_chain': m0012,
};

const source: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(migrations).sort(),
  getMigrationName: (name) => name,
  getMigration: async (name) => migrations[name]!,
};

/** Applies pending migrations; knex's lock table serialises concurrent starters. */
export async function migrateLatest(db: Knex): Promise<string[]> {
  const [, applied] = (await db.migrate.latest({ migrationSource: source, tableName: 'knex_migrations' })) as [number, string[]];
  return applied;
}
