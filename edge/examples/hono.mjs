// jitgate as Hono middleware: refusals go back as the Envoy filter sends them, and handlers read
// the verified claims from the context.
import { Hono } from 'hono';
import { Gate, denial } from 'jitgate-edge';

/** Middleware that checks every request with `config` and sets `c.get('jit')` to its claims. */
export function jitgate(config) {
  const gate = new Gate(config);
  return async (c, next) => {
    const verdict = await gate.check(c.req.raw);
    if (!verdict.allow) return denial(verdict);
    c.set('jit', verdict.claims);
    await next();
  };
}

export function app(config) {
  const api = new Hono();
  api.use('*', jitgate(config));
  api.get('/orders/:id', (c) => c.json({ order: c.req.param('id'), for: c.get('jit').sub }));
  return api;
}
