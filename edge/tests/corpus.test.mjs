// Valid and attack tokens judged by `jose` (jwtVerify, configured as strictly as it allows) and by
// jitgate-edge: jitgate must refuse everything jose refuses. The table in the book's edge chapter
// (docs/edge.md) is this corpus's outcome (UPDATE_DOCS=1 rewrites it).
import test from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import * as jose from 'jose';
import { Gate } from '../pkg/index.js';
import { ISSUER, AUDIENCE, jwk, privateKey, b64, mint, signRaw, claims, config, bearer, dpopClient } from './support.mjs';

const KID = { alg: 'ES256', typ: 'at+jwt', kid: 'edge-1' };
const header = (over = {}) => ({ ...KID, ...over });
const attacker = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const attackerJwk = attacker.publicKey.export({ format: 'jwk' });
const unsigned = (h, c) => `${b64(JSON.stringify(h))}.${b64(JSON.stringify(c))}.`;
const hmacWith = (secret, h, c) => {
  const input = `${b64(JSON.stringify(h))}.${b64(JSON.stringify(c))}`;
  return `${input}.${b64(crypto.createHmac('sha256', secret).update(input).digest())}`;
};
const now = () => Math.floor(Date.now() / 1000);

// [case, token, why they differ (when they do)]
const CORPUS = [
  ['valid ES256 access token', () => mint(claims())],
  ['`alg: none`, empty signature', () => unsigned(header({ alg: 'none' }), claims())],
  ['`alg: None` (other casing)', () => unsigned(header({ alg: 'None' }), claims())],
  ['`alg: NONE`', () => unsigned(header({ alg: 'NONE' }), claims())],
  ['key confusion: HS256 with the public key as HMAC secret', () =>
    hmacWith(JSON.stringify(jwk), header({ alg: 'HS256' }), claims())],
  ['key confusion: HS256 with the public key\'s x coordinate', () =>
    hmacWith(Buffer.from(jwk.x, 'base64url'), header({ alg: 'HS256' }), claims())],
  ['embedded `jwk` (attacker key), signed by the attacker', () =>
    mint(claims(), header({ jwk: attackerJwk }), attacker.privateKey)],
  ['`jku` to an attacker\'s JWKS, signed by the attacker', () =>
    mint(claims(), header({ jku: 'https://evil.example/jwks' }), attacker.privateKey)],
  ['`jku` header on a correctly signed token', () => mint(claims(), header({ jku: 'https://evil.example/jwks' })),
    'jose ignores `jku`; jitgate refuses key-location headers outright'],
  ['`crit: ["exp"]`', () => mint(claims(), header({ crit: ['exp'] }))],
  ['`crit` naming an unknown extension', () => mint(claims(), header({ crit: ['x-policy'], 'x-policy': 1 }))],
  ['unknown `kid`', () => mint(claims(), header({ kid: 'other' }))],
  ['signed by another key with our `kid`', () => mint(claims(), header(), attacker.privateKey)],
  ['duplicate `sub` member in the payload', () => signRaw(JSON.stringify(header()),
    JSON.stringify(claims()).replace('"sub":"alice"', '"sub":"alice","sub":"admin"')),
    'JSON.parse keeps the last `sub` (admin); jitgate refuses duplicate members'],
  ['duplicate `alg` member in the header', () => signRaw(
    '{"alg":"ES256","typ":"at+jwt","kid":"edge-1","alg":"none"}', JSON.stringify(claims()))],
  ['payload that is not UTF-8', () => signRaw(JSON.stringify(header()),
    Buffer.concat([Buffer.from(JSON.stringify(claims()).slice(0, -1)), Buffer.from(',"note":"\xff\xfe"}', 'latin1')]))],
  ['lifetime over the cap (issued now, `exp` in 1 h; cap 15 min)', () => mint(claims({ exp: now() + 3600 })),
    'jose\'s maxTokenAge bounds the age (now - iat), not the lifetime (exp - iat)'],
  ['expired', () => mint(claims({ iat: now() - 600, exp: now() - 300 }))],
  ['`nbf` in the future', () => mint(claims({ nbf: now() + 600 }))],
  ['`iat` in the future', () => mint(claims({ iat: now() + 600, exp: now() + 900 }))],
  ['`exp` as a string', () => mint(claims({ exp: String(now() + 300) }))],
  ['wrong issuer', () => mint(claims({ iss: 'https://evil.example' }))],
  ['wrong audience', () => mint(claims({ aud: 'other-api' }))],
  ['`typ: JWT` (not an access token)', () => mint(claims(), header({ typ: 'JWT' }))],
  ['nested JWT (`cty: JWT`)', () => mint(claims(), header({ cty: 'JWT' })),
    'jose verifies the outer token; jitgate refuses a token whose claims are another token\'s'],
  ['no `jti`', () => { const c = claims(); delete c.jti; return mint(c); }],
  ['DER-encoded ECDSA signature', () => {
    const input = `${b64(JSON.stringify(header()))}.${b64(JSON.stringify(claims()))}`;
    return `${input}.${b64(crypto.sign('sha256', Buffer.from(input), privateKey))}`;
  }],
  ['r = s = 0 ("psychic signature")', () => `${mint(claims()).split('.').slice(0, 2).join('.')}.${b64(Buffer.alloc(64))}`],
  ['base64url with padding', () => `${mint(claims())}==`,
    'jose\'s decoder drops the `=`; JWS base64url has no padding (RFC 7515 §2) and jitgate decodes strictly'],
  ['four segments', () => `${mint(claims())}.AAAA`],
  ['token of 20 KB', () => mint(claims({ pad: 'x'.repeat(20000) })),
    'jose has no size limit; jitgate caps tokens (max_token_bytes, 8 KiB by default)'],
  ['DPoP-bound token sent as Bearer (downgrade)', () => mint(claims({ cnf: { jkt: dpopClient().jkt } })),
    'jose has no DPoP; RFC 9449 §7.2: a bound token without its proof is worthless'],
];

