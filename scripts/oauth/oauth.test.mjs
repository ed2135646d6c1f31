// A client built on panva's openid-client (and its oauth4webapi) against a real jitgate-sidecar
// and a real Envoy with the jitgate filter, started by scripts/oauth_e2e.py, which passes:
//   JITGATE_API       the API's URL through Envoy (a Bearer route /catalog, a DPoP route /bound
//                     with server nonces, each described by RFC 9728 metadata)
//   JITGATE_SUBJECT   alice's identity token (the subject token of the exchange)
//   JITGATE_AUDIT     the sidecar's audit chain directory (segments audit-<first seq>.jsonl)
// The client knows only the API's URL: it finds the authorization server from the API's
// protected resource metadata, configures itself from that server's RFC 8414 metadata, exchanges
// alice's identity token (RFC 8693) as Bearer and DPoP-bound (RFC 9449 §5, the sidecar asking
// for a server nonce first), calls both routes (the DPoP one asks for a nonce too), and a
// revoked token is refused.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import * as client from 'openid-client';
import * as oauth from 'oauth4webapi';

const api = new URL(process.env.JITGATE_API);
const subject = process.env.JITGATE_SUBJECT;
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const CLIENT_ID = 'jitgate-oauth-test';

// Every response the library saw, in order: what it retried is visible here.
const seen = [];
const recorded = async (url, options) => {
  const r = await fetch(url, options);
  const copy = r.clone();
  const body = copy.headers.get('content-type')?.includes('json') ? await copy.json() : null;
  seen.push({ url: String(url), status: r.status, error: body?.error ?? challengeError(r), nonce: r.headers.get('dpop-nonce') });
  return r;
};
const challengeError = (r) => /error="([^"]+)"/.exec(r.headers.get('www-authenticate') ?? '')?.[1] ?? null;
const since = (n) => seen.slice(n).map(({ status, error }) => `${status}${error ? ` ${error}` : ''}`);

const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
const exchange = (config, scope, options) => client.genericGrantRequest(config, EXCHANGE, {
  subject_token: subject, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', scope, audience: 'demo-api',
}, options);

let config;

test('the API names its authorization server; the client configures itself from it', async () => {
  const r = await fetch(new URL('/catalog/1', api));
  assert.equal(r.status, 401);
  const metadataUrl = /resource_metadata="([^"]+)"/.exec(r.headers.get('www-authenticate'))?.[1];
  assert.equal(metadataUrl, new URL('/.well-known/oauth-protected-resource/catalog', api).href);
  // The route's document names the route: same origin, a path prefix of the URL asked for (the
  // prefix rule of draft-mcguinness-oauth-rfc9728bis; RFC 9728 §3.3 asks for the URL itself).
  const fromChallenge = await (await fetch(metadataUrl)).json();
  const requested = new URL('/catalog/1', api);
  const named = new URL(fromChallenge.resource);
  assert.equal(named.origin, requested.origin);
  assert.ok(requested.pathname.startsWith(`${named.pathname}/`), `${named.pathname} is a prefix of ${requested.pathname}`);
  const resource = new URL('/catalog', api);
  const described = await oauth.processResourceDiscoveryResponse(resource,
    await oauth.resourceDiscoveryRequest(resource, { [oauth.allowInsecureRequests]: true }));
  assert.equal(described.dpop_bound_access_tokens_required, false);
  const bound = new URL('/bound', api);
  const boundDoc = await oauth.processResourceDiscoveryResponse(bound,
    await oauth.resourceDiscoveryRequest(bound, { [oauth.allowInsecureRequests]: true }));
  assert.equal(boundDoc.dpop_bound_access_tokens_required, true, 'the DPoP route says so');

  const issuer = new URL(described.authorization_servers[0]);
  config = await client.discovery(issuer, CLIENT_ID, undefined, client.None(),
    { algorithm: 'oauth2', execute: [client.allowInsecureRequests] });
  config[client.customFetch] = recorded;
  const m = config.serverMetadata();
  assert.equal(m.issuer, issuer.href.replace(/\/$/, ''));
  assert.equal(m.token_endpoint, new URL('/v1/token', issuer).href);
  assert.ok(m.grant_types_supported.includes(EXCHANGE));
  assert.ok(m.dpop_signing_alg_values_supported.includes('ES256'));
});

