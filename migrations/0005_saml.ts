import type { Knex } from 'knex';

// The SAML bridge: connections to enterprise IdPs (each with its own SP signing key, sealed),
// the domains they own, AuthnRequests in flight (bound to the OIDC interaction and the browser),
// the replay cache of assertion ids, the (connection, NameID) → user links, and user roles.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('saml_connections', (t) => {
    t.text('name').primary();
    t.text('idp_entity_id').notNullable();
    t.text('idp_metadata').notNullable();
    t.text('metadata_url');
    t.timestamp('metadata_fetched_at', { useTz: true });
    // SP signing key (PKCS#8 PEM) sealed with the at-rest key; its self-signed certificate in clear.
    t.text('sp_private_key_enc').notNullable();
    t.text('sp_certificate').notNullable();
    t.jsonb('attribute_map').notNullable().defaultTo('{}');
    t.jsonb('acr_map').notNullable().defaultTo('{}');
    t.jsonb('role_map');
    t.text('default_role');
    t.boolean('allow_idp_initiated').notNullable().defaultTo(false);
    t.boolean('sso_only').notNullable().defaultTo(false);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  // One owner per domain: home-realm discovery must never be ambiguous.
  await knex.schema.createTable('saml_domains', (t) => {
    t.text('domain').primary();
    t.text('connection_name').notNullable().references('saml_connections.name').onDelete('CASCADE');
  });
  await knex.schema.createTable('saml_requests', (t) => {
    // SHA-256 of the RelayState (a bearer value in a URL).
    t.text('relay_hash').primary();
    t.text('request_id').notNullable().unique();
    t.text('connection_name').notNullable().references('saml_connections.name').onDelete('CASCADE');
    t.text('interaction_uid').notNullable();
    // SHA-256 of the browser-binding secret kept in a cookie scoped to the interaction.
    t.text('binding_hash').notNullable();
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.timestamp('answered_at', { useTz: true });
    // The validated assertion, between the ACS and the browser's return under /interaction/:uid.
    t.jsonb('result');
  });
  await knex.raw('CREATE INDEX saml_requests_expires ON saml_requests (expires_at)');
  await knex.schema.createTable('saml_seen_assertions', (t) => {
    t.text('connection_name').notNullable();
    t.text('assertion_id').notNullable();
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.primary(['connection_name', 'assertion_id']);
  });
  await knex.raw('CREATE INDEX saml_seen_assertions_expires ON saml_seen_assertions (expires_at)');
  await knex.schema.createTable('saml_identities', (t) => {
    t.text('connection_name').notNullable().references('saml_connections.name').onDelete('CASCADE');
    t.text('name_id').notNullable();
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.jsonb('groups').notNullable().defaultTo('[]');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_login_at', { useTz: true });
    t.primary(['connection_name', 'name_id']);
  });
  await knex.raw('CREATE INDEX saml_identities_user ON saml_identities (user_id)');
  await knex.schema.createTable('user_roles', (t) => {
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.text('role').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['user_id', 'role']);
  });
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only');
}
