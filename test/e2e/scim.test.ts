// SCIM 2.0 provisioning per SAML connection, end to end: the real server, the connection's bearer
// token from the CLI, and SAML sign-ins through the ACS with Responses written and signed in the
// test (as test/e2e/saml.test.ts does), so a SCIM-created user can be seen to be the user the
// IdP's sign-in finds, and a SCIM deactivation can be seen to end sessions and refresh tokens.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as oidc from 'openid-client';
import { Browser, asPage, asRedirect } from '../helpers/browser.ts';
import { REDIRECT, insecure, startAuthorization } from '../helpers/rp.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { generateSigningCredentials, type SigningCredentials } from '../helpers/saml-idp.ts';
import { audits, idpMetadata, idpResponse, postAcs, startSso, type AuditLine } from '../helpers/saml-sp.ts';

const IDP_ENTITY = 'https://idp.acme.test/saml/metadata';
const OTHER_ENTITY = 'https://idp.other.test/saml/metadata';
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';
const LIST = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';

let server: TestServer;
let rp: oidc.Configuration;
let idpKey: SigningCredentials;
let otherKey: SigningCredentials;
let tmp: string;
let acmeToken: string;
let otherToken: string;

/**
 * RP → sign-in page → `email` (no password) → AuthnRequest → the IdP answers for `nameId` → ACS.
 * Returns where the browser ends up and what the code exchange needs.
 */
async function samlSignIn(email: string, nameId = email, params: Record<string, string> = {}, browser = new Browser()) {
  const { started, requestId, relayState } = await startSso(browser, rp, email, params);
  const step = await postAcs(server, browser, idpResponse(server, { issuer: IDP_ENTITY, connection: 'acme', nameId, inResponseTo: requestId }, idpKey), relayState, 'acme');
  return { browser, started, step };
}

async function tokensFrom(s: Awaited<ReturnType<typeof samlSignIn>>) {
  const callback = new URL(asRedirect(s.step));
  assert.equal(callback.searchParams.get('error'), null, `no error at the RP: ${callback}`);
  return oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: s.started.verifier, expectedState: s.started.state });
}

interface ScimResponse {
  status: number;
  type: string | null;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- SCIM resources, read field by field
  json: Record<string, any>;
}

