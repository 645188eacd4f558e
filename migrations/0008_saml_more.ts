import type { Knex } from 'knex';

// More of the SAML bridge: encrypted assertions (a separate SP encryption key per connection,
// sealed like the signing key), how step-up above the IdP's level is done, metadata refresh and
// certificate-expiry bookkeeping, IdP-initiated landings, and links to existing local accounts
// waiting for their owner's confirmation.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('saml_connections', (t) => {
    t.boolean('encrypted_assertions').notNullable().defaultTo(false);
    t.text('sp_enc_key_enc');
    t.text('sp_enc_certificate');
    t.text('step_up').notNullable().defaultTo('local');
    // The last refresh attempt of --metadata-url (success or not): the daily job's clock.
    t.timestamp('metadata_checked_at', { useTz: true });
    // When the expiring-certificate warning was last logged (at most once a day).
    t.timestamp('cert_warned_at', { useTz: true });
  });
  await knex.schema.alterTable('saml_requests', (t) => {
    // A request sent to have the IdP itself step the user up (ForceAuthn + RequestedAuthnContext).
    t.boolean('step_up').notNullable().defaultTo(false);
  });
  // An accepted unsolicited response, waiting for its one landing on the account page.
  await knex.schema.createTable('saml_landings', (t) => {
    t.text('token_hash').primary();
    t.text('connection_name').notNullable().references('saml_connections.name').onDelete('CASCADE');
    // SHA-256 of the state of the account sign-in it starts: the landing finishes only that one.
    t.text('state_hash').notNullable();
    t.jsonb('result').notNullable();
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.timestamp('used_at', { useTz: true });
  });
  await knex.raw('CREATE INDEX saml_landings_expires ON saml_landings (expires_at)');
  // A SAML sign-in whose email belongs to an unlinked local account: linked only once that
  // account's owner has signed in locally in the same interaction and confirmed.
  await knex.schema.createTable('saml_pending_links', (t) => {
    t.text('interaction_uid').primary();
    t.text('connection_name').notNullable().references('saml_connections.name').onDelete('CASCADE');
    t.text('name_id').notNullable();
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.jsonb('facts').notNullable();
    t.timestamp('expires_at', { useTz: true }).notNullable();
  });
  await knex.raw('CREATE INDEX saml_pending_links_expires ON saml_pending_links (expires_at)');
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only');
}
