// A Gatehouse-issued access token for the bench, got the way a person gets one, without a
// browser: an admin creates a local account, the bench signs in with its password at
// /login/local, registers a public client (RFC 7591), follows /oauth/authorize through the
// sign-in hand-off, approves on the consent page, and exchanges the code (PKCE S256) at
// /oauth/token. Needs a Gatehouse with GATEHOUSE_OAUTH_SERVER=true, `oauth2` among its strategies,
// local accounts on (GATEHOUSE_LOGIN_LOCAL, the default) and PUBLIC_URL = `gh`.
import { createHash, randomBytes } from 'node:crypto';

const REDIRECT = 'http://127.0.0.1:9/bench-callback';

/**
 * Signs `username` in and returns an ES256 JWT access token for `gh/mcp` (Gatehouse's own
 * authorization server). `admin` carries the admin credentials (headers). Throws with the step
 * and the HTTP status when a step fails.
 */
export async function gatehouseIssuedToken(gh, admin, username = 'bench-oauth') {
  const jar = new Map();
  const send = async (url, init = {}) => {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(new URL(url, gh), { ...init, redirect: 'manual', headers: { ...init.headers, ...(cookie ? { cookie } : {}) } });
    for (const c of res.headers.getSetCookie()) {
      const pair = c.split(';')[0];
      const at = pair.indexOf('=');
      jar.set(pair.slice(0, at), pair.slice(at + 1));
    }
    return res;
  };
  const form = (o) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(o).toString() });
  const expect = async (res, ok, step) => {
    if (!ok.includes(res.status)) throw new Error(`issued token: ${step} answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
    return res;
  };

  const password = randomBytes(18).toString('base64url');
  await expect(await fetch(`${gh}/api/v1/local-accounts`, { method: 'POST', headers: { 'content-type': 'application/json', ...admin }, body: JSON.stringify({ username, password }) }), [201], 'creating the local account');
  const loginPage = await (await expect(await send('/login'), [200], 'the login page')).text();
  const csrf = /name="csrf" value="([^"]+)"/.exec(loginPage)?.[1];
  await expect(await send('/login/local', form({ username, password, csrf: csrf ?? '', return_to: '/login' })), [302, 303], 'signing in');

  const registered = await expect(
    await fetch(`${gh}/oauth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_name: 'bench', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none' }) }),
    [201],
    'registering the client',
  );
  const { client_id: clientId } = await registered.json();
  const verifier = randomBytes(32).toString('base64url');
  const authorize = new URL(`${gh}/oauth/authorize`);
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT,
    scope: 'mcp',
    state: 'bench',
    resource: `${gh}/mcp`,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  }).toString();

  let res = await send(authorize.href);
  let code;
  for (let hops = 0; hops < 12 && !code; hops++) {
    if (res.status >= 300 && res.status < 400) {
      const location = new URL(res.headers.get('location'), gh);
      if (location.href.startsWith(REDIRECT)) code = location.searchParams.get('code');
      else res = await send(location.href);
      continue;
    }
    const page = await (await expect(res, [200], 'the consent page')).text();
    const action = /<form method="post" action="([^"]+)"/.exec(page)?.[1];
    const token = /name="csrf" value="([^"]+)"/.exec(page)?.[1];
    if (!action || !token) throw new Error(`issued token: no consent form in ${page.slice(0, 300)}`);
    res = await send(action, form({ csrf: token, decision: 'approve' }));
  }
  if (!code) throw new Error('issued token: no authorization code after the consent');
  const exchanged = await expect(
    await fetch(`${gh}/oauth/token`, form({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: clientId, code_verifier: verifier })),
    [200],
    'the token request',
  );
  return (await exchanged.json()).access_token;
}
