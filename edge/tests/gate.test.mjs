// jitgate-edge under Node: the same configuration and verdicts as in Envoy, for the cases an edge
// runtime meets (no sidecar), through the package's API, with WebCrypto and with Rust crypto.
// Run: node --test edge/tests/
import test from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Gate, denial, forwarded } from '../pkg/index.js';
import * as core from '../pkg/core.js';

import { ISSUER, AUDIENCE, b64, mint, claims, config, bearer } from './support.mjs';

test('a configuration error names the field, as in Envoy', () => {
  assert.throws(() => new Gate({ issuer: ISSUER, audience: AUDIENCE, rules: [], surprise: 1 }), /surprise/);
});

test('the runtime\'s crypto is used when it passes its known-answer test, and `crypto` decides', () => {
  assert.equal(new Gate(config('auto')).crypto, 'native', 'Node: node:crypto first');
  assert.equal(new Gate(config('host'), { verifier: 'webcrypto' }).crypto, 'webcrypto');
  assert.equal(new Gate(config('wasm')).crypto, 'rust');
  assert.throws(() => new Gate(config('auto'), { verifier: 'openssl' }), /unknown verifier `openssl`/);
});

const PATHS = { native: ['auto', 'native'], webcrypto: ['auto', 'webcrypto'], rust: ['wasm', undefined] };
for (const [path, [mode, verifier]] of Object.entries(PATHS)) {
  const gate = new Gate(config(mode), { verifier });
  assert.equal(gate.crypto, path);
  const check = (url, headers = {}) => gate.check(new Request(url, { headers }));

  test(`${path}: a valid token passes, with its claims and the headers to set upstream`, async () => {
    const r = await check('https://api.example/orders/7', bearer(mint(claims())));
    assert.equal(r.allow, true, JSON.stringify(r));
    assert.deepEqual(r.claims, { sub: 'alice', scope: 'orders:read', grant: 'grant-7' });
    assert.deepEqual(r.headers.find(([k]) => k === 'x-jit-sub'), ['x-jit-sub', 'alice']);
    assert.deepEqual([r.audit[0].event, r.audit[0].sub, r.audit[0].rule], ['access.allow', 'alice', 'orders']);
  });

  test(`${path}: refusals answer as the filter does (RFC 6750)`, async () => {
    const none = await check('https://api.example/orders/7');
    assert.equal(none.status, 401);
    assert.match(none.headers.find(([k]) => k === 'www-authenticate')[1], /^Bearer realm="jitgate"/);
    const expired = await check('https://api.example/orders/7', bearer(mint(claims({ iat: 1000, exp: 1300 }))));
    assert.equal(expired.status, 401);
    const scope = await check('https://api.example/orders/7', bearer(mint(claims({ scope: 'orders:write' }))));
    assert.equal(scope.status, 403);
    const good = mint(claims());
    const tampered = good.slice(0, -4) + (good.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    const forged = await check('https://api.example/orders/7', bearer(tampered));
    assert.deepEqual([forged.status, forged.audit[0].reason], [401, 'bad_signature']);
    const other = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const wrongKey = mint(claims(), undefined, other);
    assert.equal((await check('https://api.example/orders/7', bearer(wrongKey))).status, 401, 'signed by another key');
    const noneAlg = `${b64(JSON.stringify({ alg: 'none', typ: 'at+jwt' }))}.${b64(JSON.stringify(claims()))}.`;
    assert.equal((await check('https://api.example/orders/7', bearer(noneAlg))).status, 401);
    assert.equal((await check('https://api.example/healthz')).allow, true, 'a public route needs nothing');
  });

  test(`${path}: a single-use token is accepted once in this isolate, also when raced`, async () => {
    const t = mint(claims());
    const first = await check('https://api.example/once', bearer(t));
    assert.equal(first.allow, true, JSON.stringify(first));
    const again = await check('https://api.example/once', bearer(t));
    assert.equal(again.status, 401);
    assert.match(again.body, /invalid_token/);
    const raced = mint(claims());
    const all = await Promise.all(Array.from({ length: 8 }, () => check('https://api.example/once', bearer(raced))));
    assert.equal(all.filter((r) => r.allow).length, 1, 'eight at once: exactly one passes');
  });
}

test('every decision has its audit record, without the token', async () => {
  const gate = new Gate(config('auto'));
  const t = mint(claims());
  const r = await gate.check(new Request('https://api.example/orders/1', { headers: bearer(t) }));
  assert.equal(r.audit.length, 1);
  assert.equal(r.audit[0].jti_hash.length, 32, 'the jti only as its hash');
  assert.ok(!JSON.stringify(r.audit).includes(t.split('.')[2]), 'no signature bytes in the audit');
});

test('plain objects and Node header objects work as requests; duplicates fail closed', async () => {
  const gate = new Gate(config('auto'));
  const t = mint(claims());
  const ok = await gate.check({ method: 'GET', url: 'https://api.example/orders/1', headers: bearer(t) });
  assert.equal(ok.allow, true);
  const twice = await gate.check({ method: 'GET', url: 'https://api.example/orders/1',
    headers: { authorization: [`Bearer ${t}`, `Bearer ${t}`] } });
  assert.equal(twice.status, 400, 'two Authorization headers are a malformed request');
  const bad = await gate.check({ method: 'GET', url: '/orders/1', headers: {} });
  assert.deepEqual([bad.allow, bad.status], [false, 400]);
});

test('denial() and forwarded() build what the runtime sends', async () => {
  const gate = new Gate(config('auto'));
  const refused = await gate.check(new Request('https://api.example/orders/1'));
  const res = denial(refused);
  assert.equal(res.status, 401);
  assert.match(res.headers.get('www-authenticate'), /^Bearer realm="jitgate"/);
  const req = new Request('https://api.example/orders/1',
    { headers: { ...bearer(mint(claims())), 'x-jit-sub': 'mallory', 'x-jit-grant': 'forged' } });
  const up = forwarded(req, await gate.check(req));
  assert.equal(up.headers.get('x-jit-sub'), 'alice', 'the verified subject, not the client-sent one');
  assert.equal(up.headers.get('x-jit-grant'), 'grant-7');
  assert.equal(up.url, req.url);
});

test('setup() takes a compiled WebAssembly.Module (what Workers import) and is idempotent', async () => {
  const module = await WebAssembly.compile(await readFile(new URL('../pkg/jitgate_edge_bg.wasm', import.meta.url)));
  await core.setup(module);
  assert.equal(new core.Gate(config('auto')).crypto, 'native');
});

test('the signature verdict is the chosen verifier\'s, and only its', async () => {
  const gates = { native: new Gate(config('auto'), { verifier: 'native' }),
    webcrypto: new Gate(config('auto'), { verifier: 'webcrypto' }), rust: new Gate(config('wasm')) };
  const patched = { native: crypto, webcrypto: globalThis.crypto.subtle };
  for (const [name, target] of Object.entries(patched)) {
    const real = target.verify;
    target.verify = name === 'native' ? () => false : async () => false;
    try {
      for (const [other, gate] of Object.entries(gates)) {
        const r = await gate.check(new Request('https://api.example/orders/1', { headers: bearer(mint(claims())) }));
        if (other === name) assert.deepEqual([r.status, r.audit[0].reason], [401, 'bad_signature'], other);
        else assert.equal(r.allow, true, `${other} while ${name} says no`);
      }
    } finally {
      target.verify = real;
    }
  }
});

test('paths Envoy would resolve before the filter are refused at the edge (400 unnormalized_path)', async () => {
  const gate = new Gate({ ...config(), default: 'allow',
    rules: [{ name: 'public', path: { prefix: '/public' }, public: true },
      { name: 'admin', path: { prefix: '/admin' }, scopes: ['admin:write'] }] });
  const t = mint(claims());
  for (const path of ['/public/..;/admin/users', '/public/%2e%2e%2fadmin/users', '/public\\..\\admin/users',
    '/%61dmin/users', '//admin//users', '/orders/../admin/users']) {
    const r = await gate.check({ method: 'GET', url: `https://api.example${path}`, headers: bearer(t) });
    assert.deepEqual([r.status, r.audit[0].reason], [400, 'unnormalized_path'], path);
  }
  const clean = await gate.check({ method: 'GET', url: 'https://api.example/admin/users', headers: bearer(t) });
  assert.equal(clean.status, 403, 'the clean path meets the admin rule');
});

test('metrics() counts decisions under the Envoy filter\'s counter names', async () => {
  const gate = new Gate(config());
  await gate.check(new Request('https://api.example/orders/1', { headers: bearer(mint(claims())) }));
  await gate.check(new Request('https://api.example/orders/1', { headers: bearer(mint(claims({ iat: 1000, exp: 1300 }))) }));
  await gate.check(new Request('https://api.example/orders/1'));
  const m = gate.metrics();
  assert.deepEqual([m['jitgate.allow'], m['jitgate.deny.expired'], m['jitgate.deny.missing_credential']], [1, 1, 1]);
  assert.equal(m['jitgate.crypto.host'], 2, 'both signatures checked by the runtime (claims come after)');
});

test('PS256 and EdDSA tokens are verified by the runtime too, and forgeries refused', async () => {
  const pss = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ed = crypto.generateKeyPairSync('ed25519');
  const keys = [{ ...pss.publicKey.export({ format: 'jwk' }), kid: 'ps', alg: 'PS256' },
    { ...ed.publicKey.export({ format: 'jwk' }), kid: 'ed', alg: 'EdDSA' }];
  const sign = (alg, kid, key, options) => {
    const input = `${b64(JSON.stringify({ alg, typ: 'at+jwt', kid }))}.${b64(JSON.stringify(claims()))}`;
    return `${input}.${b64(crypto.sign(alg === 'EdDSA' ? null : 'sha256', Buffer.from(input), { key, ...options }))}`;
  };
  const tokens = {
    PS256: sign('PS256', 'ps', pss.privateKey, { padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }),
    EdDSA: sign('EdDSA', 'ed', ed.privateKey),
  };
  for (const verifier of ['native', 'webcrypto']) {
    const gate = new Gate({ ...config(), jwks: { keys } }, { verifier });
    for (const [alg, t] of Object.entries(tokens)) {
      const ok = await gate.check(new Request('https://api.example/orders/1', { headers: bearer(t) }));
      assert.equal(ok.allow, true, `${verifier} ${alg}: ${JSON.stringify(ok)}`);
      const bad = `${t.slice(0, -6)}${t.endsWith('AAAAAA') ? 'BBBBBB' : 'AAAAAA'}`;
      const refused = await gate.check(new Request('https://api.example/orders/1', { headers: bearer(bad) }));
      assert.equal(refused.status, 401, `${verifier} ${alg} forged`);
    }
    assert.equal(gate.metrics()['jitgate.crypto.host'], 2, `${verifier}: both valid tokens checked by the runtime`);
  }
});