async function scim(method: string, pathname: string, body?: unknown, options: { token?: string | null; connection?: string; contentType?: string; raw?: string } = {}): Promise<ScimResponse> {
  const headers: Record<string, string> = {};
  const token = options.token === undefined ? acmeToken : options.token;
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined || options.raw !== undefined) headers['content-type'] = options.contentType ?? 'application/scim+json';
  const res = await fetch(`${server.issuer}/scim/v2/${options.connection ?? 'acme'}${pathname}`, { method, headers, body: options.raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type'), headers: res.headers, json: text ? JSON.parse(text) : {} };
}

function assertScimError(res: ScimResponse, status: number, scimType?: string) {
  assert.equal(res.status, status, `HTTP ${status}, got ${res.status}: ${JSON.stringify(res.json)}`);
  assert.match(res.type ?? '', /^application\/scim\+json/);
  assert.deepEqual(res.json.schemas, [ERROR]);
  assert.equal(res.json.status, String(status), 'status is a string in the body too');
  assert.equal(res.json.scimType, scimType);
  assert.equal(typeof res.json.detail, 'string');
}

const newUser = (userName: string, extra: Record<string, unknown> = {}) => ({
  schemas: [USER],
  userName,
  name: { givenName: 'Test', familyName: 'User' },
  emails: [{ value: userName, type: 'work', primary: true }],
  ...extra,
});

async function createUser(userName: string, extra: Record<string, unknown> = {}) {
  const res = await scim('POST', '/Users', newUser(userName, extra));
  assert.equal(res.status, 201, JSON.stringify(res.json));
  return res.json;
}

async function waitForAudit(type: string, match: (a: AuditLine) => boolean): Promise<AuditLine> {
  for (let i = 0; i < 50; i++) {
    const found = audits(server, type).find(match);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no ${type} audit`);
}

async function addConnections(target: TestServer) {
  await target.cli(['saml', 'add', '--name', 'acme', '--metadata', path.join(tmp, 'acme.xml'), '--domains', 'acme.test', '--map', path.join(tmp, 'map.json')]);
  await target.cli(['saml', 'add', '--name', 'other', '--metadata', path.join(tmp, 'other.xml'), '--domains', 'other.test']);
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-scim-test-'));
  [idpKey, otherKey] = await Promise.all([generateSigningCredentials('Acme IdP'), generateSigningCredentials('Other IdP')]);
  fs.writeFileSync(path.join(tmp, 'acme.xml'), idpMetadata(IDP_ENTITY, IDP_ENTITY.replace('/metadata', '/sso'), idpKey.certificatePem));
  fs.writeFileSync(path.join(tmp, 'other.xml'), idpMetadata(OTHER_ENTITY, OTHER_ENTITY.replace('/metadata', '/sso'), otherKey.certificatePem));
  fs.writeFileSync(path.join(tmp, 'map.json'), JSON.stringify({ groups: { Engineering: ['developer'], Admins: ['admin'] }, default: ['member'], drop_unmapped: true }));
  server = await startServer();
  const created = (await server.cli(['clients', 'create', '--id', 'app', '--first-party', '--redirect-uri', REDIRECT, '--scope', 'openid email profile roles offline_access'])) as { client_secret: string };
  rp = await oidc.discovery(new URL(server.issuer), 'app', created.client_secret, undefined, insecure);
  await addConnections(server);
  acmeToken = ((await server.cli(['saml', 'scim-token', 'acme'])) as { token: string }).token;
  otherToken = ((await server.cli(['saml', 'scim-token', 'other'])) as { token: string }).token;
});

after(async () => {
  await server?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('the token and the discovery endpoints', () => {
  test('saml scim-token prints a token once; a new one replaces it', async () => {
    const first = (await server.cli(['saml', 'scim-token', 'other'])) as Record<string, string>;
    assert.equal(first.connection, 'other');
    assert.equal(first.scim_base_url, `${server.issuer}/scim/v2/other`);
    assert.match(first.token!, /^lkscim_[A-Za-z0-9_-]{43}$/);
    assert.equal((await scim('GET', '/Users', undefined, { connection: 'other', token: first.token })).status, 200);
    const second = (await server.cli(['saml', 'scim-token', 'other'])) as Record<string, string>;
    assert.notEqual(second.token, first.token);
    assertScimError(await scim('GET', '/Users', undefined, { connection: 'other', token: first.token }), 401);
    assertScimError(await scim('GET', '/Users', undefined, { connection: 'other', token: otherToken }), 401);
    otherToken = second.token!;
    assert.equal((await scim('GET', '/Users', undefined, { connection: 'other' , token: otherToken })).status, 200);
    const missing = await server.cliRaw(['saml', 'scim-token', 'nope']);
    assert.equal(missing.code, 1);
    assert.ok(!server.logs.join('').includes(second.token!), 'the token is never logged');
  });

  test('ServiceProviderConfig, Schemas and ResourceTypes, as application/scim+json', async () => {
    const spc = await scim('GET', '/ServiceProviderConfig');
    assert.equal(spc.status, 200);
    assert.match(spc.type!, /^application\/scim\+json/);
    assert.equal(spc.json.patch.supported, true);
    assert.equal(spc.json.filter.supported, true);
    assert.equal(spc.json.bulk.supported, false);
    assert.equal(spc.json.authenticationSchemes[0].type, 'oauthbearertoken');
    const schemas = await scim('GET', '/Schemas');
    assert.deepEqual(schemas.json.schemas, [LIST]);
    assert.deepEqual(schemas.json.Resources.map((s: { id: string }) => s.id), [USER, GROUP]);
    const user = await scim('GET', `/Schemas/${USER}`);
    const userName = user.json.attributes.find((a: { name: string }) => a.name === 'userName');
    assert.equal(userName.uniqueness, 'server');
    assert.match(userName.description, /NameID/);
    const types = await scim('GET', '/ResourceTypes');
    assert.deepEqual(types.json.Resources.map((t: { endpoint: string }) => t.endpoint), ['/Users', '/Groups']);
    assert.equal((await scim('GET', '/ResourceTypes/Group')).json.schema, GROUP);
    assertScimError(await scim('GET', '/ResourceTypes/Nope'), 404);
    assertScimError(await scim('GET', '/Bulk'), 404);
  });
});

describe('authentication', () => {
  test('a missing or wrong token, or another connection’s, is a 401 SCIM error and is audited', async () => {
    const missing = await scim('GET', '/Users', undefined, { token: null });
    assertScimError(missing, 401);
    assert.match(missing.headers.get('www-authenticate')!, /^Bearer/);
    assertScimError(await scim('GET', '/Users', undefined, { token: 'lkscim_' + 'A'.repeat(43) }), 401);
    assertScimError(await scim('GET', '/Users', undefined, { token: otherToken }), 401, undefined);
    assertScimError(await scim('GET', '/Users', undefined, { connection: 'other', token: acmeToken }), 401);
    assertScimError(await scim('GET', '/Users', undefined, { connection: 'nosuch' }), 401);
    assertScimError(await scim('POST', '/Users', newUser('mallory@acme.test'), { token: otherToken }), 401);
    assert.equal((await scim('GET', '/Users?filter=' + encodeURIComponent('userName eq "mallory@acme.test"'))).json.totalResults, 0, 'nothing was created');
    await waitForAudit('scim.auth_failed', (a) => a.data.reason === 'missing_token');
    await waitForAudit('scim.auth_failed', (a) => a.data.reason === 'invalid_token' && a.data.connection === 'other');

    // A user of acme is not a resource of other, even with other's valid token.
    const u = await createUser('isolated@acme.test');
    assertScimError(await scim('GET', `/Users/${u.id}`, undefined, { connection: 'other', token: otherToken }), 404);
    assertScimError(await scim('PATCH', `/Users/${u.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'active', value: false }] }, { connection: 'other', token: otherToken }), 404);
    assertScimError(await scim('DELETE', `/Users/${u.id}`, undefined, { connection: 'other', token: otherToken }), 404);
    assert.equal((await scim('GET', `/Users/${u.id}`)).json.active, true);
    // Nor can other put acme's user in one of its groups (groups grant roles).
    const g = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'Admins', members: [{ value: u.id }] }, { connection: 'other', token: otherToken });
    assertScimError(g, 400, 'invalidValue');
  });

  test('bad tokens are limited per IP before the comparison: requests in flight at once cannot pass the budget', async (t) => {
    const limited = await startServer({ SCIM_RATE_LIMIT_PER_IP: '5' });
    t.after(() => limited.stop());
    await addConnections(limited);
    const good = ((await limited.cli(['saml', 'scim-token', 'acme'])) as { token: string }).token;
    const call = (token: string) => fetch(`${limited.issuer}/scim/v2/acme/Users`, { headers: { authorization: `Bearer ${token}` } });
    // A right token gives its point back: many good requests never exhaust the budget.
    for (let i = 0; i < 8; i++) assert.equal((await call(good)).status, 200);
    const wrong = 'lkscim_' + 'B'.repeat(43);
    const results = await Promise.all(Array.from({ length: 30 }, () => call(wrong)));
    const statuses = results.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 401).length, 5, `exactly the budget is compared: ${statuses.join(',')}`);
    assert.equal(statuses.filter((s) => s === 429).length, 25);
    const refused = results.find((r) => r.status === 429)!;
    assert.ok(Number(refused.headers.get('retry-after')) > 0);
    const body = await refused.json();
    assert.deepEqual(body.schemas, [ERROR]);
    assert.equal(body.status, '429');
    // The IP is out of budget: even the right token is not compared now.
    assert.equal((await call(good)).status, 429);
  });
});

