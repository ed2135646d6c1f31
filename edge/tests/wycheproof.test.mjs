// Project Wycheproof vectors (token/tests/vectors/wycheproof) through jitgate-edge: the path a
// request takes here (node:crypto or WebCrypto, with the engine's checks before them) and the
// Rust path give the same verdict on every vector, and it is the vector's.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { signatureVerdicts } from '../pkg/index.js';

const dir = new URL('../../token/tests/vectors/wycheproof/', import.meta.url);
const hex = (s) => Uint8Array.from(Buffer.from(s ?? '', 'hex'));
const b64 = (b) => Buffer.from(b).toString('base64url');

// Some ECDSA groups carry only the raw point: as a JWK with 32-byte coordinates.
function groupJwk(group, field) {
  if (group[field]) return group[field];
  const coord = (name) => {
    const raw = Buffer.from(group.publicKey[name], 'hex').subarray(-32);
    const out = Buffer.alloc(32);
    raw.copy(out, 32 - raw.length);
    return b64(out);
  };
  return { kty: 'EC', crv: 'P-256', x: coord('wx'), y: coord('wy') };
}

async function run(t0, file, field, verifier) {
  const doc = JSON.parse(await readFile(new URL(file, dir), 'utf8'));
  const count = { valid: 0, invalid: 0, [verifier]: 0, rust: 0, refused: 0 };
  for (const group of doc.testGroups) {
    const jwk = groupJwk(group, field);
    for (const t of group.tests) {
      const v = await signatureVerdicts(jwk, hex(t.msg), hex(t.sig), verifier);
      assert.equal(v.edge, v.rust, `${file} tcId ${t.tcId} (${t.comment}): edge ${v.edge} via ${v.path}, rust ${v.rust}`);
      count[v.path] += 1;
      if (t.result === 'acceptable') continue;
      assert.equal(v.rust, t.result === 'valid', `${file} tcId ${t.tcId} (${t.comment}) is ${t.result}`);
      count[t.result] += 1;
    }
  }
  t0.diagnostic(`${file} (${verifier}): ${JSON.stringify(count)}`);
  return count;
}

const FILES = [
  ['ES256 (P-256, P1363 signatures)', 'ecdsa_secp256r1_sha256_p1363_test.json', 'publicKeyJwk', { valid: 100, invalid: 50 }],
  ['RS256 (RSA 2048, PKCS#1 v1.5)', 'rsa_signature_2048_sha256_test.json', 'keyJwk', { valid: 9, invalid: 200 }],
  ['PS256 (RSA 2048, PSS, MGF1-SHA-256, salt 32)', 'rsa_pss_2048_sha256_mgf1_32_test.json', 'publicKeyJwk', { valid: 50, invalid: 40 }],
  ['EdDSA (Ed25519)', 'ed25519_test.json', 'publicKeyJwk', { valid: 50, invalid: 50 }],
];

for (const verifier of ['native', 'webcrypto']) {
  for (const [name, file, field, least] of FILES) {
    test(`${name}: ${verifier} and Rust agree on every vector`, async (t) => {
      const c = await run(t, file, field, verifier);
      assert.ok(c.valid >= least.valid && c.invalid >= least.invalid && c[verifier] > 0 && c.rust === 0, JSON.stringify(c));
    });
  }
}
