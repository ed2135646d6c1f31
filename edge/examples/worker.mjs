import { Gate, denial, forwarded } from 'jitgate-edge';

let gate;
export default {
  async fetch(request, env) {
    gate ??= new Gate(env.JITGATE_CONFIG); // the same JSON as the Envoy filter's configuration
    const verdict = await gate.check(request);
    if (!verdict.allow) return denial(verdict); // 401/403 with RFC 6750 headers, as Envoy sends
    return fetch(forwarded(request, verdict)); // upstream sees x-jit-sub, x-jit-scope, x-jit-grant
  },
};
