// A real SMTP server on loopback for tests: accepts every message (no TLS, no auth), parses it
// with mailparser, and lets a test wait for the mail it expects and read the links out of it.
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { simpleParser, type AddressObject } from 'mailparser';

export interface ReceivedMail {
  to: string[];
  from: string;
  subject: string;
  text: string;
  html: string;
  /** Absolute http(s) links in the text body, in order. */
  links: string[];
}

function addresses(field: AddressObject | AddressObject[] | undefined): string[] {
  const list = Array.isArray(field) ? field : field ? [field] : [];
  return list.flatMap((a) => a.value.map((v) => (v.address ?? '').toLowerCase()));
}

export class SmtpSink {
  readonly mails: ReceivedMail[] = [];
  private taken = new Set<ReceivedMail>();
  private server: SMTPServer | undefined;
  port = 0;

  /** Listens on `port` (0: any free one). */
  async start(port = this.port): Promise<void> {
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      onData: (stream, _session, callback) => {
        simpleParser(stream).then(
          (parsed) => {
            const text = parsed.text ?? '';
            this.mails.push({
              to: addresses(parsed.to),
              from: addresses(parsed.from)[0] ?? '',
              subject: parsed.subject ?? '',
              text,
              html: typeof parsed.html === 'string' ? parsed.html : '',
              links: text.match(/https?:\/\/[^\s<>"')]+/g) ?? [],
            });
            callback();
          },
          (err) => callback(err as Error),
        );
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Waits for the first mail not yet returned that goes to `to` (and matches `subject`), and claims it. */
  async next(to: string, subject?: RegExp, timeoutMs = 15_000): Promise<ReceivedMail> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const mail = this.mails.find((m) => !this.taken.has(m) && m.to.includes(to.toLowerCase()) && (!subject || subject.test(m.subject)));
      if (mail) {
        this.taken.add(mail);
        return mail;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no mail to ${to}${subject ? ` matching ${subject}` : ''} within ${timeoutMs} ms; received: ${JSON.stringify(this.mails.map((m) => ({ to: m.to, subject: m.subject })))}`);
  }

  /** Mails to `to` received so far. */
  to(to: string): ReceivedMail[] {
    return this.mails.filter((m) => m.to.includes(to.toLowerCase()));
  }
}
