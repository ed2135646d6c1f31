// jitgate-edge, runtime-neutral part: `setup(wasm)` with the module's bytes or a compiled
// WebAssembly.Module (what Workers' `import wasm from '...wasm'` gives), then `new Gate(config)`.
// Signatures go to the runtime's own crypto when it passes a known-answer test, else to Rust.
import { initSync, Gate as RawGate, signatureParity } from './jitgate_edge.js';
import { verifiers } from './verifiers.js';

// Per verifier that passed the known-answer test: its answers to the engine's self-test jobs.
let passed;

/** Loads the engine (once) and tests the runtime's verifiers against known answers. */
export async function setup(wasm) {
  if (passed) return;
  initSync({ module: wasm });
  const found = {};
  for (const [name, verifier] of Object.entries(verifiers)) {
    const jobs = RawGate.selfTestJobs();
    await verifyAll(jobs, verifier);
    const codes = answers(jobs);
    if (RawGate.selfTestPasses(codes)) found[name] = codes;
  }
  passed = found;
}

/** Sets each job's `ok` to the verifier's verdict, or leaves it unset when it cannot check it.
 *  Synchronous verifiers finish before this returns. */
function verifyAll(jobs, verifier) {
  if (verifier.sync) {
    for (const job of jobs) {
      try {
        job.ok = verifier.verify(job);
      } catch {
        job.ok = undefined;
      }
    }
    return undefined;
  }
  return Promise.all(jobs.map(async (job) => {
    try {
      job.ok = await verifier.verify(job);
    } catch {
      job.ok = undefined;
    }
  }));
}

/** The verdicts as the engine takes them: 1 valid, 0 invalid, 2 not checked. */
function answers(jobs) {
  return Uint8Array.from(jobs, (j) => (j.ok === true ? 1 : j.ok === false ? 0 : 2));
}

/** `[name, value]` pairs from a Headers, a list of pairs, or Node's header object (the engine
 *  lower-cases names). */
function headerPairs(headers) {
  if (!headers) return [];
  if (Array.isArray(headers)) return headers.map(([k, v]) => [String(k), String(v)]);
  if (typeof headers.entries === 'function' && typeof headers.get === 'function') return [...headers.entries()];
  const out = [];
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    out.push([k, Array.isArray(v) ? v.join(', ') : String(v)]);
  }
  return out;
}

export class Gate {
  #raw;
  #verifier;
  #name;
  #ledger;

  /**
   * `config`: the plugin configuration (object or JSON text); errors name the field.
   * `options.verifier`: `native` or `webcrypto` (default: the first this runtime passed).
   * `options.ledger`: a replay ledger shared by every isolate (`{ claim(key, until) }`, e.g.
   * `redisLedger`); without it, single-use tokens and DPoP proofs are remembered in this one.
   */
  constructor(config, options = {}) {
    if (!passed) throw new Error('jitgate-edge: call setup(wasm) first');
    const json = typeof config === 'string' ? config : JSON.stringify(config);
    const name = options.verifier ?? Object.keys(passed)[0];
    if (name !== undefined && !(name in verifiers)) throw new Error(`jitgate-edge: unknown verifier \`${name}\``);
    this.#raw = new RawGate(json, passed[name], options.ledger !== undefined);
    this.#ledger = options.ledger;
    this.#verifier = verifiers[name];
    this.#name = this.#raw.hostCrypto ? name : 'rust';
  }

  /** Who checks asymmetric signatures: `native`, `webcrypto` or `rust` (`crypto: wasm`, or no
   *  runtime crypto passed its known-answer test). */
  get crypto() {
    return this.#name;
  }

  /**
   * Decides a request (`Request`, or `{method, url, headers}`):
   * `{allow, status, headers, body, claims, remove, audit}`.
   */
  async check(request) {
    const { method, url } = request;
    const headers = headerPairs(request.headers);
    // The engine answers with a verdict (text), signature jobs (an array) or a pause on the ledger.
    let out = this.#raw.check(method, url, headers, undefined);
    if (Array.isArray(out)) {
      await verifyAll(out, this.#verifier);
      out = this.#raw.check(method, url, headers, answers(out));
    }
    if (typeof out !== 'string') out = this.#raw.resume(out, await this.#claim(out.key, out.until));
    return JSON.parse(out);
  }

  /** The counters by the Envoy filter's names: `{"jitgate.allow": 3, "jitgate.deny.expired": 1, ...}`. */
  metrics() {
    return JSON.parse(this.#raw.metrics());
  }

  /** The shared ledger's answer; a store that fails or answers oddly is `failed` (a 503). */
  async #claim(key, until) {
    try {
      const outcome = await this.#ledger.claim(key, until);
      return ['fresh', 'seen', 'full'].includes(outcome) ? outcome : 'failed';
    } catch {
      return 'failed';
    }
  }

  /** Frees the engine's memory; the gate cannot be used afterwards. */
  free() {
    this.#raw.free();
  }
}

/** The refusal as a `Response`: status, RFC 6750 headers and body, as the Envoy filter sends. */
export function denial(verdict) {
  return new Response(verdict.body || null, { status: verdict.status, headers: verdict.headers });
}

/** The request to send upstream: client-sent claim headers removed, the verified ones set. */
export function forwarded(request, verdict) {
  const headers = new Headers(request.headers);
  for (const name of verdict.remove ?? []) headers.delete(name);
  for (const [name, value] of verdict.headers) headers.set(name, value);
  return new Request(request, { headers });
}

/**
 * One signature under a JWK, judged by the engine's Rust code and by the path a request takes
 * with `verifier` (`native` or `webcrypto`; the path is `rust` for algorithms the runtime is not
 * asked about, `refused` when the engine refuses the signature before any crypto).
 */
export async function signatureVerdicts(jwk, message, signature, verifier) {
  const { key, rust, job } = signatureParity(JSON.stringify(jwk), message, signature);
  if (key === false) return { rust: false, edge: false, path: 'refused' };
  if (job === false) return { rust, edge: false, path: 'refused' };
  if (job === null) return { rust, edge: rust, path: 'rust' };
  await verifyAll([job], verifiers[verifier]);
  return { rust, edge: job.ok, path: verifier };
}
