// The examples run: the Workers-style handler (the file, and the book's edge chapter shows it
// verbatim), the Node `http` server and the Hono middleware, each in front of a real upstream.
import test from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { mint, claims, config, bearer } from './support.mjs';
import worker from '../examples/worker.mjs';
import { protect } from '../examples/node-http.mjs';
import { app } from '../examples/hono.mjs';

const listen = (server) => new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server.address().port)));

test('docs/edge.md shows examples/worker.mjs verbatim, in 10 lines of code', async () => {
  const page = await readFile(new URL('../../docs/edge.md', import.meta.url), 'utf8');
  const file = await readFile(new URL('../examples/worker.mjs', import.meta.url), 'utf8');
  const block = page.split('<!-- edge/examples/worker.mjs -->')[1]?.match(/```js\n([\s\S]*?)```/)?.[1];
  assert.equal(block, file);
  assert.equal(file.split('\n').filter((l) => l.trim()).length, 10);
});

test('Workers-style handler: allowed requests reach the upstream with verified claims, others never do', async (t) => {
  const seen = [];
  const upstream = http.createServer((req, res) => { seen.push(req.headers); res.end('order 1'); });
  const port = await listen(upstream);
  t.after(() => upstream.close());
  const env = { JITGATE_CONFIG: JSON.stringify(config()) };
  const url = `http://127.0.0.1:${port}/orders/1`;
  const ok = await worker.fetch(new Request(url, { headers: { ...bearer(mint(claims())), 'x-jit-sub': 'mallory' } }), env);
  assert.equal(ok.status, 200);
  assert.equal(await ok.text(), 'order 1');
  assert.deepEqual([seen[0]['x-jit-sub'], seen[0]['x-jit-grant']], ['alice', 'grant-7']);
  const refused = await worker.fetch(new Request(url), env);
  assert.equal(refused.status, 401);
  assert.match(refused.headers.get('www-authenticate'), /^Bearer realm="jitgate"/);
  const scope = await worker.fetch(new Request(url, { headers: bearer(mint(claims({ scope: 'orders:write' }))) }), env);
  assert.equal(scope.status, 403);
  assert.match(scope.headers.get('www-authenticate'), /error="insufficient_scope"/);
  assert.equal(seen.length, 1, 'the refused requests never reached the upstream');
});

test('Node http: the handler runs only for allowed requests, with the claims', async (t) => {
  const server = protect(JSON.stringify(config()), (req, res, jit) => res.end(JSON.stringify({ hello: jit.sub })));
  const port = await listen(server);
  t.after(() => server.close());
  const url = `http://127.0.0.1:${port}/orders/9`;
  const ok = await fetch(url, { headers: bearer(mint(claims())) });
  assert.deepEqual([ok.status, await ok.json()], [200, { hello: 'alice' }]);
  const refused = await fetch(url);
  assert.equal(refused.status, 401);
  assert.match(refused.headers.get('www-authenticate'), /^Bearer realm="jitgate"/);
  const expired = await fetch(url, { headers: bearer(mint(claims({ iat: 1000, exp: 1300 }))) });
  assert.equal(expired.status, 401);
});

test('Hono middleware: refusals as the filter sends them, claims in the context', async () => {
  const api = app(config());
  const ok = await api.request('http://api.example/orders/7', { headers: bearer(mint(claims())) });
  assert.deepEqual([ok.status, await ok.json()], [200, { order: '7', for: 'alice' }]);
  const refused = await api.request('http://api.example/orders/7');
  assert.equal(refused.status, 401);
  const scope = await api.request('http://api.example/orders/7', { headers: bearer(mint(claims({ scope: 'x:y' }))) });
  assert.equal(scope.status, 403);
});
