// Verifications per second: jitgate-edge vs jose in Node, side by side in one run (interleaved
// rounds, medians). ES256 fresh (a new token each time), ES256 repeated (one token), HS256 fresh.
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
const require = createRequire(import.meta.url);
const jose = require('../edge/node_modules/jose');
const { Gate } = require('../edge/pkg-node/jitgate_edge.js');

const ISS = 'https://jitgate.local', AUD = 'demo-api';
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...ec.publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256' };
const secret = crypto.randomBytes(32);
const b64 = (b) => Buffer.from(b).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);
let n = 0;
function mint(alg) {
  const header = { alg, typ: 'at+jwt', kid: alg === 'HS256' ? 'h1' : 'k1' };
  const claims = { iss: ISS, aud: AUD, sub: 'alice', iat: now(), exp: now() + 300, jti: `j${n++}`, scope: 'orders:read',
    jit: { grant: 'g-1' } };
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`;
  const sig = alg === 'HS256' ? crypto.createHmac('sha256', secret).update(input).digest()
    : crypto.sign('sha256', Buffer.from(input), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64(sig)}`;
}
const gate = new Gate(JSON.stringify({ issuer: ISS, audience: AUD, max_ttl_s: 900,
  jwks: { keys: [jwk] }, hs256_secrets: [{ kid: 'h1', secret: b64(secret) }],
  rules: [{ name: 'orders', path: { prefix: '/orders' }, scopes: ['orders:read'] }] }));
const edge = (t) => { if (!JSON.parse(gate.check('GET', 'https://api.example/orders/1', [['authorization', `Bearer ${t}`]])).allow) throw new Error('edge refused'); };
const joseKey = await jose.importJWK(jwk, 'ES256');
const opts = (alg) => ({ issuer: ISS, audience: AUD, algorithms: [alg], typ: 'at+jwt' });
const joseVerify = (alg, key) => async (t) => { await jose.jwtVerify(t, key, opts(alg)); };

const N = Number(process.env.N ?? 500), ROUNDS = Number(process.env.ROUNDS ?? 5);
const cases = {
  'ES256 fresh': { tokens: () => Array.from({ length: N }, () => mint('ES256')), jose: joseVerify('ES256', joseKey) },
  'ES256 repeated': { tokens: () => { const t = mint('ES256'); return Array(N).fill(t); }, jose: joseVerify('ES256', joseKey) },
  'HS256 fresh': { tokens: () => Array.from({ length: N }, () => mint('HS256')), jose: joseVerify('HS256', secret) },
};
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`| case | jitgate-edge /s | jose /s | ratio |\n|---|---:|---:|---:|`);
for (const [name, c] of Object.entries(cases)) {
  const e = [], j = [];
  for (let r = 0; r < ROUNDS; r++) {
    let ts = c.tokens(); let t0 = performance.now(); for (const t of ts) edge(t); e.push(N / (performance.now() - t0) * 1000);
    ts = c.tokens(); t0 = performance.now(); for (const t of ts) await c.jose(t); j.push(N / (performance.now() - t0) * 1000);
  }
  const [me, mj] = [median(e), median(j)];
  console.log(`| ${name} | ${me.toFixed(0)} | ${mj.toFixed(0)} | ${(me / mj).toFixed(2)} |`);
}