describe('users', () => {
  test('a SCIM-created user is the user the SAML sign-in finds; SCIM groups feed the role map', async () => {
    const created = await scim('POST', '/Users', newUser('alice@acme.test', { externalId: 'okta-00u1', displayName: 'Alice Example' }));
    assert.equal(created.status, 201);
    assert.match(created.type!, /^application\/scim\+json/);
    const alice = created.json;
    assert.equal(created.headers.get('location'), `${server.issuer}/scim/v2/acme/Users/${alice.id}`);
    assert.deepEqual(alice.schemas, [USER]);
    assert.equal(alice.userName, 'alice@acme.test');
    assert.equal(alice.externalId, 'okta-00u1');
    assert.equal(alice.displayName, 'Alice Example');
    assert.deepEqual(alice.emails, [{ value: 'alice@acme.test', type: 'work', primary: true }]);
    assert.equal(alice.active, true);
    assert.equal(alice.meta.resourceType, 'User');
    await waitForAudit('scim.user_created', (a) => a.user_id === alice.id && a.data.connection === 'acme');

    const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'Engineering', members: [{ value: alice.id }] });
    assert.equal(group.status, 201);
    assert.deepEqual(group.json.members.map((m: { value: string; display: string }) => [m.value, m.display]), [[alice.id, 'alice@acme.test']]);
    assert.deepEqual((await scim('GET', `/Users/${alice.id}`)).json.groups.map((g: { display: string }) => g.display), ['Engineering']);
    const rolesAudit = await waitForAudit('user.roles_changed', (a) => a.user_id === alice.id && (a.data.added as string[]).includes('developer'));
    assert.equal(rolesAudit.data.via, 'scim');

    // The IdP's assertion carries no groups: the SCIM group still grants its role.
    const tokens = await tokensFrom(await samlSignIn('alice@acme.test'));
    const claims = tokens.claims()!;
    assert.equal(claims.sub, alice.id, 'the SAML sign-in found the SCIM user');
    assert.equal(claims.email, 'alice@acme.test');
    assert.equal(claims.email_verified, true, 'acme owns the domain');
    assert.deepEqual(claims.roles, ['developer', 'member']);
    assert.deepEqual(claims.groups, ['Engineering']);
    assert.equal(audits(server, 'user.created').filter((a) => a.user_id === alice.id).length, 0, 'JIT created nobody');
    // And a JIT user is a SCIM resource of its connection: the client finds it before creating.
    const jit = (await tokensFrom(await samlSignIn('jit@acme.test'))).claims()!;
    const found = await scim('GET', `/Users?filter=${encodeURIComponent('userName eq "jit@acme.test"')}`);
    assert.deepEqual(found.json.Resources.map((u: { id: string }) => u.id), [jit.sub]);
    assertScimError(await scim('POST', '/Users', newUser('JIT@acme.test')), 409, 'uniqueness');
  });

  test('active: false revokes sessions and refresh tokens at once and refuses SAML sign-in; active: true does not bring them back', async () => {
    const bob = await createUser('bob@acme.test');
    const browser = new Browser();
    const first = await tokensFrom(await samlSignIn('bob@acme.test', 'bob@acme.test', { scope: 'openid email offline_access', prompt: 'consent' }, browser));
    assert.equal(first.claims()!.sub, bob.id);
    assert.ok(first.refresh_token, 'a refresh token');
    const refreshed = await oidc.refreshTokenGrant(rp, first.refresh_token!);
    // The browser session is alive: prompt=none gets a code.
    const silent = await startAuthorization(browser, rp, { scope: 'openid email', prompt: 'none' });
    assert.equal(new URL(asRedirect(silent.step)).searchParams.get('error'), null);

    // Entra ID's shape: a string boolean in a path-less replace.
    const off = await scim('PATCH', `/Users/${bob.id}`, { schemas: [PATCH], Operations: [{ op: 'Replace', value: { active: 'False' } }] });
    assert.equal(off.status, 200, JSON.stringify(off.json));
    assert.equal(off.json.active, false);
    const audit = await waitForAudit('scim.user_deactivated', (a) => a.user_id === bob.id);
    assert.ok((audit.data.sessions as number) >= 1, 'the browser session was revoked');

    await assert.rejects(oidc.refreshTokenGrant(rp, refreshed.refresh_token!), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant');
    const afterOff = await startAuthorization(browser, rp, { scope: 'openid email', prompt: 'none' });
    assert.equal(new URL(asRedirect(afterOff.step)).searchParams.get('error'), 'login_required', 'the session is gone');

    const refusedSso = await samlSignIn('bob@acme.test');
    const page = asPage(refusedSso.step);
    assert.equal(page.status, 403);
    assert.match(page.doc.querySelector('main')!.text, /deactivated/);

    // Reactivated (Okta's shape): sign-in works again, but what was revoked stays revoked.
    const on = await scim('PATCH', `/Users/${bob.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'active', value: true }] });
    assert.equal(on.json.active, true);
    await waitForAudit('scim.user_reactivated', (a) => a.user_id === bob.id);
    await assert.rejects(oidc.refreshTokenGrant(rp, refreshed.refresh_token!), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant', 'revoked, not just refused');
    const again = await startAuthorization(browser, rp, { scope: 'openid email', prompt: 'none' });
    assert.equal(new URL(asRedirect(again.step)).searchParams.get('error'), 'login_required');
    assert.equal((await tokensFrom(await samlSignIn('bob@acme.test'))).claims()!.sub, bob.id);

    // PUT without `active` keeps the status; PUT with active: false deactivates too.
    const put = await scim('PUT', `/Users/${bob.id}`, { ...newUser('bob@acme.test'), active: false });
    assert.equal(put.json.active, false);
    const putAgain = await scim('PUT', `/Users/${bob.id}`, newUser('bob@acme.test'));
    assert.equal(putAgain.json.active, false, 'an omitted active is not a reactivation');
  });

  test('filter and paging', async () => {
    const ids: string[] = [];
    for (let i = 1; i <= 5; i++) ids.push((await createUser(`page${i}@acme.test`, { externalId: `ext-page-${i}` })).id);
    // Another connection's users are not in acme's lists.
    await scim('POST', '/Users', newUser('page9@other.test'), { connection: 'other', token: otherToken });

    const list = (q: string) => scim('GET', `/Users?${q}`);
    const all = await list('count=200');
    assert.deepEqual(all.json.schemas, [LIST]);
    const total = all.json.totalResults as number;
    assert.equal(all.json.Resources.length, total);
    assert.ok(all.json.Resources.every((u: { userName: string }) => u.userName.endsWith('@acme.test')));

    const filter = encodeURIComponent('userName sw "page"');
    assertScimError(await list(`filter=${filter}`), 400, 'invalidFilter');
    const byName = await list(`filter=${encodeURIComponent('userName eq "PAGE3@acme.test"')}`);
    assert.equal(byName.json.totalResults, 1, 'userName is not case-exact');
    assert.equal(byName.json.Resources[0].id, ids[2]);
    assert.deepEqual((await list(`filter=${encodeURIComponent('externalId eq "ext-page-4"')}`)).json.Resources.map((u: { id: string }) => u.id), [ids[3]]);
    assert.equal((await list(`filter=${encodeURIComponent('externalId eq "EXT-PAGE-4"')}`)).json.totalResults, 0, 'externalId is case-exact');
    assert.deepEqual((await list(`filter=${encodeURIComponent('emails.value eq "page5@acme.test"')}`)).json.Resources.map((u: { id: string }) => u.id), [ids[4]]);
    assert.deepEqual((await list(`filter=${encodeURIComponent('emails[value eq "page5@acme.test"] and active eq true')}`)).json.Resources.map((u: { id: string }) => u.id), [ids[4]]);
    assert.equal((await list(`filter=${encodeURIComponent('userName eq "page9@other.test"')}`)).json.totalResults, 0);
    assertScimError(await list(`filter=${encodeURIComponent('nickName eq "x"')}`), 400, 'invalidFilter');
    assertScimError(await list(`filter=${encodeURIComponent('userName eq "x" or userName eq "y"')}`), 400, 'invalidFilter');

    const page = await list('startIndex=2&count=2');
    assert.equal(page.json.totalResults, total);
    assert.equal(page.json.startIndex, 2);
    assert.equal(page.json.itemsPerPage, 2);
    assert.deepEqual(page.json.Resources.map((u: { id: string }) => u.id), all.json.Resources.slice(1, 3).map((u: { id: string }) => u.id));
    const tail = await list(`startIndex=${total}&count=10`);
    assert.equal(tail.json.Resources.length, 1);
    const none = await list('count=0');
    assert.equal(none.json.totalResults, total);
    assert.equal(none.json.Resources.length, 0);
    assert.equal((await list('startIndex=0&count=1')).json.startIndex, 1, 'startIndex below 1 is 1');
    assertScimError(await list('count=ten'), 400, 'invalidValue');
  });

  test('PUT replaces and PATCH changes (Entra ID and Okta shapes); read-only attributes are refused', async () => {
    const carol = await createUser('carol@acme.test', { externalId: 'c-1' });
    const put = await scim('PUT', `/Users/${carol.id}`, {
      schemas: [USER],
      userName: 'carol@acme.test',
      name: { givenName: 'Carol', familyName: 'Jones' },
      emails: [{ value: 'carol.jones@acme.test', primary: true }],
    });
    assert.equal(put.status, 200);
    assert.equal(put.json.displayName, 'Carol Jones', 'the name is made of its parts');
    assert.deepEqual(put.json.emails.map((e: { value: string }) => e.value), ['carol.jones@acme.test']);
    assert.equal(put.json.externalId, undefined, 'PUT replaces: an omitted externalId is cleared');

    const patched = await scim('PATCH', `/Users/${carol.id}`, {
      schemas: [PATCH],
      Operations: [
        { op: 'Replace', path: 'name.familyName', value: 'Smith' },
        { op: 'Replace', path: 'emails[type eq "work"].value', value: 'carol.smith@acme.test' },
        { op: 'Add', path: 'externalId', value: 'c-2' },
        { op: 'Add', path: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department', value: 'Ops' },
      ],
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.json));
    assert.deepEqual(patched.json.name, { formatted: 'Carol Smith', givenName: 'Carol', familyName: 'Smith' });
    assert.equal(patched.json.displayName, 'Carol Smith');
    assert.deepEqual(patched.json.emails.map((e: { value: string }) => e.value), ['carol.smith@acme.test']);
    assert.equal(patched.json.externalId, 'c-2');
    const okta = await scim('PATCH', `/Users/${carol.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { displayName: 'Caz', 'name.givenName': 'Caroline' } }, { op: 'remove', path: 'externalId' }] });
    assert.equal(okta.json.displayName, 'Caz');
    assert.equal(okta.json.name.givenName, 'Caroline');
    assert.equal(okta.json.externalId, undefined);
    const updated = await waitForAudit('scim.user_updated', (a) => a.user_id === carol.id && (a.data.changed as string[]).includes('emails'));
    assert.equal(JSON.stringify(updated.data).includes('carol.smith'), false, 'the audit names attributes, not values');
    // The renamed user signs in with the same link (userName unchanged) and the new address.
    assert.equal((await tokensFrom(await samlSignIn('carol.smith@acme.test', 'carol@acme.test'))).claims()!.sub, carol.id);

    assertScimError(await scim('PATCH', `/Users/${carol.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'groups', value: [{ value: carol.id }] }] }), 400, 'mutability');
    // Without emails, a userName that is an address is the address (as a NameID is in JIT)…
    const noEmails = await scim('PATCH', `/Users/${carol.id}`, { schemas: [PATCH], Operations: [{ op: 'remove', path: 'emails' }] });
    assert.deepEqual(noEmails.json.emails.map((e: { value: string }) => e.value), ['carol@acme.test']);
    // …and a user whose userName is not one cannot lose its address.
    const opaque = await createUser('00u-opaque-id', { emails: [{ value: 'opaque@acme.test' }] });
    assertScimError(await scim('PATCH', `/Users/${opaque.id}`, { schemas: [PATCH], Operations: [{ op: 'remove', path: 'emails' }] }), 400, 'invalidValue');
    assertScimError(await scim('PATCH', `/Users/${carol.id}`, { schemas: [PATCH], Operations: [{ op: 'remove' }] }), 400, 'noTarget');
    assertScimError(await scim('PATCH', `/Users/${carol.id}`, { schemas: [PATCH], Operations: [{ op: 'move', path: 'displayName', value: 'x' }] }), 400, 'invalidSyntax');
    assertScimError(await scim('PATCH', `/Users/${carol.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'emails[type eq', value: 'x' }] }), 400, 'invalidPath');
    assertScimError(await scim('PATCH', `/Users/${carol.id}`, { schemas: [USER], Operations: [] }), 400, 'invalidSyntax');
  });

  test('group PATCH and PUT recompute roles for those who join or leave', async () => {
    const dan = await createUser('dan@acme.test');
    const erin = await createUser('erin@acme.test');
    const admins = (await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'Admins', externalId: 'g-admins' })).json;
    const add = await scim('PATCH', `/Groups/${admins.id}`, { schemas: [PATCH], Operations: [{ op: 'Add', path: 'members', value: [{ value: dan.id }, { value: erin.id }] }] });
    assert.equal(add.status, 200);
    assert.equal(add.json.members.length, 2);
    await waitForAudit('user.roles_changed', (a) => a.user_id === erin.id && (a.data.added as string[]).includes('admin'));
    const rolesOf = async (email: string) => (await tokensFrom(await samlSignIn(email))).claims()!.roles;
    assert.deepEqual(await rolesOf('erin@acme.test'), ['admin', 'member']);

    // Entra ID removes with a value list, Okta with a value filter.
    await scim('PATCH', `/Groups/${admins.id}`, { schemas: [PATCH], Operations: [{ op: 'Remove', path: 'members', value: [{ value: dan.id }] }] });
    const removed = await scim('PATCH', `/Groups/${admins.id}`, { schemas: [PATCH], Operations: [{ op: 'remove', path: `members[value eq "${erin.id}"]` }] });
    assert.deepEqual(removed.json.members, []);
    await waitForAudit('user.roles_changed', (a) => a.user_id === erin.id && (a.data.removed as string[]).includes('admin'));
    assert.deepEqual(await rolesOf('erin@acme.test'), ['member']);

    const put = await scim('PUT', `/Groups/${admins.id}`, { schemas: [GROUP], displayName: 'Admins', members: [{ value: erin.id }] });
    assert.deepEqual(put.json.members.map((m: { value: string }) => m.value), [erin.id]);
    assert.equal(put.json.externalId, undefined);
    const listed = await scim('GET', `/Groups?filter=${encodeURIComponent(`displayName eq "admins" and members[value eq "${erin.id}"]`)}&excludedAttributes=members`);
    assert.equal(listed.json.totalResults, 1);
    assert.equal(listed.json.Resources[0].members, undefined, 'excludedAttributes=members');
    assertScimError(await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'ADMINS' }), 409, 'uniqueness');

    assert.equal((await scim('DELETE', `/Groups/${admins.id}`)).status, 204);
    assertScimError(await scim('GET', `/Groups/${admins.id}`), 404);
    assert.deepEqual(await rolesOf('erin@acme.test'), ['member'], 'the deleted group no longer grants admin');
    await waitForAudit('scim.group_deleted', (a) => a.data.group === admins.id);
  });

  test('DELETE removes the user; an account that was only this connection’s is purged', async () => {
    const fred = await createUser('fred@acme.test');
    const sub = (await tokensFrom(await samlSignIn('fred@acme.test'))).claims()!.sub;
    assert.equal(sub, fred.id);
    const res = await scim('DELETE', `/Users/${fred.id}`);
    assert.equal(res.status, 204);
    assertScimError(await scim('GET', `/Users/${fred.id}`), 404);
    assertScimError(await scim('DELETE', `/Users/${fred.id}`), 404);
    await waitForAudit('scim.user_deleted', (a) => a.data.purged === true);
    // A later sign-in through the IdP is a new account.
    const again = (await tokensFrom(await samlSignIn('fred@acme.test'))).claims()!.sub;
    assert.notEqual(again, fred.id);
  });
});

