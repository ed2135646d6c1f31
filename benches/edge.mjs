// Verifications per second: jitgate-edge vs jose in Node, side by side in one run (interleaved
// rounds, medians). ES256 fresh (a new token each time), ES256 repeated (one token), HS256 fresh;
// jitgate-edge with node:crypto (Node's default), WebCrypto (Deno's and Workers' only choice),
// and its Rust crypto (`crypto: wasm`).
// Build first: scripts/edge.sh. Run: node benches/edge.mjs
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import { Gate } from '../edge/pkg/index.js';
const require = createRequire(import.meta.url);
const jose = require('../edge/node_modules/jose');

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
const gate = (crypto, verifier) => new Gate({ issuer: ISS, audience: AUD, max_ttl_s: 900, crypto,
  jwks: { keys: [jwk] }, hs256_secrets: [{ kid: 'h1', secret: b64(secret) }],
  rules: [{ name: 'orders', path: { prefix: '/orders' }, scopes: ['orders:read'] }] }, { verifier });
const check = (g) => async (t) => {
  const r = await g.check({ method: 'GET', url: 'https://api.example/orders/1', headers: [['authorization', `Bearer ${t}`]] });
  if (!r.allow) throw new Error('edge refused');
};
const paths = { 'node:crypto': check(gate('auto', 'native')), WebCrypto: check(gate('auto', 'webcrypto')),
  Rust: check(gate('wasm')), jose: null };
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
async function rate(verify, tokens) {
  const t0 = performance.now();
  for (const t of tokens) await verify(t);
  return tokens.length / (performance.now() - t0) * 1000;
}
console.log(`Node ${process.version}, ${N} verifications x ${ROUNDS} interleaved rounds, medians (verifications/s)`);
const names = Object.keys(paths);
console.log(`| case | ${names.map((n) => n === 'jose' ? 'jose' : `jitgate-edge (${n})`).join(' | ')} | ${names.slice(0, -1).map((n) => `${n} / jose`).join(' | ')} |`);
console.log(`|---|${names.map(() => '---:').join('|')}|${names.slice(0, -1).map(() => '---:').join('|')}|`);
for (const [name, c] of Object.entries(cases)) {
  const runs = Object.fromEntries(names.map((n) => [n, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const n of names) runs[n].push(await rate(paths[n] ?? c.jose, c.tokens()));
  }
  const m = Object.fromEntries(names.map((n) => [n, median(runs[n])]));
  const cells = names.map((n) => m[n].toFixed(0));
  const ratios = names.slice(0, -1).map((n) => (m[n] / m.jose).toFixed(2));
  console.log(`| ${name} | ${cells.join(' | ')} | ${ratios.join(' | ')} |`);
}
