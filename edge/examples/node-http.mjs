// jitgate in front of a Node `http` handler: every request is checked before `handler` runs.
// Run: node edge/examples/node-http.mjs config.json 8080
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { Gate } from 'jitgate-edge';

/** A server that answers with `handler(req, res, claims)` once jitgate allows the request. */
export function protect(config, handler) {
  const gate = new Gate(config);
  return http.createServer(async (req, res) => {
    const url = `http://${req.headers.host ?? 'localhost'}${req.url}`;
    const verdict = await gate.check({ method: req.method, url, headers: req.headers });
    if (!verdict.allow) {
      res.writeHead(verdict.status, Object.fromEntries(verdict.headers));
      res.end(verdict.body);
      return;
    }
    handler(req, res, verdict.claims);
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, port = '8080'] = process.argv.slice(2);
  const config = await readFile(file, 'utf8');
  protect(config, (req, res, claims) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ hello: claims.sub, scope: claims.scope }));
  }).listen(Number(port));
}
