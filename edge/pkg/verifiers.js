// The runtime's own signature checks for the engine's jobs `[alg, spki, signature, data]`:
// `native` is node:crypto's synchronous verify (Node, Deno, Workers with nodejs_compat), `webcrypto`
// is `crypto.subtle.verify`. Each throws when it cannot check a job; the engine then checks it in Rust.
const native = globalThis.process?.getBuiltinModule?.('node:crypto');
const subtle = globalThis.crypto?.subtle;

// Imported keys by algorithm and SPKI bytes; DPoP proofs bring client keys, so each cache is bounded.
const MAX_KEYS = 256;

function cached(cache, alg, spki, make) {
  const id = alg + String.fromCharCode.apply(null, spki);
  let key = cache.get(id);
  if (key === undefined) {
    if (cache.size >= MAX_KEYS) cache.clear();
    key = make();
    cache.set(id, key);
  }
  return key;
}

const nativeKeys = new Map();
// What each algorithm's key must be, its digest, and how its signature is read.
const NATIVE = {
  ES256: { type: 'ec', curve: 'prime256v1', digest: 'sha256', options: { dsaEncoding: 'ieee-p1363' } },
  RS256: { type: 'rsa', digest: 'sha256', options: {} },
  PS256: { type: 'rsa', digest: 'sha256', options: { padding: native?.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } },
  EdDSA: { type: 'ed25519', digest: null, options: {} },
};

function nativeVerify([alg, spki, signature, data]) {
  const want = NATIVE[alg];
  const key = cached(nativeKeys, alg, spki, () => native.createPublicKey({ key: spki, format: 'der', type: 'spki' }));
  if (key.asymmetricKeyType !== want.type || (want.curve && key.asymmetricKeyDetails.namedCurve !== want.curve)) {
    throw new Error(`not an ${alg} key`);
  }
  return native.verify(want.digest, data, { key, ...want.options }, signature);
}

const webKeys = new Map();
// WebCrypto parameters per algorithm: [importKey, verify].
const WEB = {
  ES256: [{ name: 'ECDSA', namedCurve: 'P-256' }, { name: 'ECDSA', hash: 'SHA-256' }],
  RS256: [{ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, { name: 'RSASSA-PKCS1-v1_5' }],
  PS256: [{ name: 'RSA-PSS', hash: 'SHA-256' }, { name: 'RSA-PSS', saltLength: 32 }],
  EdDSA: [{ name: 'Ed25519' }, { name: 'Ed25519' }],
};

async function webVerify([alg, spki, signature, data]) {
  const params = WEB[alg];
  const key = cached(webKeys, alg, spki, () => {
    const imported = subtle.importKey('spki', spki, params[0], false, ['verify']);
    imported.catch(() => webKeys.clear());
    return imported;
  });
  return subtle.verify(params[1], await key, signature, data);
}

/** The verifiers this runtime has, in the order they are preferred (fastest first). */
export const verifiers = {
  ...(native?.verify && { native: { sync: true, verify: nativeVerify } }),
  ...(subtle && { webcrypto: { sync: false, verify: webVerify } }),
};
