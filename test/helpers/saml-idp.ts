// A real SAML 2.0 IdP for e2e tests: Debian's SimpleSAMLphp 1.19 (`apt-get install simplesamlphp
// php-cli php-xml`), served by `php -S` on loopback from this process, with its own config dir
// (SIMPLESAMLPHP_CONFIG_DIR) in a temp directory, users of exampleauth:UserPass, and a signing
// key and certificate made here. It is deliberately not samlify: the SP under test must accept
// what an independent implementation produces. Users, SPs and the AuthnContextClassRef live in
// JSON/XML files the PHP config reads on every request, so a test changes them between sign-ins
// without restarting the server.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import 'reflect-metadata'; // @peculiar/x509's dependency injection needs it loaded first
import * as x509 from '@peculiar/x509';
import { asPage, isPage, type Browser, type Page } from './browser.ts';
import { freePort, stopChild, track } from './server.ts';

export const SIMPLESAMLPHP_DIR = '/usr/share/simplesamlphp';
export const PHP = '/usr/bin/php';
/** Without php and SimpleSAMLphp a suite is skipped on a developer machine; in CI it must run (and fail). */
export const skipWithoutSimpleSamlPhp =
  !(fs.existsSync(PHP) && fs.existsSync(path.join(SIMPLESAMLPHP_DIR, 'www/index.php'))) && !process.env.CI
    ? 'php and simplesamlphp are not installed (apt-get install simplesamlphp php-cli php-xml)'
    : false;

export const NAMEID_EMAIL = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';
export const NAMEID_PERSISTENT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent';
const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
const ATTRNAME_BASIC = 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic';

export type SamlAttributes = Record<string, string[]>;

export interface SamlIdpUser {
  username: string;
  password: string;
  /** e.g. { mail: ['alice@acme.test'], displayName: ['Alice'], groups: ['Engineering'] } */
  attributes: SamlAttributes;
}

/** Per-SP switches of SimpleSAMLphp's saml20-sp-remote metadata, on top of what the SP's metadata says. */
export interface SpOptions {
  /** Sign the Response element (default true). */
  signResponse?: boolean;
  /** Sign the Assertion (default: the SP metadata's WantAssertionsSigned, else true). */
  signAssertion?: boolean;
  /**
   * Encrypt the assertion to the SP's encryption certificate (default false). SimpleSAMLphp 1.19
   * always uses AES-128-CBC for the data and RSA-OAEP-MGF1P for the key with a certificate.
   */
  encryptAssertion?: boolean;
  /** Assertion and SubjectConfirmationData lifetime in seconds (SimpleSAMLphp's default 300). */
  assertionLifetime?: number;
}

export interface SamlIdp {
  /** http://127.0.0.1:PORT */
  baseUrl: string;
  entityId: string;
  /** HTTP-Redirect (and POST) SingleSignOnService. */
  ssoUrl: string;
  metadataUrl: string;
  /** Starts an unsolicited (IdP-initiated) sign-in at the SP: the response has no InResponseTo. */
  idpInitiatedUrl(spEntityId: string, relayState?: string): string;
  /** The IdP's metadata as SimpleSAMLphp serves it (what `latchkey saml add --metadata FILE` reads). */
  metadataXml: string;
  certificatePem: string;
  /** PKCS#8 PEM of the signing key: for the attack generator's re-signing. */
  privateKeyPem: string;
  /** PHP's stdout/stderr (SimpleSAMLphp logs through error_log there). */
  logs: string[];
  /** Registers an SP from its metadata XML (e.g. Latchkey's /saml/NAME/metadata). Returns its entity ID. */
  addServiceProvider(spMetadataXml: string, options?: SpOptions): string;
  addUser(user: SamlIdpUser): void;
  setUserAttributes(username: string, attributes: SamlAttributes): void;
  /** AuthnContextClassRef of the next assertions (null: SimpleSAMLphp's default, ac:classes:Password on http). */
  setAuthnContextClassRef(classRef: string | null): void;
  stop(): Promise<void>;
}

