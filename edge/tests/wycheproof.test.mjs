// Project Wycheproof vectors (token/tests/vectors/wycheproof) through jitgate-edge: the path a
// request takes here (node:crypto or WebCrypto for ES256 and RS256, the engine's Rust code
// otherwise) and the Rust path give the same verdict on every vector, and it is the vector's.
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

for (const verifier of ['native', 'webcrypto']) {
  test(`ES256 (P-256, P1363 signatures): ${verifier} and Rust agree on every vector`, async (t) => {
    const c = await run(t, 'ecdsa_secp256r1_sha256_p1363_test.json', 'publicKeyJwk', verifier);
    assert.ok(c.valid > 100 && c.invalid > 50 && c[verifier] > 150, JSON.stringify(c));
  });

  test(`RS256 (RSA 2048, PKCS#1 v1.5): ${verifier} and Rust agree on every vector`, async (t) => {
    const c = await run(t, 'rsa_signature_2048_sha256_test.json', 'keyJwk', verifier);
    assert.ok(c.valid >= 9 && c.invalid > 200 && c[verifier] > 100, JSON.stringify(c));
  });
}

test('PS256 and EdDSA stay in Rust at the edge, and judge every vector right', async (t) => {
  const pss = await run(t, 'rsa_pss_2048_sha256_mgf1_32_test.json', 'publicKeyJwk', 'native');
  const ed = await run(t, 'ed25519_test.json', 'publicKeyJwk', 'native');
  assert.ok(pss.valid > 50 && pss.invalid > 40 && pss.native === 0, JSON.stringify(pss));
  assert.ok(ed.valid > 50 && ed.invalid > 50 && ed.native === 0, JSON.stringify(ed));
});
