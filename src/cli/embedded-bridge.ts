// The embedded database (PGlite) can be opened by one process only. While `latchkey serve`
// runs on it, CLI commands are handed to that server over loopback, authenticated by a
// random token that only local users who can read DATA_DIR can see.
import fs from 'node:fs';
import path from 'node:path';
import type { Context } from 'koa';
import type { Config } from '../config.ts';
import { constantTimeEqual, randomToken } from '../security/crypto.ts';

interface BridgeInfo {
  pid: number;
  port: number;
  token: string;
}

const fileFor = (config: Pick<Config, 'dataDir'>) => path.join(config.dataDir, 'server.json');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The running server that owns this DATA_DIR, if any (a stale file from a crash is ignored). */
export function findRunningServer(config: Pick<Config, 'dataDir'>): BridgeInfo | undefined {
  try {
    const info = JSON.parse(fs.readFileSync(fileFor(config), 'utf8')) as BridgeInfo;
    return info.pid !== process.pid && alive(info.pid) ? info : undefined;
  } catch {
    return undefined;
  }
}

export function createBridge(config: Pick<Config, 'dataDir'>) {
  const token = randomToken(32);
  return {
    publish(port: number) {
      fs.mkdirSync(config.dataDir, { recursive: true });
      fs.writeFileSync(fileFor(config), JSON.stringify({ pid: process.pid, port, token }), { mode: 0o600 });
    },
    unpublish() {
      try {
        const info = JSON.parse(fs.readFileSync(fileFor(config), 'utf8')) as BridgeInfo;
        if (info.pid === process.pid) fs.rmSync(fileFor(config));
      } catch {
        /* already gone */
      }
    },
    /** True when the request comes from this machine with the bridge token. */
    authorized(ctx: Context): boolean {
      const remote = ctx.req.socket.remoteAddress ?? '';
      const loopback = remote === '127.0.0.1' || remote === '::1' || remote === '::ffff:127.0.0.1';
      const sent = ctx.get('authorization').replace(/^Bearer /, '');
      return loopback && sent.length > 0 && constantTimeEqual(sent, token);
    },
  };
}

export type Bridge = ReturnType<typeof createBridge>;

/** Runs argv on the server that owns the embedded database; returns its exit code. */
export async function forwardToServer(info: BridgeInfo, argv: string[]): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${info.port}/internal/cli`, {
    method: 'POST',
    headers: { authorization: `Bearer ${info.token}`, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ argv }),
  });
  if (!res.ok) throw new Error(`the running server refused the command (${res.status})`);
  const result = (await res.json()) as { code: number; stdout: string; stderr: string };
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  return result.code;
}
