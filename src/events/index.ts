// Outbound notifications to relying parties: Security Event Tokens through one database outbox.
export { createSecurityEvents, subjectFor, type SecurityEvents, type EventDeliveryResult } from './outbox.ts';
export { ACCOUNT_EVENTS, type AccountEvent } from './set.ts';