const JOSE_OPTIONS = { issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'], typ: 'at+jwt', maxTokenAge: '15m',
  requiredClaims: ['exp', 'iat', 'jti', 'sub'], clockTolerance: 30 };
const keySet = jose.createLocalJWKSet({ keys: [jwk] });
const gate = new Gate(config());

async function joseVerdict(token) {
  try {
    await jose.jwtVerify(token, keySet, JOSE_OPTIONS);
    return 'accepts';
  } catch (e) {
    return `refuses (${e.code ?? e.name})`;
  }
}

async function edgeVerdict(token) {
  const r = await gate.check({ method: 'GET', url: 'https://api.example/orders/1', headers: bearer(token) });
  return r.allow ? 'accepts' : `refuses (${r.audit[0].reason})`;
}

const MARK = ['<!-- edge/tests/corpus.test.mjs -->', '<!-- /edge/tests/corpus.test.mjs -->'];

test('jitgate-edge refuses every token jose refuses, and each difference is explained', async () => {
  const rows = ['| token | jose 6 `jwtVerify` | jitgate-edge | why they differ |', '|---|---|---|---|'];
  for (const [name, make, why] of CORPUS) {
    const token = make();
    const [j, e] = [await joseVerdict(token), await edgeVerdict(token)];
    if (j.startsWith('refuses')) assert.match(e, /^refuses/, `${name}: jose ${j}, jitgate ${e}`);
    const differ = j.startsWith('accepts') !== e.startsWith('accepts');
    assert.equal(Boolean(why), differ, `${name}: jose ${j}, jitgate ${e}: ${differ ? 'explain why' : 'no difference to explain'}`);
    rows.push(`| ${name} | ${j} | ${e} | ${why ?? ''} |`);
  }
  const table = `${MARK[0]}\n${rows.join('\n')}\n${MARK[1]}`;
  const pagePath = new URL('../../docs/edge.md', import.meta.url);
  const page = await readFile(pagePath, 'utf8');
  const [before, rest] = page.split(MARK[0]);
  const shown = rest === undefined ? undefined : `${MARK[0]}${rest.split(MARK[1])[0]}${MARK[1]}`;
  if (process.env.UPDATE_DOCS && rest !== undefined) {
    await writeFile(pagePath, `${before}${table}${rest.split(MARK[1])[1]}`);
  } else {
    assert.equal(shown, table, 'docs/edge.md shows this table (UPDATE_DOCS=1 rewrites it)');
  }
});
