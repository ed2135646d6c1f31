// What the edge tests share: an ES256 key as the issuer's, tokens minted with it, a configuration.
import crypto from 'node:crypto';

export const ISSUER = 'https://jitgate.local';
export const AUDIENCE = 'demo-api';
export const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
export const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'edge-1', alg: 'ES256', use: 'sig' };
export const b64 = (b) => Buffer.from(b).toString('base64url');

export function mint(claims, header = { alg: 'ES256', typ: 'at+jwt', kid: 'edge-1' }, key = privateKey) {
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`;
  const sig = crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64(sig)}`;
}

let n = 0;
export function claims(over = {}) {
  const now = Math.floor(Date.now() / 1000);
  return { iss: ISSUER, aud: AUDIENCE, sub: 'alice', iat: now, exp: now + 300, jti: `jti-${n++}`,
    scope: 'orders:read', jit: { grant: 'grant-7', reason: 'INC-1 disk' }, ...over };
}

export const config = (crypto = 'auto') => ({
  issuer: ISSUER, audience: AUDIENCE, jwks: { keys: [jwk] }, max_ttl_s: 900, crypto,
  rules: [
    { name: 'health', path: { exact: '/healthz' }, public: true },
    { name: 'orders', path: { prefix: '/orders' }, scopes: ['orders:read'] },
    { name: 'once', path: { prefix: '/once' }, scopes: ['orders:read'], replay: 'single_use' },
  ],
});

export const bearer = (t) => ({ authorization: `Bearer ${t}` });

/** A DPoP client: its key, the `cnf.jkt` a token bound to it carries, and proofs (RFC 9449). */
export function dpopClient() {
  const keys = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { crv, kty, x, y } = keys.publicKey.export({ format: 'jwk' });
  const jkt = b64(crypto.createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest());
  const proof = (method, htu, token, jti = crypto.randomUUID(), iat = Math.floor(Date.now() / 1000)) => mint(
    { jti, htm: method, htu, iat,
      ath: b64(crypto.createHash('sha256').update(token).digest()) },
    { typ: 'dpop+jwt', alg: 'ES256', jwk: { crv, kty, x, y } }, keys.privateKey);
  return { jkt, proof };
}

/** A JWS over exact header and payload bytes (for duplicate members, odd encodings ...). */
export function signRaw(header, payload, key = privateKey) {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${b64(crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }))}`;
}
