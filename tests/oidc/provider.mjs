// A real, OpenID-certified identity provider (panva/oidc-provider, pinned in package.json)
// for the OIDC tests: started by `tests/support/oidc.rs` on a free loopback port.
//
//   node provider.mjs '<json config>'
//
// config: { port, clients: [client metadata], accounts: { id: claims } }
//
// devInteractions serve the login form (any password; the login is the account id), consent
// is granted automatically, refresh tokens are always issued, back-channel and RP-initiated
// logout are on. Test controls (never part of a real provider):
//   POST /test/disable?account=ID               the account disappears (refresh is refused)
//   POST /test/backchannel?client=ID&account=ID the provider sends its back-channel logout
//                                               for that account's last session at that client
import http from 'node:http';
import Provider from 'oidc-provider';

const cfg = JSON.parse(process.argv[2]);
const issuer = `http://127.0.0.1:${cfg.port}`;
const disabled = new Set();
const lastSid = new Map();

const configuration = {
  clients: cfg.clients.map((c) => ({
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: c.client_secret ? 'client_secret_basic' : 'none',
    backchannel_logout_session_required: true,
    ...c,
  })),
  pkce: { methods: ['S256'], required: () => true },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name', 'groups'],
  },
  // Every claim in the ID token too (not only at userinfo), like most providers do.
  conformIdTokenClaims: false,
  cookies: { keys: ['gatehouse-test-provider-cookie-key'] },
  ttl: { Session: 3600, Grant: 3600, RefreshToken: 3600, AccessToken: 600, IdToken: 600 },
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  async findAccount(ctx, id) {
    if (!cfg.accounts[id] || disabled.has(id)) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...cfg.accounts[id] }) };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile offline_access');
    grant.addOIDCClaims(['email', 'email_verified', 'preferred_username', 'name', 'groups']);
    await grant.save();
    return grant;
  },
};

const provider = new Provider(issuer, configuration);
provider.on('authorization.success', (ctx) => {
  const { session, client } = ctx.oidc;
  if (session && client) lastSid.set(`${client.clientId} ${session.accountId}`, session.sidFor(client.clientId));
});
provider.on('backchannel.error', (ctx, err) => console.error('backchannel error', err.message));
provider.on('server_error', (ctx, err) => console.error('server error', err));

const app = provider.callback();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  if (req.method === 'POST' && url.pathname === '/test/disable') {
    disabled.add(url.searchParams.get('account'));
    res.end('ok');
    return;
  }
  if (req.method === 'POST' && url.pathname === '/test/backchannel') {
    const client = await provider.Client.find(url.searchParams.get('client'));
    const account = url.searchParams.get('account');
    const sid = lastSid.get(`${url.searchParams.get('client')} ${account}`);
    if (!client || !sid) {
      res.statusCode = 404;
      res.end('no such client or session');
      return;
    }
    try {
      await client.backchannelLogout(account, sid);
      res.end(sid);
    } catch (e) {
      res.statusCode = 502;
      res.end(String(e.message));
    }
    return;
  }
  app(req, res);
});
server.listen(cfg.port, '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
