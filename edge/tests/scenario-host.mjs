// jitgate-edge as the harness's second host (`jitgate-harness run --envoy ...`): the listener
// answers like Envoy with the filter in front of the echo upstream (a 200 carries the headers the
// upstream got), the admin port serves the counters as /stats/prometheus, audit records go to the
// log file as Envoy logs them, and decision/reason to the access log (the filter state's stand-in).
// Usage: node scenario-host.mjs CONFIG.json LOG ACCESS_LOG; prints {"listen", "admin"} when ready.
import http from 'node:http';
import { appendFileSync, readFileSync } from 'node:fs';
import { Gate } from '../pkg/index.js';

const [configFile, logFile, accessLogFile] = process.argv.slice(2);
const log = (line) => appendFileSync(logFile, `${line}\n`);
let gate;
try {
  gate = new Gate(readFileSync(configFile, 'utf8'));
} catch (e) {
  // As Envoy with a plugin that cannot start: the cause in the log, every request a 503.
  log(`jitgate: ${e.message}`);
}

/** The request's headers as sent, repeated ones kept (Node's `req.headers` would drop some). */
function rawPairs(req) {
  const out = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) out.push([req.rawHeaders[i].toLowerCase(), req.rawHeaders[i + 1]]);
  return out;
}

/** One response with its length (the harness's HTTP client reads exactly one per request). */
function send(res, status, headers, body) {
  res.writeHead(status, [...headers, ['content-length', String(Buffer.byteLength(body))]].flat()).end(body);
}

async function serve(req, res) {
  if (!gate) {
    send(res, 503, [], 'no healthy upstream');
    return;
  }
  const headers = rawPairs(req);
  const host = headers.find(([k]) => k === 'host')?.[1] ?? 'localhost';
  const verdict = await gate.check({ method: req.method, url: `http://${host}${req.url}`, headers });
  for (const record of verdict.audit) log(`jitgate.audit ${JSON.stringify(record)}`);
  const id = headers.find(([k]) => k === 'x-request-id')?.[1];
  const first = verdict.audit[0];
  if (id && first) {
    appendFileSync(accessLogFile, `${id} decision=${verdict.allow ? 'allow' : 'deny'} reason=${first.reason}\n`);
  }
  if (!verdict.allow) {
    send(res, verdict.status, verdict.headers, verdict.body);
    return;
  }
  const upstream = new Map(headers.filter(([k]) => k !== 'host'));
  for (const name of verdict.remove ?? []) upstream.delete(name);
  for (const [name, value] of verdict.headers) upstream.set(name, value);
  send(res, 200, [['content-type', 'application/json']], JSON.stringify({ headers: Object.fromEntries(upstream) }));
}

function stats(req, res) {
  const lines = Object.entries(gate?.metrics() ?? {}).map(([name, v]) => `${name.replace(/[.-]/g, '_')} ${v}`);
  send(res, 200, [['content-type', 'text/plain']], `${lines.join('\n')}\n`);
}

const listen = (handler) => new Promise((ok) => {
  const server = http.createServer((req, res) => handler(req, res).catch((e) => send(res, 500, [], String(e))));
  server.listen(0, '127.0.0.1', () => ok(server.address().port));
});
const ports = { listen: await listen(serve), admin: await listen(async (req, res) => stats(req, res)) };
console.log(JSON.stringify(ports));
