// The one way the server fetches a URL that a client or an operator supplied (Security Event
// Token delivery, webhooks, SAML metadata URLs): http(s) only, the host resolved first and every
// resolved address checked at connect time (no DNS-rebinding window), private, loopback,
// link-local and other special-use addresses refused unless the exact origin is listed in
// OUTBOUND_ALLOW_ORIGINS, short timeouts, a bounded response, and no redirects followed.
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

const BLOCKED = new net.BlockList();
for (const [prefix, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24],
  ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) BLOCKED.addSubnet(prefix, bits, 'ipv4');
for (const [prefix, bits] of [
  ['::', 128], ['::1', 128], ['64:ff9b::', 96], ['100::', 64], ['2001::', 23], ['2001:db8::', 32],
  ['fc00::', 7], ['fe80::', 10], ['ff00::', 8],
] as const) BLOCKED.addSubnet(prefix, bits, 'ipv6');

export class OutboundRefusedError extends Error {}

export interface OutboundResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface OutboundOptions {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  timeoutMs?: number;
  maxBytes?: number;
}

/** Whether an address may be connected to at all (special-use ranges may not). */
export function isPublicAddress(address: string): boolean {
  // An IPv4-mapped IPv6 address is the IPv4 address it carries.
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address)?.[1];
  if (mapped) return isPublicAddress(mapped);
  const family = net.isIP(address);
  if (family === 0) return false;
  return !BLOCKED.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

export function createOutbound(allowOrigins: readonly string[]) {
  const allowed = new Set(allowOrigins.map((o) => new URL(o).origin));

  return async function outboundRequest(target: string, options: OutboundOptions = {}): Promise<OutboundResponse> {
    const url = URL.parse(target);
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new OutboundRefusedError('only http(s) URLs may be fetched');
    if (url.username || url.password) throw new OutboundRefusedError('URLs with credentials are refused');
    const exempt = allowed.has(url.origin);
    // Checked on the address actually connected to: a name that resolves differently later cannot slip through.
    const lookup: net.LookupFunction = (hostname, lookupOptions, callback) => {
      dns.lookup(hostname, { ...lookupOptions, all: true }, (err, addresses) => {
        if (err) return callback(err, '', 4);
        const list = addresses as dns.LookupAddress[];
        const usable = exempt ? list : list.filter((a) => isPublicAddress(a.address));
        if (usable.length === 0) return callback(new OutboundRefusedError(`${hostname} resolves only to private or special-use addresses`), '', 4);
        if ((lookupOptions as { all?: boolean }).all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, usable);
        callback(null, usable[0]!.address, usable[0]!.family);
      });
    };
    const literal = net.isIP(url.hostname.replace(/^\[|\]$/g, ''));
    if (literal && !exempt && !isPublicAddress(url.hostname.replace(/^\[|\]$/g, ''))) {
      throw new OutboundRefusedError(`${url.hostname} is a private or special-use address`);
    }
    const client = url.protocol === 'https:' ? https : http;
    const timeoutMs = options.timeoutMs ?? 5000;
    const maxBytes = options.maxBytes ?? 1024 * 1024;
    return new Promise<OutboundResponse>((resolve, reject) => {
      const request = client.request(
        url,
        { method: options.method ?? 'GET', headers: { 'user-agent': 'Latchkey', ...options.headers }, lookup, timeout: timeoutMs, agent: false },
        (response) => {
          let size = 0;
          const chunks: Buffer[] = [];
          const tooBig = () => new OutboundRefusedError(`response larger than ${maxBytes} bytes`);
          response.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxBytes) return request.destroy(tooBig());
            chunks.push(chunk);
          });
          response.on('end', () => {
            if (size > maxBytes) return reject(tooBig());
            resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') });
          });
          response.on('error', reject);
        },
      );
      // The whole exchange is bounded, not only each idle gap.
      const deadline = setTimeout(() => request.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      request.on('close', () => clearTimeout(deadline));
      request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      request.on('error', reject);
      if (options.body) request.write(options.body);
      request.end();
    });
  };
}

export type OutboundRequest = ReturnType<typeof createOutbound>;
