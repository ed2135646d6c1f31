// An external OpenID provider for the console's sign-in tests: panva/oidc-provider (a certified
// OpenID Connect implementation), one confidential client, users with passwords from a JSON file,
// and a `roles` claim in the ID token (the sidecar maps it to groups). Consent is implied for the
// one client, so sign-in is a single page.
// usage: node provider.mjs PORT CONFIG.json
//   CONFIG.json: {"client_id", "client_secret", "redirect_uri", "users": {"alice": {"password", "roles": [...]}}}
import { readFileSync } from 'node:fs';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, configFile] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configFile, 'utf8'));
const issuer = `http://127.0.0.1:${port}`;
// A signing key of this run's own (the library's built-in keys are the same for everyone).
const signingKey = { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (uid, error) => `<!doctype html><title>Test IdP sign-in</title>
<h1>Test IdP</h1>${error ? `<p id="idp-error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}">
<input id="idp-username" name="username" autocomplete="username">
<input id="idp-password" name="password" type="password">
<button id="idp-sign-in" type="submit">Sign in</button></form>`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: [config.redirect_uri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: { openid: ['sub'], roles: ['roles'] },
  conformIdTokenClaims: false, // the roles go in the ID token, which is what the sidecar reads
  cookies: { keys: [randomBytes(32).toString('hex')] },
  jwks: { keys: [signingKey] },
  features: { devInteractions: { enabled: false } },
  findAccount: async (ctx, sub) => (config.users[sub]
    ? { accountId: sub, claims: async () => ({ sub, roles: config.users[sub].roles }) }
    : undefined),
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid roles');
    await grant.save();
    return grant;
  },
});

const readForm = async (req) => {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 4096) break;
  }
  return new URLSearchParams(body);
};

provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([\w-]+)$/);
  if (!m) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  ctx.type = 'html';
  if (ctx.method === 'GET') {
    ctx.body = page(details.uid);
    return undefined;
  }
  const form = await readForm(ctx.req);
  const user = config.users[form.get('username') ?? ''];
  if (!user || user.password !== form.get('password')) {
    ctx.status = 401;
    ctx.body = page(details.uid, 'Wrong user name or password.');
    return undefined;
  }
  const to = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId: form.get('username') } },
    { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(to);
  return undefined;
});

provider.listen(Number(port), '127.0.0.1', () => console.log(`test idp on ${issuer}`));