export interface SigningCredentials {
  privateKeyPem: string;
  certificatePem: string;
}

/** A fresh RSA-2048 key and self-signed certificate (SHA-256), valid from an hour ago for `days`. */
export async function generateSigningCredentials(commonName = 'Test SAML IdP', days = 365): Promise<SigningCredentials> {
  const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  const keys = (await crypto.webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const notBefore = new Date(Date.now() - 3600_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: crypto.randomBytes(8).toString('hex').replace(/^[89a-f]/, '1'),
      name: `CN=${commonName}`,
      notBefore,
      notAfter: new Date(notBefore.getTime() + days * 86400_000),
      signingAlgorithm: algorithm,
      keys,
      extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
    },
    crypto.webcrypto as unknown as Crypto,
  );
  const privateKeyPem = crypto.KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
  return { privateKeyPem, certificatePem: cert.toString('pem') };
}

/** A PHP single-quoted string literal. */
function phpString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function writeJson(file: string, value: unknown) {
  // Write-then-rename: PHP may read the file at any moment.
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(value, null, 2));
  fs.renameSync(tmp, file);
}

async function waitReady(url: string, child: ChildProcess, logs: string[], spawnError: () => Error | undefined) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const failed = spawnError();
    if (failed) throw new Error(`cannot run ${PHP}: ${failed.message}`);
    if (child.exitCode !== null) throw new Error(`php exited with ${child.exitCode}:\n${logs.join('')}`);
    try {
      const res = await fetch(url);
      if (res.ok) return await res.text();
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`SimpleSAMLphp did not become ready at ${url}:\n${logs.join('')}`);
}

/**
 * Starts SimpleSAMLphp as a SAML 2.0 IdP on 127.0.0.1 (a free port), signing Responses and
 * Assertions with RSA-SHA256 and a key made here (or `credentials`). NameIDs: emailAddress from
 * `mail`, persistent as SimpleSAMLphp derives it (a salted hash of uid, SP and IdP); the SP's
 * NameIDPolicy picks, else the first NameIDFormat of the SP's metadata. Attributes go out with
 * the basic NameFormat under their own names (mail, displayName, groups, …, plus uid = the
 * username). stop() kills php and removes the temp directory.
 */
