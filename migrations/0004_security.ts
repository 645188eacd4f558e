import type { Knex } from 'knex';

// Security hardening: a credential version that device cookies are bound to (a password reset
// bumps it, so a browser trusted before the reset is trusted no more), and whether a pending
// sign-in has just enrolled a first second factor and so owes the user its recovery codes.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('users', (t) => {
    t.integer('credentials_version').notNullable().defaultTo(0);
  });
  await knex.schema.alterTable('pending_logins', (t) => {
    t.boolean('recovery_codes_due').notNullable().defaultTo(false);
  });
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only');
}
