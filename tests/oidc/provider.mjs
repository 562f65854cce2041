// The OpenID provider the tests start (tests/oidcprovider.py): oidc-provider, configured
// by a JSON file the tests write: issuer, port, signing keys, clients, users (password,
// groups), and the audience of its JWT access tokens. Its own login page checks the
// users' passwords; consent is given at once (a company's provider does so for its own
// applications).
import { readFileSync } from "node:fs";
import querystring from "node:querystring";
import Provider from "oidc-provider";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const users = config.users;

function claimsOf(id) {
  return { sub: id, preferred_username: id, groups: users[id].groups };
}

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: config.jwks,
  cookies: { keys: ["epe-tests-cookie-key"] },
  pkce: { required: () => true },
  claims: { openid: ["sub"], profile: ["preferred_username", "groups"] },
  findAccount: (ctx, id) =>
    users[id] ? { accountId: id, claims: () => claimsOf(id) } : undefined,
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: "api",
        audience: resource,
        accessTokenTTL: config.accessTokenTTL || 600,
        accessTokenFormat: "jwt",
        jwt: { sign: { alg: "RS256" } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) =>
    users[token.accountId] ? claimsOf(token.accountId) : undefined,
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope("openid profile email");
    grant.addResourceScope(ctx.oidc.params.resource || config.audience, "api");
    await grant.save();
    return grant;
  },
});

// The login page's form, checked before the provider's own handler signs the user in.
provider.use(async (ctx, next) => {
  if (ctx.method === "POST" && ctx.path.startsWith("/interaction/")) {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const raw = Buffer.concat(chunks).toString();
    const form = querystring.parse(raw);
    if (form.prompt === "login" && users[form.login]?.password !== form.password) {
      ctx.status = 401;
      ctx.type = "html";
      ctx.body = "<!DOCTYPE html><title>Sign-in failed</title><p>Wrong login or password.</p>";
      return;
    }
    ctx.request.body = raw;
  }
  await next();
});

provider.listen(config.port, "127.0.0.1", () => {
  console.log(`oidc provider ready on ${config.issuer}`);
});
