// The CLI as an operator uses it, against a running server (embedded: handed to the server;
// PostgreSQL: direct), including the launcher on the machine's own (older) Node.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, type TestServer } from '../helpers/server.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let server: TestServer;

before(async () => {
  server = await startServer();
});
after(async () => server?.stop());

function latchkey(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'src/main.ts'), ...args], { env: { ...process.env, ...server.env }, input, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('users create --password-stdin keeps the password off the command line', async () => {
  const created = latchkey(['users', 'create', '--email', 'stdin@example.com', '--password-stdin', '--json'], 'piped in 12345\n');
  assert.equal(created.code, 0, created.stderr);
  assert.equal(JSON.parse(created.stdout).email, 'stdin@example.com');
  const tooShort = latchkey(['users', 'create', '--email', 'short@example.com', '--password-stdin'], 'short\n');
  assert.equal(tooShort.code, 2);
  assert.match(tooShort.stderr, /at least 8 characters/);
});

test('users create refuses a password built from the address, the name or the product, and creates no one', async () => {
  const refused = [
    { email: 'marguerite@example.com', name: [], password: 'Marguerite-2024!', reason: /password: This password contains your email address/ },
    { email: 'op-1@example.com', name: ['--name', 'Theodora Quill'], password: 'theodora rules 99', reason: /password: This password contains your name/ },
    { email: 'op-2@example.com', name: [], password: 'my latchkey pass 7', reason: /password: This password contains the name of this service/ },
  ];
  for (const { email, name, password, reason } of refused) {
    const r = latchkey(['users', 'create', '--email', email, ...name, '--password', password, '--verified']);
    assert.equal(r.code, 2, `exit code 2 for ${email} (stderr: ${r.stderr})`);
    assert.match(r.stderr, reason);
    assert.equal(r.stdout, '', 'nothing on stdout');
    // --password-stdin goes through the same check.
    const piped = latchkey(['users', 'create', '--email', email, ...name, '--password-stdin', '--json'], `${password}\n`);
    assert.equal(piped.code, 2, piped.stderr);
    assert.match(piped.stderr, reason);
  }
  const emails = (JSON.parse(latchkey(['users', 'list', '--json']).stdout) as { email: string }[]).map((u) => u.email);
  for (const { email } of refused) assert.ok(!emails.includes(email), `${email} was not created`);
  // The same address and name with an unrelated password is fine.
  const ok = latchkey(['users', 'create', '--email', 'op-1@example.com', '--name', 'Theodora Quill', '--password', 'ginger comet 99', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
});

test('exit codes and JSON output', async () => {
  const dup = latchkey(['users', 'create', '--email', 'STDIN@example.com', '--password', 'another one 123']);
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /already exists/);
  assert.equal(latchkey(['clients', 'create', '--id', 'c1', '--redirect-uri', 'not a url']).code, 2);
  assert.equal(latchkey(['clients', 'create', '--id', 'c1', '--redirect-uri', 'https://app.example/cb', '--json']).code, 0);
  const listed = JSON.parse(latchkey(['clients', 'list', '--json']).stdout) as { client_id: string }[];
  assert.ok(listed.some((c) => c.client_id === 'c1'));
  assert.equal(latchkey(['clients', 'delete', 'c1', '--json']).code, 0);
  assert.equal(latchkey(['clients', 'delete', 'c1']).code, 1, 'deleting a missing client fails');
  const job = JSON.parse(latchkey(['jobs', 'run', 'sweep-expired', '--json']).stdout) as { ran: boolean };
  assert.equal(job.ran, true);
  assert.equal(latchkey(['jobs', 'run', 'nope']).code, 2);
  assert.equal(latchkey(['frobnicate']).code, 2);
});

// The machine's own node (Node 20 here): the launcher hands over to the project's Node 24.
const systemNode = ['/usr/local/bin/node', '/usr/bin/node'].find((p) => spawnSync(p, ['--version']).status === 0);

test("the launcher runs on the machine's own Node too", { skip: !systemNode && 'no system node on this machine' }, () => {
  const r = spawnSync(systemNode!, [path.join(ROOT, 'bin/latchkey.js'), 'users', 'list', '--json'], { env: { ...process.env, ...server.env }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.ok((JSON.parse(r.stdout) as { email: string }[]).some((u) => u.email === 'stdin@example.com'));
});
