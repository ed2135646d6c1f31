// jitgate-edge for Node and Deno: loads the engine next to this file, then exports the API.
// Workers-style runtimes import `jitgate-edge/core` and call `setup(wasm)` themselves.
import { setup } from './core.js';

const file = new URL('./jitgate_edge_bg.wasm', import.meta.url);
const bytes = globalThis.Deno
  ? await globalThis.Deno.readFile(file)
  : await (await import('node:fs/promises')).readFile(file);
await setup(bytes);

export { Gate, denial, forwarded, setup, signatureVerdicts } from './core.js';
