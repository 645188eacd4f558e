import type { Knex } from 'knex';

// Performance (issue 13).
// 1. Every change to a registered client is announced on the `latchkey_clients` channel (payload:
//    the client id), whatever wrote it (the CLI in another process, another instance, SQL by hand):
//    servers cache clients and drop the entry when they hear it (src/oidc/client-cache.ts).
//    pg_notify inside a transaction is delivered at commit, so no server sees it too early.
// 2. Indexes for the hot lookups that had none (test/explain.test.ts checks each hot query).
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE FUNCTION latchkey_clients_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('latchkey_clients', CASE WHEN TG_OP = 'DELETE' THEN OLD.client_id ELSE NEW.client_id END);
      IF TG_OP = 'UPDATE' AND OLD.client_id IS DISTINCT FROM NEW.client_id THEN
        PERFORM pg_notify('latchkey_clients', OLD.client_id);
      END IF;
      RETURN NULL;
    END $$`);
  await knex.raw(`
    CREATE TRIGGER oidc_clients_changed AFTER INSERT OR UPDATE OR DELETE ON oidc_clients
    FOR EACH ROW EXECUTE FUNCTION latchkey_clients_changed()`);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only');
}