describe('errors', () => {
  test('conflicts, bad bodies, NUL, oversized bodies and unknown ids answer in SCIM’s error format', async () => {
    await createUser('gina@acme.test');
    assertScimError(await scim('POST', '/Users', newUser('GINA@acme.test', { emails: [{ value: 'gina2@acme.test' }] })), 409, 'uniqueness');
    // A local account is never taken over by email.
    await server.cli(['users', 'create', '--email', 'local@acme.test', '--password', 'a home-grown secret here', '--verified']);
    const taken = await scim('POST', '/Users', newUser('local@acme.test'));
    assertScimError(taken, 409, 'uniqueness');
    assert.match(taken.json.detail, /not linked/);

    assertScimError(await scim('POST', '/Users', undefined, { raw: '{"schemas": [' }), 400, 'invalidSyntax');
    assertScimError(await scim('POST', '/Users', { userName: 'x@acme.test' }), 400, 'invalidSyntax');
    assertScimError(await scim('POST', '/Users', { schemas: [USER], userName: 'no-email' }), 400, 'invalidValue');
    assertScimError(await scim('POST', '/Users', { schemas: [USER], userName: '' }), 400, 'invalidValue');
    assertScimError(await scim('POST', '/Users', [newUser('arr@acme.test')]), 400, 'invalidSyntax');
    assertScimError(await scim('POST', '/Users', newUser('nul\u0000@acme.test')), 400, 'invalidValue');
    assertScimError(await scim('POST', '/Users', newUser('form@acme.test'), { contentType: 'application/x-www-form-urlencoded' }), 415);
    const big = await scim('POST', '/Users', newUser('big@acme.test', { displayName: 'x'.repeat(1_100_000) }));
    assertScimError(big, 413);
    assertScimError(await scim('GET', '/Users/not-a-uuid'), 404);
    assertScimError(await scim('GET', `/Users/${crypto.randomUUID()}`), 404);
    assertScimError(await scim('PUT', `/Groups/${crypto.randomUUID()}`, { schemas: [GROUP], displayName: 'x' }), 404);
    assertScimError(await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'Ghosts', members: [{ value: crypto.randomUUID() }] }), 400, 'invalidValue');
    assertScimError(await scim('DELETE', '/ServiceProviderConfig'), 404);
    // Nothing leaks: no stack, no SQL.
    assert.ok(!server.logs.join('').includes('"event":"scim.error"'), 'no request failed on our side');
  });
});
