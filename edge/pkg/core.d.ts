/** One audit record (docs/architecture.md §7), as the Envoy filter logs it. */
export type AuditRecord = Record<string, unknown> & { event: string; decision?: string; reason?: string };

export interface Verdict {
  allow: boolean;
  status: number;
  /** Allowed: headers to set upstream. Denied: the response's headers. */
  headers: [string, string][];
  /** Allowed: client-sent claim headers to drop before forwarding. */
  remove?: string[];
  body: string;
  /** Allowed: the subject, scopes and grant the filter forwards (`x-jit-sub` ...). */
  claims?: { sub?: string; scope?: string; grant?: string };
  audit: AuditRecord[];
  /** The request could not be read (not an absolute http(s) URL). */
  error?: string;
}

export interface RequestLike {
  method: string;
  url: string;
  headers: Headers | [string, string][] | Record<string, string | string[] | undefined>;
}

/** Loads the engine from its bytes or a compiled module, and tests WebCrypto. Idempotent. */
export function setup(wasm: BufferSource | WebAssembly.Module): Promise<void>;

/**
 * A replay ledger shared by isolates: may `key` (a hash, hex) pass, once, until `until` (Unix
 * seconds)? `fresh` the first time, `seen` after, `full` when the store has no room; a throw or
 * any other answer is a failed store (the request gets a 503: fail closed).
 */
export interface Ledger {
  claim(key: string, until: number): Promise<'fresh' | 'seen' | 'full' | string>;
}

export interface GateOptions {
  /** Who checks ES256, RS256, PS256 and EdDSA: `native` (node:crypto) or `webcrypto`; default the first that works. */
  verifier?: 'native' | 'webcrypto';
  /** Shared replay ledger; default: this isolate's memory. */
  ledger?: Ledger;
}

export class Gate {
  /** The plugin configuration (object or JSON text). Throws naming the bad field. */
  constructor(config: string | object, options?: GateOptions);
  /** Who checks asymmetric signatures for this gate. */
  readonly crypto: 'native' | 'webcrypto' | 'rust';
  check(request: Request | RequestLike): Promise<Verdict>;
  /** Every counter by the Envoy filter's name (`jitgate.allow`, `jitgate.deny.<reason>`, ...). */
  metrics(): Record<string, number>;
  free(): void;
}

export function denial(verdict: Verdict): Response;
export function forwarded(request: Request, verdict: Verdict): Request;

/** For parity tests: one signature under a JWK, by Rust and by the path requests take here. */
export function signatureVerdicts(
  jwk: object,
  message: Uint8Array,
  signature: Uint8Array,
  verifier: 'native' | 'webcrypto',
): Promise<{ rust: boolean; edge: boolean | undefined; path: 'native' | 'webcrypto' | 'rust' | 'refused' }>;
