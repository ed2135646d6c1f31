import type { Ledger } from './core.js';

/**
 * A replay ledger in Redis (a node-redis v4+ client): `SET key 1 NX PX ttl` per use, `ttl` the time
 * until `until` by this isolate's clock, never under the engine's one-second minimum.
 */
export function redisLedger(
  client: { sendCommand(args: string[]): Promise<unknown> },
  options?: { prefix?: string },
): Ledger;
