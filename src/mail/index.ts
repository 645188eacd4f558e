// Mail, composed: templates (views/mail), a transport (SMTP or the development log), the outbox.
import type { Config } from '../config.ts';
import type { Db } from '../db/knex.ts';
import type { Logger } from '../observability/logger.ts';
import { createMailer, type Mailer } from './outbox.ts';
import { createMailTemplates } from './templates.ts';
import { createMailTransport } from './transport.ts';

export type { Mailer } from './outbox.ts';
export { humanDuration, type MailTemplate } from './templates.ts';

export function createMail(config: Config, log: Logger, db: Db, atRestKey: Buffer): Mailer {
  const templates = createMailTemplates({ productName: config.productName, issuer: config.issuer, themeDir: config.themeDir });
  const transport = createMailTransport(config, log);
  return createMailer({ db, config, log, atRestKey, transport, templates });
}
