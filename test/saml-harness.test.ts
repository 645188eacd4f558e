// The SAML test harness itself, independent of Latchkey's SP: the SimpleSAMLphp IdP starts,
// serves metadata, validates signed AuthnRequests, signs assertions with SHA-256 that samlify and
// xml-crypto verify; and every forged response of the attack generator is the attack it claims
// to be (signature still valid over the original, forged content where a naive reader looks).
// The SP here is samlify (with the xmllint-wasm schema validator), standing in for Latchkey.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as samlify from 'samlify';
import { Browser, asPage } from './helpers/browser.ts';
import { NAMEID_EMAIL, NAMEID_PERSISTENT, generateSigningCredentials, skipWithoutSimpleSamlPhp, startSamlIdp, walkIdpLogin, type SamlIdp, type SigningCredentials } from './helpers/saml-idp.ts';
import * as attacks from './helpers/saml-attacks.ts';

const { validate } = createRequire(import.meta.url)('@authenio/samlify-xmllint-wasm') as { validate: (xml: string) => Promise<unknown> };
samlify.setSchemaValidator({ validate });

const SP_ENTITY = 'http://localhost:1/saml/acme';
const ACS = `${SP_ENTITY}/acs`;
const ALICE = { username: 'alice', password: 'alice-pass', attributes: { mail: ['alice@acme.test'], displayName: ['Alice Example'], groups: ['Engineering', 'Staff'] } };
// An address the attacker owns at the IdP, one suffix away from the victim's (comment injection).
const MALLORY = { username: 'mallory', password: 'mallory-pass', attributes: { mail: ['alice@acme.test.evil.com'], displayName: ['Mallory'], groups: [] } };
const EVIL = { nameId: 'ceo@acme.test', attributes: { mail: ['ceo@acme.test'], groups: ['Admins'] } };

let idp: SamlIdp;
let spKey: SigningCredentials;
let otherKey: SigningCredentials;
let sp: ReturnType<typeof samlify.ServiceProvider>;
let samlIdp: ReturnType<typeof samlify.IdentityProvider>;
let samlIdpForUnsignedSps: ReturnType<typeof samlify.IdentityProvider>;
/** A genuine response for alice, both Response and Assertion signed. */
let valid: { xml: string; requestId: string; assertionId: string; responseId: string };

function makeSp(entityID: string, key: SigningCredentials | undefined, nameIDFormat = [NAMEID_EMAIL, NAMEID_PERSISTENT]) {
  return samlify.ServiceProvider({
    entityID,
    assertionConsumerService: [{ Binding: samlify.Constants.namespace.binding.post, Location: `${entityID}/acs` }],
    wantAssertionsSigned: true,
    nameIDFormat,
    ...(key
      ? {
          authnRequestsSigned: true,
          privateKey: key.privateKeyPem,
          signingCert: key.certificatePem,
          requestSignatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
        }
      : { authnRequestsSigned: false }),
  });
}

function loginUrl(entity: ReturnType<typeof samlify.ServiceProvider>, relayState: string) {
  // samlify refuses to build an unsigned request for an IdP that advertises WantAuthnRequestsSigned.
  const target = entity.entityMeta.isAuthnRequestSigned() ? samlIdp : samlIdpForUnsignedSps;
  const { id, context } = entity.createLoginRequest(target, 'redirect', { relayState }) as { id: string; context: string };
  return { id, url: context };
}

async function signIn(user: { username: string; password: string }, relayState = 'relay-1', browser = new Browser(), entity = sp) {
  const { id, url } = loginUrl(entity, relayState);
  return { requestId: id, browser, ...(await walkIdpLogin(browser, url, user)) };
}

function attr(xml: string, re: RegExp): string | undefined {
  return re.exec(xml)?.[1];
}

