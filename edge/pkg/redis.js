// A replay ledger in Redis, shared by every isolate and process that uses the same server: each
// key passes once (SET NX) and is kept while the token or proof it stands for can still pass.
// `client`: a connected node-redis client (`createClient` from the `redis` package, v4 or later;
// only its `sendCommand` is used).

/** Redis refuses writes when `maxmemory` is reached under `noeviction`: the ledger is full. */
const FULL = /^OOM /;
/** The engine's shortest key lifetime (`ledger::MIN_LIFETIME_S`), in milliseconds. */
const MIN_LIFETIME_MS = 1000;

export function redisLedger(client, { prefix = 'jitgate:replay:' } = {}) {
  return {
    async claim(key, until) {
      // A time to live from this isolate's clock, not an instant on Redis's: `EXAT` at or before
      // Redis's now answers OK and forgets the key at once (a replay passes), and the two clocks
      // need not agree. Never less than the engine's minimum.
      const ttl = Math.max(Math.ceil(until * 1000 - Date.now()), MIN_LIFETIME_MS);
      try {
        const set = await client.sendCommand(['SET', prefix + key, '1', 'NX', 'PX', String(ttl)]);
        return set === 'OK' ? 'fresh' : 'seen';
      } catch (e) {
        if (FULL.test(e?.message ?? '')) return 'full';
        throw e;
      }
    },
  };
}
