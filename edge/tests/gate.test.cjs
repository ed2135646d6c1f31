// jitgate-edge under Node: the same configuration and verdicts as in Envoy, for the cases an edge
// runtime meets (no sidecar). Run: node --test edge/tests/
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');
const { Gate } = require(path.join(__dirname, '..', 'pkg-node', 'jitgate_edge.js'));

const ISSUER = 'https://jitgate.local';
const AUDIENCE = 'demo-api';
const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'edge-1', alg: 'ES256', use: 'sig' };
const b64 = (b) => Buffer.from(b).toString('base64url');

function mint(claims, header = { alg: 'ES256', typ: 'at+jwt', kid: 'edge-1' }) {
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`;
  const sig = crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64(sig)}`;
}

let n = 0;
function claims(over = {}) {
  const now = Math.floor(Date.now() / 1000);
  return { iss: ISSUER, aud: AUDIENCE, sub: 'alice', iat: now, exp: now + 300, jti: `jti-${n++}`,
    scope: 'orders:read', jit: { grant: 'grant-7', reason: 'INC-1 disk' }, ...over };
}

const config = JSON.stringify({
  issuer: ISSUER, audience: AUDIENCE, jwks: { keys: [jwk] }, max_ttl_s: 900,
  rules: [
    { name: 'health', path: { exact: '/healthz' }, public: true },
    { name: 'orders', path: { prefix: '/orders' }, scopes: ['orders:read'] },
    { name: 'once', path: { prefix: '/once' }, scopes: ['orders:read'], replay: 'single_use' },
  ],
});

const gate = new Gate(config);
const check = (url, headers = []) => JSON.parse(gate.check('GET', url, headers));
const bearer = (t) => [['authorization', `Bearer ${t}`]];

test('a configuration error names the field, as in Envoy', () => {
  assert.throws(() => new Gate(JSON.stringify({ issuer: ISSUER, audience: AUDIENCE, rules: [], surprise: 1 })), /surprise/);
});

test('a valid token passes, with the claim headers set', () => {
  const r = check('https://api.example/orders/7', bearer(mint(claims())));
  assert.equal(r.allow, true);
  assert.deepEqual(r.headers.find(([k]) => k === 'x-jit-sub'), ['x-jit-sub', 'alice']);
  assert.deepEqual([r.audit[0].event, r.audit[0].sub, r.audit[0].rule], ['access.allow', 'alice', 'orders']);
});

test('refusals answer as the filter does (RFC 6750)', () => {
  const none = check('https://api.example/orders/7');
  assert.equal(none.status, 401);
  assert.match(none.headers.find(([k]) => k === 'www-authenticate')[1], /^Bearer realm="jitgate"/);
  const expired = check('https://api.example/orders/7', bearer(mint(claims({ iat: 1000, exp: 1300 }))));
  assert.equal(expired.status, 401);
  const scope = check('https://api.example/orders/7', bearer(mint(claims({ scope: 'orders:write' }))));
  assert.equal(scope.status, 403);
  const forged = mint(claims());
  const tampered = check('https://api.example/orders/7', bearer(forged.slice(0, -4) + (forged.endsWith('AAAA') ? 'BBBB' : 'AAAA')));
  assert.equal(tampered.status, 401);
  const none_alg = `${b64(JSON.stringify({ alg: 'none', typ: 'at+jwt' }))}.${b64(JSON.stringify(claims()))}.`;
  assert.equal(check('https://api.example/orders/7', bearer(none_alg)).status, 401);
  assert.equal(check('https://api.example/healthz').allow, true, 'a public route needs nothing');
});

test('a single-use token is accepted once in this isolate', () => {
  const t = mint(claims());
  const first = check('https://api.example/once', bearer(t));
  assert.equal(first.allow, true, JSON.stringify(first));
  const again = check('https://api.example/once', bearer(t));
  assert.equal(again.status, 401);
  assert.match(again.body, /invalid_token/);
});

test('every decision has its audit record, without the token', () => {
  const t = mint(claims());
  const r = check('https://api.example/orders/1', bearer(t));
  assert.equal(r.audit.length, 1);
  assert.equal(r.audit[0].jti_hash.length, 32, 'the jti only as its hash');
  assert.ok(!JSON.stringify(r.audit).includes(t.split('.')[2]), 'no signature bytes in the audit');
});
