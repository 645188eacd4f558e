// Where mail goes: real SMTP when SMTP_URL is set, otherwise the development transport, which
// writes each mail to the log as a `mail.dev` event with its links so a person running
// `npm start` can click through. That event is the only place a link (a bearer token) is logged.
import nodemailer from 'nodemailer';
import type { Config } from '../config.ts';
import type { Logger } from '../observability/logger.ts';

export interface OutgoingMail {
  to: string;
  subject: string;
  text: string;
  html: string;
}

export interface MailTransport {
  readonly kind: 'smtp' | 'dev';
  send(mail: OutgoingMail): Promise<void>;
  close(): void;
}

const LINK_RE = /https?:\/\/[^\s<>"')]+/g;

export function createMailTransport(config: Pick<Config, 'mail'>, log: Logger): MailTransport {
  const { smtpUrl, from, transport } = config.mail;
  if (transport === 'log' || !smtpUrl) {
    return {
      kind: 'dev',
      async send(mail) {
        log.info(
          { event: 'mail.dev', to: mail.to, subject: mail.subject, links: mail.text.match(LINK_RE) ?? [], text: mail.text },
          `mail to ${mail.to}: ${mail.subject} (SMTP_URL is not set, so it is only logged)`,
        );
      },
      close() {},
    };
  }
  // Bounded timeouts: a hung SMTP server delays the outbox worker, never a request.
  const transporter = nodemailer.createTransport(
    { url: smtpUrl, connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 30_000 },
    { from },
  );
  return {
    kind: 'smtp',
    async send(mail) {
      await transporter.sendMail({ to: mail.to, subject: mail.subject, text: mail.text, html: mail.html });
    },
    close() {
      transporter.close();
    },
  };
}