export async function startSamlIdp(
  options: {
    users?: SamlIdpUser[];
    credentials?: SigningCredentials;
    /**
     * Advertise WantAuthnRequestsSigned="true" and refuse unsigned requests from SPs whose
     * metadata does not say AuthnRequestsSigned="false" (default true). With false the metadata
     * says nothing about it, as many real IdPs' metadata does; an SP whose metadata says
     * AuthnRequestsSigned="true" has its requests' signatures checked either way.
     */
    wantAuthnRequestsSigned?: boolean;
  } = {},
): Promise<SamlIdp> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-saml-idp-'));
  const configDir = path.join(dir, 'config');
  const metadataDir = path.join(dir, 'metadata');
  const spDir = path.join(dir, 'sp');
  for (const d of [configDir, metadataDir, spDir, path.join(dir, 'cert'), path.join(dir, 'data'), path.join(dir, 'tmp'), path.join(dir, 'sessions'), path.join(dir, 'log')]) {
    fs.mkdirSync(d, { recursive: true });
  }
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const entityId = `${baseUrl}/saml2/idp/metadata.php`;
  const credentials = options.credentials ?? (await generateSigningCredentials(`SimpleSAMLphp test IdP ${port}`));
  fs.writeFileSync(path.join(dir, 'cert/idp.key'), credentials.privateKeyPem, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'cert/idp.crt'), credentials.certificatePem);

  const users = new Map<string, SamlIdpUser>();
  const spOverrides: Record<string, Record<string, unknown>> = {};
  const idpState: { authnContextClassRef: string | null } = { authnContextClassRef: null };
  const usersFile = path.join(dir, 'users.json');
  const spOverridesFile = path.join(dir, 'sp-overrides.json');
  const idpStateFile = path.join(dir, 'idp.json');
  const saveUsers = () =>
    writeJson(
      usersFile,
      Object.fromEntries([...users.values()].map((u) => [`${u.username}:${u.password}`, { uid: [u.username], ...u.attributes }])),
    );
  for (const user of options.users ?? []) {
    if (user.username.includes(':')) throw new Error('exampleauth:UserPass usernames cannot contain ":"');
    users.set(user.username, user);
  }
  saveUsers();
  writeJson(spOverridesFile, spOverrides);
  writeJson(idpStateFile, idpState);

  const secretSalt = crypto.randomBytes(24).toString('hex');
  fs.writeFileSync(
    path.join(configDir, 'config.php'),
    `<?php
// Generated by test/helpers/saml-idp.ts for one test IdP.
$config = [
    'baseurlpath' => ${phpString(`${baseUrl}/`)},
    'certdir' => ${phpString(path.join(dir, 'cert'))},
    'loggingdir' => ${phpString(path.join(dir, 'log'))},
    'datadir' => ${phpString(path.join(dir, 'data'))},
    'tempdir' => ${phpString(path.join(dir, 'tmp'))},
    'metadatadir' => ${phpString(metadataDir)},
    'secretsalt' => ${phpString(secretSalt)},
    'auth.adminpassword' => ${phpString(crypto.randomBytes(24).toString('hex'))},
    'technicalcontact_name' => 'Latchkey tests',
    'technicalcontact_email' => 'na@example.org',
    'timezone' => 'UTC',
    'admin.protectindexpage' => true,
    'admin.protectmetadata' => false,
    'admin.checkforupdates' => false,
    'enable.saml20-idp' => true,
    'enable.shib13-idp' => false,
    'enable.adfs-idp' => false,
    'module.enable' => ['exampleauth' => true, 'core' => true, 'saml' => true],
    'debug' => ['saml' => false, 'backtraces' => true, 'validatexml' => false],
    'showerrors' => true,
    'errorreporting' => false,
    'production' => true,
    'logging.level' => SimpleSAML\\Logger::WARNING,
    'logging.handler' => 'errorlog',
    'logging.format' => 'SimpleSAMLphp %level %trackid %msg',
    'store.type' => 'phpsession',
    'session.phpsession.savepath' => ${phpString(path.join(dir, 'sessions'))},
    'session.cookie.secure' => false,
    'session.cookie.samesite' => null,
    'language.cookie.secure' => false,
    'language.cookie.samesite' => null,
    'metadata.sources' => [['type' => 'flatfile']],
];
`,
  );
  fs.writeFileSync(
    path.join(configDir, 'authsources.php'),
    `<?php
// Users come from users.json ("username:password" => attributes), re-read on every request.
$users = json_decode(file_get_contents(${phpString(usersFile)}), true) ?: [];
$config = [
    'admin' => ['core:AdminPassword'],
    'test-users' => array_merge(['exampleauth:UserPass'], $users),
];
`,
  );
  fs.writeFileSync(
    path.join(metadataDir, 'saml20-idp-hosted.php'),
    `<?php
$idpState = json_decode(file_get_contents(${phpString(idpStateFile)}), true) ?: [];
$authproc = [
    // NameIDs offered for both formats the SP may ask for; the AuthnRequest's NameIDPolicy picks.
    10 => ['class' => 'saml:AttributeNameID', 'attribute' => 'mail', 'Format' => ${phpString(NAMEID_EMAIL)}],
    11 => ['class' => 'saml:PersistentNameID', 'attribute' => 'uid'],
];
if (!empty($idpState['authnContextClassRef'])) {
    $authproc[20] = ['class' => 'saml:AuthnContextClassRef', 'AuthnContextClassRef' => $idpState['authnContextClassRef']];
}
$metadata[${phpString(entityId)}] = [
    'host' => '__DEFAULT__',
    'privatekey' => 'idp.key',
    'certificate' => 'idp.crt',
    'auth' => 'test-users',
    'signature.algorithm' => ${phpString(RSA_SHA256)},
${options.wantAuthnRequestsSigned === false ? '' : "    'validate.authnrequest' => true,\n"}    'saml20.sign.response' => true,
    'saml20.sign.assertion' => true,
    'NameIDFormat' => [${phpString(NAMEID_EMAIL)}, ${phpString(NAMEID_PERSISTENT)}],
    'attributes.NameFormat' => ${phpString(ATTRNAME_BASIC)},
    'authproc' => $authproc,
];
`,
  );
  fs.writeFileSync(
    path.join(metadataDir, 'saml20-sp-remote.php'),
    `<?php
// Every SP registered by the test is an XML file in sp/, parsed by SimpleSAMLphp's own metadata
// parser (AuthnRequestsSigned -> validate.authnrequest, WantAssertionsSigned, keys, ACS).
$overrides = json_decode(file_get_contents(${phpString(spOverridesFile)}), true) ?: [];
foreach (glob(${phpString(spDir)} . '/*.xml') as $file) {
    foreach (\\SimpleSAML\\Metadata\\SAMLParser::parseDescriptorsString(file_get_contents($file)) as $entityId => $entity) {
        $sp = $entity->getMetadata20SP();
        if ($sp === null) {
            continue;
        }
        $metadata[$entityId] = array_merge($sp, $overrides[$entityId] ?? []);
    }
}
`,
  );

  const logs: string[] = [];
  // Tracked (server.ts): stopped when the test process exits or is interrupted, whatever happened.
  const child = track(spawn(PHP, ['-d', 'opcache.enable_cli=0', '-d', 'display_errors=stderr', '-S', `127.0.0.1:${port}`, '-t', path.join(SIMPLESAMLPHP_DIR, 'www')], {
    env: { ...process.env, SIMPLESAMLPHP_CONFIG_DIR: configDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  child.stdout!.on('data', (d) => logs.push(String(d)));
  child.stderr!.on('data', (d) => logs.push(String(d)));
  let spawnError: Error | undefined;
  child.on('error', (err) => (spawnError = err));
  const stop = async () => {
    // SIGTERM, then SIGKILL if php does not exit: never waits forever.
    if (!spawnError) await stopChild(child);
    fs.rmSync(dir, { recursive: true, force: true });
  };

  const metadataUrl = entityId;
  let metadataXml: string;
  try {
    metadataXml = await waitReady(metadataUrl, child, logs, () => spawnError);
    if (!metadataXml.includes('IDPSSODescriptor')) throw new Error(`unexpected IdP metadata:\n${metadataXml.slice(0, 1000)}\n${logs.join('')}`);
  } catch (err) {
    await stop();
    throw err;
  }

  let spCount = 0;
  return {
    baseUrl,
    entityId,
    ssoUrl: `${baseUrl}/saml2/idp/SSOService.php`,
    metadataUrl,
    idpInitiatedUrl(spEntityId, relayState) {
      const url = new URL(`${baseUrl}/saml2/idp/SSOService.php`);
      url.searchParams.set('spentityid', spEntityId);
      if (relayState !== undefined) url.searchParams.set('RelayState', relayState);
      return url.toString();
    },
    metadataXml,
    certificatePem: credentials.certificatePem,
    privateKeyPem: credentials.privateKeyPem,
    logs,
    addServiceProvider(spMetadataXml, spOptions = {}) {
      const match = /entityID\s*=\s*"([^"]+)"/.exec(spMetadataXml);
      if (!match) throw new Error(`no entityID in SP metadata:\n${spMetadataXml.slice(0, 500)}`);
      const spEntityId = match[1]!.replace(/&amp;/g, '&');
      const file = path.join(spDir, `sp-${++spCount}.xml`);
      fs.writeFileSync(`${file}.tmp`, spMetadataXml);
      fs.renameSync(`${file}.tmp`, file);
      const override: Record<string, unknown> = {};
      if (spOptions.signResponse !== undefined) override['saml20.sign.response'] = spOptions.signResponse;
      if (spOptions.signAssertion !== undefined) override['saml20.sign.assertion'] = spOptions.signAssertion;
      if (spOptions.encryptAssertion !== undefined) override['assertion.encryption'] = spOptions.encryptAssertion;
      if (spOptions.assertionLifetime !== undefined) override['assertion.lifetime'] = spOptions.assertionLifetime;
      spOverrides[spEntityId] = override;
      writeJson(spOverridesFile, spOverrides);
      return spEntityId;
    },
    addUser(user) {
      if (user.username.includes(':')) throw new Error('exampleauth:UserPass usernames cannot contain ":"');
      users.set(user.username, user);
      saveUsers();
    },
    setUserAttributes(username, attributes) {
      const user = users.get(username);
      if (!user) throw new Error(`no IdP user ${username}`);
      users.set(username, { ...user, attributes });
      saveUsers();
    },
    setAuthnContextClassRef(classRef) {
      idpState.authnContextClassRef = classRef;
      writeJson(idpStateFile, idpState);
    },
    stop,
  };
}

export interface IdpPost {
  /** Base64 SAMLResponse exactly as the IdP's auto-POST form carries it. */
  samlResponse: string;
  relayState: string | undefined;
  /** Where the form posts (the ACS). */
  acsUrl: string;
  /** The decoded Response XML. */
  xml: string;
}

function readPostForm(page: Page): IdpPost | undefined {
  const form = page.doc.querySelectorAll('form').find((f) => f.querySelector('input[name="SAMLResponse"]'));
  if (!form) return undefined;
  const samlResponse = form.querySelector('input[name="SAMLResponse"]')!.getAttribute('value') ?? '';
  const relayState = form.querySelector('input[name="RelayState"]')?.getAttribute('value');
  const acsUrl = new URL(form.getAttribute('action') ?? '', page.url).toString();
  return { samlResponse, relayState, acsUrl, xml: Buffer.from(samlResponse, 'base64').toString('utf8') };
}

function pageText(page: Page) {
  return `${page.url} (${page.status}): ${page.doc.querySelector('body')?.text.replace(/\s+/g, ' ').trim().slice(0, 600)}`;
}

/**
 * Walks the IdP with `browser`, starting at `redirectUrl` (where the SP sent the browser: the
 * SSO URL with SAMLRequest, RelayState, SigAlg, Signature): fills in the login form when the
 * IdP asks (an existing IdP session skips it, as single sign-on does) and returns the
 * auto-POST form's fields without posting them, so the test posts (or first tampers with) them.
 */
export async function walkIdpLogin(browser: Browser, redirectUrl: string, credentials: { username: string; password: string }): Promise<IdpPost> {
  const origin = new URL(redirectUrl).origin;
  let page = asPage(await browser.follow(redirectUrl, {}, origin));
  let post = readPostForm(page);
  if (post) return post;
  const login = page.doc.querySelector('form[name="f"]');
  if (!login || !login.querySelector('input[name="password"]')) throw new Error(`expected the IdP's login form, got ${pageText(page)}`);
  const result = await browser.submit(page, 'form[name="f"]', { username: credentials.username, password: credentials.password });
  if (!isPage(result)) throw new Error(`the IdP redirected to ${result.redirect} instead of posting a response`);
  page = result;
  post = readPostForm(page);
  if (!post) throw new Error(`the IdP did not answer with a SAMLResponse form: ${pageText(page)}`);
  return post;
}
