// Scheduled upkeep of SAML connections: --metadata-url connections refreshed daily through the
// outbound-request guard, and IdP signing certificates that expire within 30 days warned about
// in the log (event saml.certificate_expiring), at most once a day per connection.
import type { Knex } from 'knex';
import type { Db } from '../../db/knex.ts';
import type { Logger } from '../../observability/logger.ts';
import type { OutboundRequest } from '../../security/outbound.ts';
import { MetadataError, parseIdpMetadata } from './metadata.ts';

export const METADATA_REFRESH_SECONDS = 24 * 3600;
export const CERT_WARNING_DAYS = 30;
const MAX_METADATA_BYTES = 2 * 1024 * 1024;

/** An IdP's metadata from `url`, through the guard (no private addresses unless allowed, no redirects). */
export async function fetchIdpMetadata(outbound: OutboundRequest, url: string): Promise<string> {
  const res = await outbound(url, { timeoutMs: 10_000, maxBytes: MAX_METADATA_BYTES });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
  return res.body;
}

/**
 * Refreshes every --metadata-url connection not checked for a day. Each is claimed first (one
 * UPDATE … RETURNING), so instances running this together fetch each once; a failure keeps the
 * metadata we have and is tried again the next day. A new entity ID is refused: that is a
 * different IdP, for an operator to accept with `saml update`.
 */
export async function refreshDueMetadata(db: Db, outbound: OutboundRequest, log: Logger, maxAgeSeconds = METADATA_REFRESH_SECONDS) {
  const due: { name: string; metadata_url: string; idp_entity_id: string; idp_metadata: string }[] = await db('saml_connections')
    .whereNotNull('metadata_url')
    .whereRaw('COALESCE(metadata_checked_at, metadata_fetched_at, created_at) <= now() - make_interval(secs => ?)', [maxAgeSeconds])
    .update({ metadata_checked_at: db.fn.now() }, ['name', 'metadata_url', 'idp_entity_id', 'idp_metadata']);
  let refreshed = 0;
  let failed = 0;
  for (const c of due) {
    try {
      const xml = await fetchIdpMetadata(outbound, c.metadata_url);
      const idp = parseIdpMetadata(xml);
      if (idp.entityId !== c.idp_entity_id) throw new MetadataError('the entity ID changed');
      await db('saml_connections').where({ name: c.name }).update({ idp_metadata: xml, metadata_fetched_at: db.fn.now(), ...(xml !== c.idp_metadata ? { updated_at: db.fn.now() } : {}) });
      log.info({ event: 'saml.metadata_refreshed', connection: c.name, changed: xml !== c.idp_metadata }, 'SAML IdP metadata refreshed');
      refreshed++;
    } catch (err) {
      failed++;
      log.warn({ event: 'saml.metadata_refresh_failed', connection: c.name, reason: (err as Error).message.slice(0, 200) }, 'SAML IdP metadata refresh failed; the previous metadata stays');
    }
  }
  return { metadataRefreshed: refreshed, metadataFailed: failed };
}

/** Logs saml.certificate_expiring for IdP certificates expiring within CERT_WARNING_DAYS (once a day each). */
export async function warnExpiringCertificates(trx: Knex.Transaction | Db, log: Logger, now = Date.now()) {
  const rows: { name: string; idp_metadata: string; cert_warned_at: Date | null }[] = await trx('saml_connections').select('name', 'idp_metadata', 'cert_warned_at');
  let warned = 0;
  for (const row of rows) {
    let notAfter: Date;
    try {
      notAfter = parseIdpMetadata(row.idp_metadata).certNotAfter;
    } catch {
      continue;
    }
    const daysLeft = Math.floor((notAfter.getTime() - now) / 86_400_000);
    if (daysLeft > CERT_WARNING_DAYS) continue;
    if (row.cert_warned_at && now - new Date(row.cert_warned_at).getTime() < 86_400_000) continue;
    log.warn(
      { event: 'saml.certificate_expiring', connection: row.name, expires_at: notAfter.toISOString(), days_left: daysLeft },
      daysLeft < 0 ? `the IdP certificate of SAML connection ${row.name} has expired` : `the IdP certificate of SAML connection ${row.name} expires in ${daysLeft} days`,
    );
    await trx('saml_connections').where({ name: row.name }).update({ cert_warned_at: trx.fn.now() });
    warned++;
  }
  return { certificatesExpiring: warned };
}
