// The package's types: the same API as jitgate-edge/core, loaded for Node and Deno.
export * from './core.js';
