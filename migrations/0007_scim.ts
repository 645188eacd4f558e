import type { Knex } from 'knex';

// SCIM 2.0 provisioning per SAML connection: the connection's bearer token (only its SHA-256),
// what SCIM says about a user beyond the users table (externalId, name parts), and the
// connection's groups with their members. A SCIM user IS the (connection, NameID) link of
// saml_identities: userName is the NameID, so JIT sign-in and SCIM find the same user.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('scim_tokens', (t) => {
    t.text('connection_name').primary().references('saml_connections.name').onDelete('CASCADE');
    t.text('token_hash').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.schema.createTable('scim_users', (t) => {
    t.text('connection_name').notNullable().references('saml_connections.name').onDelete('CASCADE');
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.text('external_id');
    t.text('given_name');
    t.text('family_name');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['connection_name', 'user_id']);
  });
  await knex.raw('CREATE INDEX scim_users_external_id ON scim_users (connection_name, external_id) WHERE external_id IS NOT NULL');
  await knex.raw('CREATE INDEX saml_identities_name_id_lower ON saml_identities (connection_name, lower(name_id))');
  await knex.schema.createTable('scim_groups', (t) => {
    t.uuid('id').primary();
    t.text('connection_name').notNullable().references('saml_connections.name').onDelete('CASCADE');
    t.text('display_name').notNullable();
    t.text('external_id');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  // displayName is the group name the role map is written against: one per connection, any case.
  await knex.raw('CREATE UNIQUE INDEX scim_groups_name ON scim_groups (connection_name, lower(display_name))');
  await knex.schema.createTable('scim_group_members', (t) => {
    t.uuid('group_id').notNullable().references('scim_groups.id').onDelete('CASCADE');
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.primary(['group_id', 'user_id']);
  });
  await knex.raw('CREATE INDEX scim_group_members_user ON scim_group_members (user_id)');
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only');
}
