// The shared replay ledger on a real Redis (Debian's redis-server, started here): two gates stand
// for two isolates; a single-use token or a DPoP proof passes once across both (also in its last
// fresh second), the keys expire with what they stand for and never sooner than the engine's
// minimum, and a store that is down or full answers 503 (fail closed).
import test from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { createClient } from 'redis';
import { Gate } from '../pkg/index.js';
import { redisLedger } from '../pkg/redis.js';
import { mint, claims, config, bearer, dpopClient } from './support.mjs';

const freePort = () => new Promise((ok) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
});

async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((ok) => net.connect(port, '127.0.0.1').on('connect', function () { this.end(); ok(true); })
      .on('error', () => ok(false)));
    if (up) return { port, proc };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('redis-server did not start');
}

const redis = await startRedis();
process.on('exit', () => redis.proc.kill());
const client = createClient({ url: `redis://127.0.0.1:${redis.port}`, disableOfflineQueue: true,
  socket: { reconnectStrategy: false } });
client.on('error', () => {});
await client.connect();
const withDpop = { ...config(), rules: [...config().rules,
  { name: 'dpop', path: { prefix: '/pay' }, scopes: ['orders:read'], replay: 'dpop' }] };
const isolates = [new Gate(withDpop, { ledger: redisLedger(client) }), new Gate(withDpop, { ledger: redisLedger(client) })];
const check = (gate, url, headers) => gate.check(new Request(url, { method: 'POST', headers }));

test('a single-use token passes once across isolates, and its key lives as long as the token', async () => {
  const c = claims();
  const t = mint(c);
  const first = await check(isolates[0], 'https://api.example/once', bearer(t));
  assert.equal(first.allow, true, JSON.stringify(first));
  const again = await check(isolates[1], 'https://api.example/once', bearer(t));
  assert.deepEqual([again.status, again.audit[0].reason], [401, 'replayed']);
  const keys = await client.keys('jitgate:replay:*');
  assert.equal(keys.length, 1);
  const expireAt = await client.sendCommand(['EXPIRETIME', keys[0]]);
  assert.ok(expireAt >= c.exp && expireAt <= c.exp + 120, `expires at ${expireAt}, token at ${c.exp}`);
  assert.equal((await check(isolates[1], 'https://api.example/orders/1', bearer(t))).allow, true,
    'a rule without replay never asks the ledger');
});

test('a token the gate has cached (no signature to check) still asks the shared ledger', async () => {
  const t = mint(claims());
  assert.equal((await check(isolates[0], 'https://api.example/orders/1', bearer(t))).allow, true, 'now cached');
  assert.equal((await check(isolates[0], 'https://api.example/once', bearer(t))).allow, true);
  const again = await check(isolates[0], 'https://api.example/once', bearer(t));
  assert.deepEqual([again.status, again.audit[0].reason], [401, 'replayed']);
});

test('eight concurrent uses of one token over two isolates: exactly one passes', async () => {
  for (let round = 0; round < 20; round++) {
    const t = mint(claims());
    const all = await Promise.all(Array.from({ length: 8 }, (_, i) => check(isolates[i % 2], 'https://api.example/once', bearer(t))));
    assert.equal(all.filter((r) => r.allow).length, 1, `round ${round}`);
  }
});

test('a DPoP proof passes once across isolates', async () => {
  const client = dpopClient();
  const t = mint(claims({ cnf: { jkt: client.jkt } }));
  const headers = { authorization: `DPoP ${t}`, dpop: client.proof('POST', 'https://api.example/pay', t) };
  const first = await check(isolates[0], 'https://api.example/pay', headers);
  assert.equal(first.allow, true, JSON.stringify(first));
  const again = await check(isolates[1], 'https://api.example/pay', headers);
  assert.deepEqual([again.status, again.audit[0].reason], [401, 'dpop_replayed']);
  const fresh = { ...headers, dpop: client.proof('POST', 'https://api.example/pay', t) };
  assert.equal((await check(isolates[1], 'https://api.example/pay', fresh)).allow, true, 'a new proof passes');
});

test('a key claimed at or past its until is still kept for the engine\'s minimum lifetime', async () => {
  const ledger = redisLedger(client);
  const now = Math.floor(Date.now() / 1000);
  for (const [i, until] of [now, now - 30].entries()) {
    const key = `past-until-${i}`;
    assert.equal(await ledger.claim(key, until), 'fresh');
    assert.equal(await ledger.claim(key, until), 'seen', `until ${until - now} s from now`);
    const ttl = await client.sendCommand(['PTTL', `jitgate:replay:${key}`]);
    assert.ok(ttl > 0 && ttl <= 1000, `kept ${ttl} ms`);
  }
});

test('a DPoP proof in its last fresh second passes once across isolates', async () => {
  const dpop = dpopClient();
  const t = mint(claims({ cnf: { jkt: dpop.jkt } }));
  // Fresh through iat + max age (60 s) + skew (the default 30 s): this is that second, just begun.
  await new Promise((r) => setTimeout(r, 1005 - (Date.now() % 1000)));
  const iat = Math.floor(Date.now() / 1000) - 60 - 30;
  const headers = { authorization: `DPoP ${t}`, dpop: dpop.proof('POST', 'https://api.example/pay', t, undefined, iat) };
  const first = await check(isolates[0], 'https://api.example/pay', headers);
  assert.equal(first.allow, true, JSON.stringify(first.audit));
  const again = await check(isolates[1], 'https://api.example/pay', headers);
  assert.deepEqual([again.status, again.audit[0].reason], [401, 'dpop_replayed']);
});

test('a full store is a 503 ledger_full; a store that is down is a 503 (fail closed)', async () => {
  await client.sendCommand(['CONFIG', 'SET', 'maxmemory', '1']);
  try {
    const full = await check(isolates[0], 'https://api.example/once', bearer(mint(claims())));
    assert.deepEqual([full.status, full.audit[0].reason], [503, 'ledger_full']);
  } finally {
    await client.sendCommand(['CONFIG', 'SET', 'maxmemory', '0']);
  }
  redis.proc.kill();
  await new Promise((r) => redis.proc.once('exit', r));
  const down = await check(isolates[0], 'https://api.example/once', bearer(mint(claims())));
  assert.deepEqual([down.allow, down.status], [false, 503]);
  assert.equal(down.audit[0].reason, 'sidecar_unavailable');
  if (client.isOpen) client.destroy();
});