describe('SAML test IdP (SimpleSAMLphp) and attack generator', { skip: skipWithoutSimpleSamlPhp }, () => {
  before(async () => {
    spKey = await generateSigningCredentials('test SP');
    otherKey = await generateSigningCredentials('another connection');
    idp = await startSamlIdp({ users: [ALICE, MALLORY] });
    sp = makeSp(SP_ENTITY, spKey);
    idp.addServiceProvider(sp.getMetadata());
    samlIdp = samlify.IdentityProvider({ metadata: idp.metadataXml });
    assert.match(idp.metadataXml, /WantAuthnRequestsSigned="true"/);
    samlIdpForUnsignedSps = samlify.IdentityProvider({ metadata: idp.metadataXml.replace('WantAuthnRequestsSigned="true"', 'WantAuthnRequestsSigned="false"') });
    const post = await signIn(ALICE);
    const xml = post.xml;
    valid = {
      xml,
      requestId: post.requestId,
      responseId: attr(xml, /<samlp:Response[^>]* ID="([^"]+)"/)!,
      assertionId: attr(xml, /<saml:Assertion[^>]* ID="([^"]+)"/)!,
    };
  });
  after(async () => {
    await idp?.stop();
  });

  describe('the IdP', () => {
    test('serves metadata with its entity ID, redirect SSO endpoint and the generated signing certificate', async () => {
      const res = await fetch(idp.metadataUrl);
      assert.equal(res.status, 200);
      const xml = await res.text();
      assert.match(xml, new RegExp(`entityID="${idp.entityId}"`));
      assert.match(xml, new RegExp(`SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="${idp.ssoUrl}"`));
      const certB64 = idp.certificatePem.replace(/-----[^-]+-----|\s/g, '');
      assert.ok(xml.includes(certB64), 'metadata carries the harness-generated certificate');
    });

    test('logs a user in and posts a Response to the ACS that samlify (schema + signature) accepts', async () => {
      const post = await signIn(ALICE, 'relay-samlify');
      assert.equal(post.acsUrl, ACS);
      assert.equal(post.relayState, 'relay-samlify');
      const { extract } = await sp.parseLoginResponse(samlIdp, 'post', { body: { SAMLResponse: post.samlResponse, RelayState: post.relayState } });
      assert.equal(extract.nameID, 'alice@acme.test');
      assert.equal(extract.issuer, idp.entityId);
      assert.equal(extract.audience, SP_ENTITY);
      assert.equal(extract.response?.inResponseTo, post.requestId);
      assert.equal(extract.response?.destination, ACS);
      assert.deepEqual(extract.attributes?.groups, ['Engineering', 'Staff']);
      assert.equal(extract.attributes?.displayName, 'Alice Example');
    });

    test('signs the Response and the Assertion with RSA-SHA256 that xml-crypto verifies against its certificate only', async () => {
      const checks = attacks.checkSignatures(valid.xml, idp.certificatePem);
      assert.deepEqual(
        checks.map((c) => [c.parent.localName, c.referenceId, c.valid]),
        [
          ['Response', valid.responseId, true],
          ['Assertion', valid.assertionId, true],
        ],
      );
      assert.match(valid.xml, /SignatureMethod Algorithm="http:\/\/www\.w3\.org\/2001\/04\/xmldsig-more#rsa-sha256"/);
      assert.match(valid.xml, /DigestMethod Algorithm="http:\/\/www\.w3\.org\/2001\/04\/xmlenc#sha256"/);
      assert.doesNotMatch(valid.xml, /rsa-sha1|xmldsig#sha1/);
      // The check can fail: another certificate does not verify them.
      assert.ok(attacks.checkSignatures(valid.xml, otherKey.certificatePem).every((c) => !c.valid));
      // Subject confirmation as the SP must check it.
      assert.match(valid.xml, new RegExp(`Recipient="${ACS}" InResponseTo="${valid.requestId}"`));
      assert.match(valid.xml, new RegExp(`<saml:Audience>${SP_ENTITY}</saml:Audience>`));
    });

    test('checks the AuthnRequest signature of an SP whose metadata says AuthnRequestsSigned', async () => {
      // Same entity ID, but this SP object does not sign: SimpleSAMLphp must refuse its request.
      const unsignedSp = makeSp(SP_ENTITY, undefined);
      const { url } = loginUrl(unsignedSp, 'r');
      const page = asPage(await new Browser().get(url));
      assert.ok(!page.doc.querySelector('form[name="f"]'), 'no login form for an unsigned request');
      assert.match(page.html, /no signature found on message/);
      // A signed request with a tampered RelayState fails the redirect-binding signature too.
      const signed = loginUrl(sp, 'original');
      const tampered = asPage(await new Browser().get(signed.url.replace('RelayState=original', 'RelayState=tampered')));
      assert.ok(!tampered.doc.querySelector('form[name="f"]'));
      assert.match(tampered.html, /Unable to validate signature on query string/);
    });

    test('an SP that does not sign its requests is served when its metadata says so', async () => {
      const plain = makeSp('http://localhost:1/saml/plain', undefined, [NAMEID_EMAIL]);
      idp.addServiceProvider(plain.getMetadata());
      const post = await signIn(ALICE, 'r', new Browser(), plain);
      assert.equal(post.acsUrl, 'http://localhost:1/saml/plain/acs');
      assert.match(post.xml, /<saml:Audience>http:\/\/localhost:1\/saml\/plain<\/saml:Audience>/);
    });

    test('a wrong password stays on the login form; the IdP session then gives single sign-on', async () => {
      const browser = new Browser();
      await assert.rejects(signIn({ username: 'alice', password: 'wrong' }, 'r', browser), /did not answer with a SAMLResponse form/);
      await signIn(ALICE, 'r', browser);
      // Second request from the same browser: no login form, straight to the auto-POST form.
      const { url } = loginUrl(sp, 'again');
      const page = asPage(await browser.get(url));
      assert.ok(page.doc.querySelector('input[name="SAMLResponse"]'));
    });

    test('NameID follows the request policy (persistent when the SP asks for it), attributes and AuthnContextClassRef follow the test', async () => {
      const persistentSp = makeSp('http://localhost:1/saml/persistent', undefined, [NAMEID_PERSISTENT]);
      idp.addServiceProvider(persistentSp.getMetadata());
      const first = await signIn(ALICE, 'r', new Browser(), persistentSp);
      const nameId = attr(first.xml, /Format="urn:oasis:names:tc:SAML:2\.0:nameid-format:persistent">([^<]+)</);
      assert.ok(nameId && !nameId.includes('@'), `opaque persistent NameID, got ${nameId}`);

      idp.setUserAttributes('alice', { ...ALICE.attributes, groups: ['Sales'] });
      idp.setAuthnContextClassRef('urn:example:ac:mfa');
      try {
        const second = await signIn(ALICE, 'r', new Browser(), persistentSp);
        assert.equal(attr(second.xml, /Format="urn:oasis:names:tc:SAML:2\.0:nameid-format:persistent">([^<]+)</), nameId, 'stable across sign-ins');
        assert.match(second.xml, /<saml:Attribute Name="groups"[^>]*><saml:AttributeValue xsi:type="xs:string">Sales<\/saml:AttributeValue><\/saml:Attribute>/);
        assert.match(second.xml, /<saml:AuthnContextClassRef>urn:example:ac:mfa<\/saml:AuthnContextClassRef>/);
      } finally {
        idp.setUserAttributes('alice', ALICE.attributes);
        idp.setAuthnContextClassRef(null);
      }
    });

    test('encrypts the assertion (AES-128-CBC, RSA-OAEP) to an SP that has an encryption certificate, when asked', async () => {
      const encKey = await generateSigningCredentials('test SP encryption');
      const entityID = 'http://localhost:1/saml/encrypted';
      const encSp = samlify.ServiceProvider({
        entityID,
        assertionConsumerService: [{ Binding: samlify.Constants.namespace.binding.post, Location: `${entityID}/acs` }],
        wantAssertionsSigned: true,
        authnRequestsSigned: true,
        privateKey: spKey.privateKeyPem,
        signingCert: spKey.certificatePem,
        requestSignatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
        isAssertionEncrypted: true,
        encPrivateKey: encKey.privateKeyPem,
        encryptCert: encKey.certificatePem,
      });
      idp.addServiceProvider(encSp.getMetadata(), { encryptAssertion: true });
      const post = await signIn(ALICE, 'r', new Browser(), encSp);
      assert.match(post.xml, /<saml:EncryptedAssertion>/);
      assert.match(post.xml, /EncryptionMethod Algorithm="http:\/\/www\.w3\.org\/2001\/04\/xmlenc#aes128-cbc"/);
      assert.match(post.xml, /EncryptionMethod Algorithm="http:\/\/www\.w3\.org\/2001\/04\/xmlenc#rsa-oaep-mgf1p"/);
      assert.doesNotMatch(post.xml, /alice@acme\.test/);
      const encIdp = samlify.IdentityProvider({ metadata: idp.metadataXml, isAssertionEncrypted: true });
      const { extract } = await encSp.parseLoginResponse(encIdp, 'post', { body: { SAMLResponse: post.samlResponse } });
      assert.equal(extract.nameID, 'alice@acme.test');
    });

    test('sends an unsolicited (IdP-initiated) response: no InResponseTo', async () => {
      const browser = new Browser();
      const post = await walkIdpLogin(browser, idp.idpInitiatedUrl(SP_ENTITY, 'unsolicited'), ALICE);
      assert.equal(post.acsUrl, ACS);
      assert.doesNotMatch(post.xml, /InResponseTo=/);
      assert.ok(attacks.checkSignatures(post.xml, idp.certificatePem).every((c) => c.valid));
    });
  });

  describe('the attack generator', () => {
    /** Every ID in the document is unique (so an ID-based verifier is not stopped by duplicates). */
    function assertUniqueIds(xml: string) {
      const ids = [...xml.matchAll(/ ID="([^"]+)"/g)].map((m) => m[1]);
      assert.equal(new Set(ids).size, ids.length, `duplicate IDs in ${ids.join(', ')}`);
    }

    /** The wrapped message: the original signature verifies over the untouched original, the forged claims are read. */
    function assertWrapped(xml: string, signedId: string, reader: 'document-order' | 'path') {
      assertUniqueIds(xml);
      const checks = attacks.checkSignatures(xml, idp.certificatePem);
      const signature = checks.find((c) => c.referenceId === signedId);
      assert.ok(signature, `a signature still references ${signedId}`);
      assert.equal(signature.valid, true, `the signature over ${signedId} still verifies: ${signature.error}`);
      assert.ok(signature.signedReferences[0]!.includes('alice@acme.test</saml:NameID>'), 'it covers the original subject');
      assert.ok(!signature.signedReferences[0]!.includes(EVIL.nameId), 'and not the forged one');
      const naive = attacks.naiveRead(xml, reader);
      assert.equal(naive.nameId, EVIL.nameId, `a ${reader} reader takes the forged subject`);
      assert.notEqual(naive.assertionId, valid.assertionId);
      assert.ok(xml.includes('<saml:AttributeValue>Admins</saml:AttributeValue>'), 'forged group present');
      return checks;
    }

    for (const variant of ['XSW1', 'XSW2'] as const) {
      test(`${variant}: the Response signature verifies over the original Response hidden ${variant === 'XSW1' ? 'inside' : 'next to'} it`, () => {
        const xml = attacks.xsw(variant, valid.xml, EVIL);
        assertWrapped(xml, valid.responseId, 'path');
        const ids = attacks.assertionIds(xml);
        assert.equal(ids.length, 2);
        assert.ok(ids.includes(valid.assertionId), 'the original assertion is still there, with its own valid signature');
        const checks = attacks.checkSignatures(xml, idp.certificatePem);
        assert.ok(checks.find((c) => c.referenceId === valid.assertionId)?.valid);
        const rootId = attr(xml, /^<samlp:Response[^>]* ID="([^"]+)"/);
        assert.notEqual(rootId, valid.responseId, 'the document Response is the forged one');
        if (variant === 'XSW1') assert.match(xml, new RegExp(`<ds:Signature[^>]*>(?:(?!</ds:Signature>).)*<samlp:Response[^>]* ID="${valid.responseId}"`, 's'));
        else assert.match(xml, new RegExp(`<samlp:Response[^>]* ID="${valid.responseId}"(?:(?!</samlp:Response>).)*</samlp:Response><ds:Signature`, 's'));
      });
    }

    const assertionVariants = {
      XSW3: { reader: 'document-order', shape: 'forged assertion injected before the signed one' },
      XSW4: { reader: 'document-order', shape: 'signed assertion moved inside the forged one' },
      XSW5: { reader: 'document-order', shape: 'forged assertion keeps the signature, original copy appended' },
      XSW6: { reader: 'document-order', shape: 'original copy wrapped in the forged assertion’s Signature' },
      XSW7: { reader: 'document-order', shape: 'forged assertion hidden in samlp:Extensions' },
      XSW8: { reader: 'path', shape: 'original copy wrapped in ds:Object' },
    } as const;

    for (const [variant, { reader, shape }] of Object.entries(assertionVariants)) {
      test(`${variant}: ${shape}; the signature still verifies`, () => {
        const xml = attacks.xsw(variant as attacks.XswVariant, valid.xml, EVIL);
        const checks = assertWrapped(xml, valid.assertionId, reader);
        assert.equal(attacks.assertionIds(xml).length, 2, 'two assertions');
        assert.ok(!checks.some((c) => c.referenceId === valid.responseId), 'the broken Response signature was removed');
        assert.ok(checks.every((c) => c.valid), 'every signature left verifies');
        // Where the forged and the original assertion sit.
        const evilId = attacks.naiveRead(xml, reader).assertionId!;
        const where = {
          XSW3: [`<saml:Assertion[^>]* ID="${evilId}".*</saml:Assertion><saml:Assertion[^>]* ID="${valid.assertionId}"`],
          XSW4: [`<saml:Assertion[^>]* ID="${evilId}"(?:(?!<saml:Assertion ).)*<saml:Assertion[^>]* ID="${valid.assertionId}".*</saml:Assertion></saml:Assertion></samlp:Response>$`],
          XSW5: [`<saml:Assertion[^>]* ID="${evilId}".*<ds:Reference URI="#${valid.assertionId}".*</saml:Assertion><saml:Assertion[^>]* ID="${valid.assertionId}"`],
          XSW6: [`<saml:Assertion[^>]* ID="${evilId}"[^>]*><saml:Issuer>[^<]*</saml:Issuer><ds:Signature.*<saml:Assertion[^>]* ID="${valid.assertionId}".*</saml:Assertion></ds:Signature>`],
          XSW7: [`<samlp:Extensions><saml:Assertion[^>]* ID="${evilId}".*</samlp:Extensions><samlp:Status>.*<saml:Assertion[^>]* ID="${valid.assertionId}"`],
          XSW8: [`<saml:Assertion[^>]* ID="${evilId}".*<ds:Object><saml:Assertion[^>]* ID="${valid.assertionId}".*</saml:Assertion></ds:Object></ds:Signature>`],
        }[variant as keyof typeof assertionVariants];
        for (const re of where) assert.match(xml, new RegExp(re, 's'));
        if (variant !== 'XSW7') assert.equal(attacks.naiveRead(xml, 'path').nameId, EVIL.nameId, '/Response/Assertion[1] is the forged one too');
      });
    }

    test('XSW3–XSW8 with responseSignature "keep" leave a broken Response signature beside the valid Assertion one', () => {
      const xml = attacks.xsw3(valid.xml, EVIL, { responseSignature: 'keep' });
      const checks = attacks.checkSignatures(xml, idp.certificatePem);
      assert.equal(checks.find((c) => c.referenceId === valid.responseId)?.valid, false);
      assert.equal(checks.find((c) => c.referenceId === valid.assertionId)?.valid, true);
    });

    test('XSW3, XSW5, XSW7, XSW8 and the comment injection are schema-valid: only the SP’s own reading stops them', async () => {
      for (const variant of ['XSW3', 'XSW5', 'XSW7', 'XSW8'] as const) {
        assert.equal(await validate(attacks.xsw(variant, valid.xml, EVIL)), true, variant);
      }
      const mallory = await signIn(MALLORY);
      assert.equal(await validate(attacks.injectComment(mallory.xml, 'alice@acme.test')), true);
    });

    test('comment-injected NameID: signatures still verify, a first-text-node reader sees the victim', async () => {
      const mallory = await signIn(MALLORY);
      const xml = attacks.injectComment(mallory.xml, 'alice@acme.test');
      assert.match(xml, /<saml:NameID[^>]*>alice@acme\.test<!---->\.evil\.com<\/saml:NameID>/);
      assert.match(xml, /<saml:AttributeValue xsi:type="xs:string">alice@acme\.test<!---->\.evil\.com<\/saml:AttributeValue>/);
      const checks = attacks.checkSignatures(xml, idp.certificatePem);
      assert.equal(checks.length, 2);
      assert.ok(checks.every((c) => c.valid), 'exclusive C14N drops comments: both signatures verify');
      assert.equal(attacks.naiveRead(xml, 'path').nameId, 'alice@acme.test');
      assert.throws(() => attacks.injectComment(valid.xml, 'bob@'), /does not extend/);
    });

    test('DOCTYPE variants: XXE, billion laughs, and an entity that expands to the signed subject', () => {
      const xxe = attacks.withDoctype(valid.xml, 'xxe');
      assert.match(xxe, /^<\?xml[^>]*\?>\n<!DOCTYPE samlp:Response \[<!ENTITY xxe SYSTEM "file:\/\/\/etc\/passwd">\]>\n<samlp:Response/);
      assert.match(xxe, /<saml:NameID[^>]*>alice@acme\.test&xxe;<\/saml:NameID>/);
      const laughs = attacks.withDoctype(valid.xml, 'billion-laughs');
      assert.match(laughs, /<!ENTITY lol9 "(&lol8;){10}">/);
      assert.match(laughs, /&lol9;<\/saml:NameID>/);
      const internal = attacks.withDoctype(valid.xml, 'internal-entity');
      assert.match(internal, /<!ENTITY subject "alice@acme\.test">/);
      assert.match(internal, /<saml:NameID[^>]*>&subject;<\/saml:NameID>/);
      // Everything else is the signed message, byte for byte.
      assert.equal(internal.replace(/^[\s\S]*?\]>\n/, '').replace('&subject;', 'alice@acme.test'), valid.xml.replace(/^\s*<\?xml[^>]*\?>\s*/, ''));
    });

    test('unsigned, assertion-only-signed and response-only-signed responses', () => {
      assert.deepEqual(attacks.checkSignatures(attacks.unsigned(valid.xml), idp.certificatePem), []);
      const assertionOnly = attacks.checkSignatures(attacks.assertionSignatureOnly(valid.xml), idp.certificatePem);
      assert.deepEqual(assertionOnly.map((c) => [c.parent.localName, c.valid]), [['Assertion', true]]);
      const responseOnly = attacks.checkSignatures(attacks.unsignedAssertion(valid.xml, idp), idp.certificatePem);
      assert.deepEqual(responseOnly.map((c) => [c.parent.localName, c.referenceId, c.valid]), [['Response', valid.responseId, true]]);
    });

    test('re-signing with the IdP key yields messages samlify and xml-crypto accept, with only the chosen field changed', async () => {
      const same = attacks.resign(valid.xml, idp, () => {});
      assert.equal([...same.matchAll(/SignatureMethod Algorithm="http:\/\/www\.w3\.org\/2001\/04\/xmldsig-more#rsa-sha256"/g)].length, 2);
      assert.equal([...same.matchAll(/DigestMethod Algorithm="http:\/\/www\.w3\.org\/2001\/04\/xmlenc#sha256"/g)].length, 2);
      assert.match(same, /<saml:Issuer>[^<]+<\/saml:Issuer><ds:Signature/, 'the Signature follows the Issuer, as the schema wants');
      const checks = attacks.checkSignatures(same, idp.certificatePem);
      assert.deepEqual(checks.map((c) => [c.parent.localName, c.valid]), [['Response', true], ['Assertion', true]]);
      const { extract } = await sp.parseLoginResponse(samlIdp, 'post', { body: { SAMLResponse: attacks.encodeResponse(same) } });
      assert.equal(extract.nameID, 'alice@acme.test');

      const cases: [string, string, RegExp][] = [
        ['audience', attacks.withAudience(valid.xml, idp, 'http://other.test/sp'), /<saml:Audience>http:\/\/other\.test\/sp<\/saml:Audience>/],
        ['destination', attacks.withDestination(valid.xml, idp, 'http://other.test/acs'), /<samlp:Response[^>]* Destination="http:\/\/other\.test\/acs"/],
        ['recipient', attacks.withRecipient(valid.xml, idp, 'http://other.test/acs'), /<saml:SubjectConfirmationData[^>]* Recipient="http:\/\/other\.test\/acs"/],
        ['inResponseTo', attacks.withInResponseTo(valid.xml, idp, '_someone_elses_request'), /InResponseTo="_someone_elses_request"/],
        ['issuer', attacks.withIssuer(valid.xml, idp, 'http://other.test/idp'), /<saml:Issuer>http:\/\/other\.test\/idp<\/saml:Issuer>/],
      ];
      for (const [name, xml, re] of cases) {
        assert.match(xml, re, name);
        assert.ok(attacks.checkSignatures(xml, idp.certificatePem).every((c) => c.valid), `${name}: validly signed`);
        assert.equal(attacks.checkSignatures(xml, idp.certificatePem).length, 2, name);
      }
      assert.doesNotMatch(cases[0]![1], new RegExp(`<saml:Audience>${SP_ENTITY}<`));
    });

    test('expired and not-yet-valid responses are validly signed with every time moved', () => {
      const now = Date.now();
      const times = (xml: string, name: string) => [...xml.matchAll(new RegExp(` ${name}="([^"]+)"`, 'g'))].map((m) => Date.parse(m[1]!));
      const old = attacks.expired(valid.xml, idp);
      assert.ok(attacks.checkSignatures(old, idp.certificatePem).every((c) => c.valid));
      assert.ok(times(old, 'NotOnOrAfter').every((t) => t < now - 3000_000), 'every NotOnOrAfter is long past');
      const future = attacks.notYetValid(valid.xml, idp);
      assert.ok(attacks.checkSignatures(future, idp.certificatePem).every((c) => c.valid));
      assert.ok(times(future, 'NotBefore').every((t) => t > now + 3000_000), 'NotBefore is far ahead');
      assert.ok(times(future, 'IssueInstant').every((t) => t > now + 3000_000));
    });

    test('forged claims signed with another key verify only with that key', () => {
      const xml = attacks.signedWithKey(valid.xml, otherKey, EVIL);
      assert.ok(attacks.checkSignatures(xml, idp.certificatePem).every((c) => !c.valid), 'not with the IdP certificate');
      assert.ok(attacks.checkSignatures(xml, otherKey.certificatePem).every((c) => c.valid), 'valid with the other certificate');
      assert.equal(attacks.naiveRead(xml, 'path').nameId, EVIL.nameId);
    });
  });
});
