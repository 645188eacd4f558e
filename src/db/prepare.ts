// What every start does to its database before it serves: pending migrations, then signing keys
// if there are none yet. Run by each server (a no-op once done) and, for `serve --workers N`,
// once by the primary before any worker starts (cluster.ts).
import type { Logger } from '../observability/logger.ts';
import { ensureSigningKeys } from '../oidc/keys.ts';
import type { Db } from './knex.ts';
import { migrateLatest } from './migrate.ts';

export async function prepareDatabase(db: Db, atRestKey: Buffer, log: Logger): Promise<void> {
  const applied = await migrateLatest(db);
  if (applied.length) log.info({ event: 'db.migrated', applied }, 'database migrated');
  const createdKeys = await ensureSigningKeys(db, atRestKey);
  if (createdKeys.length) log.info({ event: 'keys.created', algs: createdKeys }, 'signing keys generated');
}