test('a Bearer token by token exchange passes the Bearer route', async () => {
  const tokens = await exchange(config, 'orders:read');
  assert.equal(tokens.token_type, 'bearer');
  assert.equal(claimsOf(tokens.access_token).cnf, undefined);
  const r = await client.fetchProtectedResource(config, tokens.access_token, new URL('/catalog/1', api), 'GET');
  assert.equal(r.status, 200);
  assert.equal((await r.json()).headers['x-jit-sub'], 'alice');
});

test('a DPoP-bound token: the sidecar asks for a nonce, the library answers, the token is bound to its key', async () => {
  const keys = await client.randomDPoPKeyPair('ES256');
  const DPoP = client.getDPoPHandle(config, keys);
  const before = seen.length;
  const tokens = await exchange(config, 'orders:read', { DPoP });
  assert.equal(tokens.token_type, 'dpop');
  assert.deepEqual(since(before), ['400 use_dpop_nonce', '200'], 'challenged once, then issued');
  const jwk = await crypto.subtle.exportKey('jwk', keys.publicKey);
  const thumbprint = await jktOf(jwk);
  assert.equal(claimsOf(tokens.access_token).cnf.jkt, thumbprint);

  const route = new URL('/bound/7', api);
  const at = seen.length;
  const r = await client.fetchProtectedResource(config, tokens.access_token, route, 'GET', undefined, undefined, { DPoP });
  assert.equal(r.status, 200);
  assert.deepEqual(since(at), ['401 use_dpop_nonce', '200'], 'the route asked for its nonce, then passed');
  assert.equal((await r.json()).headers['x-jit-sub'], 'alice');

  await assert.rejects(client.fetchProtectedResource(config, tokens.access_token, new URL('/catalog/7', api), 'GET'),
    (e) => e.status === 401 && e.cause?.[0]?.parameters?.error_description === 'dpop_bound_token',
    'the same token as a Bearer token is refused, even on the Bearer route (RFC 9449 §7.2)');
});

test('a revoked token is refused through Envoy', async () => {
  const tokens = await exchange(config, 'orders:read');
  const route = new URL('/catalog/2', api);
  assert.equal((await client.fetchProtectedResource(config, tokens.access_token, route, 'GET')).status, 200);
  const revoked = await fetch(new URL('/v1/revoke', config.serverMetadata().issuer), {
    method: 'POST', headers: { authorization: `Bearer ${subject}`, 'content-type': 'application/json' },
    body: JSON.stringify({ token: tokens.access_token, reason: 'oauth client test' }),
  });
  assert.equal(revoked.status, 200, await revoked.text());
  let refusal;
  for (let i = 0; i < 50 && !refusal; i++) {
    await new Promise((ok) => setTimeout(ok, 100));
    refusal = await client.fetchProtectedResource(config, tokens.access_token, route, 'GET').then(() => null, (e) => e);
  }
  assert.equal(refusal?.status, 401);
  assert.equal(refusal.cause[0].parameters.error_description, 'revoked');
});

test('the sidecar recorded the client, never trusting it', () => {
  const dir = process.env.JITGATE_AUDIT;
  const segments = readdirSync(dir).filter((f) => /^audit-\d{20}\.jsonl$/.test(f)).sort();
  const lines = segments.flatMap((f) => readFileSync(`${dir}/${f}`, 'utf8').split('\n').filter(Boolean));
  const events = lines.map((l) => JSON.parse(l).event);
  const issued = events.filter((e) => e.event === 'token.exchange');
  assert.ok(issued.length >= 3, `${issued.length} exchanges`);
  assert.ok(issued.every((e) => e.client_id === CLIENT_ID && e.sub === 'alice'));
  assert.ok(issued.some((e) => e.dpop_proof === true && e.dpop_bound === true));
});

// RFC 7638: the SHA-256 of the required members in order (an EC P-256 key).
async function jktOf({ crv, kty, x, y }) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(JSON.stringify({ crv, kty, x, y })));
  return Buffer.from(digest).toString('base64url');
}
