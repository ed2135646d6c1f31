import type { Ledger } from './core.js';

/** A replay ledger in Redis (a node-redis v4+ client): `SET key 1 NX EXAT until` per use. */
export function redisLedger(
  client: { sendCommand(args: string[]): Promise<unknown> },
  options?: { prefix?: string },
): Ledger;
