// A replay ledger in Redis, shared by every isolate and process that uses the same server: each
// key passes once (SET NX) and expires when the token or proof it stands for does (EXAT).
// `client`: a connected node-redis client (`createClient` from the `redis` package, v4 or later;
// only its `sendCommand` is used).

/** Redis refuses writes when `maxmemory` is reached under `noeviction`: the ledger is full. */
const FULL = /^OOM /;

export function redisLedger(client, { prefix = 'jitgate:replay:' } = {}) {
  return {
    async claim(key, until) {
      try {
        const set = await client.sendCommand(['SET', prefix + key, '1', 'NX', 'EXAT', String(until)]);
        return set === 'OK' ? 'fresh' : 'seen';
      } catch (e) {
        if (FULL.test(e?.message ?? '')) return 'full';
        throw e;
      }
    },
  };
}
