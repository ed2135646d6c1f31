//! How the console signs people in: the development issuer (demos and tests), an external OpenID
//! provider (authorization code + PKCE + nonce through the `openidconnect` crate), or the headers
//! of an authenticating proxy in front of the sidecar (oauth2-proxy style), believed only from the
//! configured source addresses.

use super::binding::Secrets;
use crate::config::{outbound_url_allowed, IdentityIssuer};
use crate::files::at;
use crate::identity::Subject;
use axum::http::{HeaderMap, HeaderName};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Largest provider answer (discovery document, JWKS, token response) read.
const MAX_PROVIDER_ANSWER_BYTES: u64 = 256 * 1024;
/// How long discovered provider metadata (and the keys in it) is used before it is fetched again.
const METADATA_TTL_S: u64 = 600;
const MAX_USER_BYTES: usize = 256;
const MAX_GROUPS: usize = 64;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignIn {
    #[serde(default)]
    oidc: Option<RawOidc>,
    #[serde(default)]
    trusted_headers: Option<RawTrustedHeaders>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    /// The provider's issuer URL (discovery at `<issuer>/.well-known/openid-configuration`).
    issuer: String,
    client_id: String,
    /// The client secret (relative to the configuration file); absent: a public client (PKCE only).
    #[serde(default)]
    client_secret_file: Option<std::path::PathBuf>,
    /// Scopes asked for besides `openid` (e.g. the one that puts groups in the ID token).
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrustedHeaders {
    /// Addresses or CIDR ranges of the authenticating proxy; requests from anywhere else are refused.
    from: Vec<String>,
    /// The issuer people signed in this way are recorded under (their grants are `(issuer, user)`'s).
    issuer: String,
    #[serde(default = "default_user_header")]
    user_header: String,
    /// Comma-separated groups; absent header: no groups.
    #[serde(default = "default_groups_header")]
    groups_header: String,
}

fn default_user_header() -> String {
    "x-forwarded-user".to_owned()
}

fn default_groups_header() -> String {
    "x-forwarded-groups".to_owned()
}

/// The configured way in.
#[derive(Debug)]
pub enum SignIn {
    Dev,
    Oidc(Box<OidcProvider>),
    TrustedHeaders(TrustedHeaders),
}

impl RawSignIn {
    /// Checks the block against the rest of the configuration; `base` resolves the secret file.
    pub fn compile(self, base: &Path, dev_issuer: bool, issuers: &[IdentityIssuer]) -> Result<SignIn, String> {
        match (self.oidc, self.trusted_headers) {
            (None, None) if dev_issuer => Ok(SignIn::Dev),
            (None, None) => Err("console: no sign-in: configure sign_in.oidc or sign_in.trusted_headers, \
                                 or identity.dev_issuer for demos"
                .to_owned()),
            (Some(_), Some(_)) => Err("console.sign_in: oidc or trusted_headers, not both".to_owned()),
            (Some(o), None) => OidcProvider::compile(o, base, issuers).map(|p| SignIn::Oidc(Box::new(p))),
            (None, Some(t)) => TrustedHeaders::compile(t).map(SignIn::TrustedHeaders),
        }
    }
}

/// An external OpenID provider; its metadata is discovered on first use and cached.
pub struct OidcProvider {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    scopes: Vec<String>,
    metadata: Mutex<Option<(CoreProviderMetadata, u64)>>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider").field("issuer", &self.issuer).field("client_id", &self.client_id).finish()
    }
}

impl OidcProvider {
    fn compile(o: RawOidc, base: &Path, issuers: &[IdentityIssuer]) -> Result<OidcProvider, String> {
        let bad = |what: &str| format!("console.sign_in.oidc: {what}");
        if !outbound_url_allowed(&o.issuer) || o.issuer.len() > 512 {
            return Err(bad("issuer must be https (plain http only to this machine)"));
        }
        if o.client_id.is_empty() || o.client_id.len() > 256 {
            return Err(bad("client_id: 1-256 bytes"));
        }
        if o.scopes.len() > 16 || o.scopes.iter().any(|s| s.is_empty() || s.len() > 64 || s.contains(' ')) {
            return Err(bad("scopes: at most 16, each 1-64 bytes without spaces"));
        }
        // The ID token is the person's subject token for exchanges: the identity verifier must trust it.
        if !issuers.iter().any(|i| i.issuer == o.issuer && i.audience == o.client_id) {
            return Err(bad(&format!(
                "identity.issuers needs an entry with issuer `{}` and audience `{}` (the console's ID tokens \
                 are verified and exchanged with it)",
                o.issuer, o.client_id
            )));
        }
        let client_secret = match o.client_secret_file {
            Some(f) => {
                let path = base.join(f);
                let text = std::fs::read_to_string(&path).map_err(at(&path))?;
                let secret = text.trim();
                if secret.is_empty() || secret.len() > 512 {
                    return Err(format!("{}: a client secret of 1-512 bytes", path.display()));
                }
                Some(secret.to_owned())
            }
            None => None,
        };
        Ok(OidcProvider {
            issuer: o.issuer,
            client_id: o.client_id,
            client_secret,
            scopes: o.scopes,
            metadata: Mutex::new(None),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Fresh metadata, or the last good metadata when the provider cannot be reached.
    fn metadata(&self, now: u64) -> Result<CoreProviderMetadata, String> {
        let cached = crate::lock(&self.metadata).clone();
        if let Some((m, at)) = &cached {
            if now < at.saturating_add(METADATA_TTL_S) {
                return Ok(m.clone());
            }
        }
        let issuer = IssuerUrl::new(self.issuer.clone()).map_err(|e| e.to_string())?;
        match CoreProviderMetadata::discover(&issuer, &call) {
            Ok(m) => {
                *crate::lock(&self.metadata) = Some((m.clone(), now));
                Ok(m)
            }
            Err(e) => cached.map(|(m, _)| m).ok_or_else(|| format!("the sign-in provider is unreachable: {e}")),
        }
    }

    /// The address to send the browser to for the sign-in whose state, PKCE verifier and nonce
    /// are `secrets`.
    pub fn start(&self, redirect: &str, secrets: &Secrets, now: u64) -> Result<String, String> {
        let metadata = self.metadata(now)?;
        let client = CoreClient::from_provider_metadata(metadata, ClientId::new(self.client_id.clone()), self.secret())
            .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).map_err(|e| e.to_string())?);
        let challenge =
            PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(secrets.pkce_verifier.clone()));
        let (state, nonce) = (secrets.state.clone(), secrets.nonce.clone());
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        );
        for s in &self.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, _, _) = request.set_pkce_challenge(challenge).url();
        Ok(url.to_string())
    }

    /// Redeems the code; the ID token is checked here (signature by the provider's keys, issuer,
    /// audience, expiry, nonce). Returns the raw ID token and its expiry.
    pub fn finish(
        &self,
        redirect: &str,
        code: &str,
        verifier: &str,
        nonce: &str,
        now: u64,
    ) -> Result<(String, u64), String> {
        let metadata = self.metadata(now)?;
        let client = CoreClient::from_provider_metadata(metadata, ClientId::new(self.client_id.clone()), self.secret())
            .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).map_err(|e| e.to_string())?);
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| e.to_string())?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request(&call)
            .map_err(|e| format!("the provider refused the code: {e}"))?;
        let id_token = answer.id_token().ok_or("the provider returned no ID token")?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(nonce.to_owned()))
            .map_err(|e| format!("the provider's ID token was refused: {e}"))?;
        let exp = u64::try_from(claims.expiration().timestamp()).unwrap_or(0);
        Ok((id_token.to_string(), exp))
    }

    fn secret(&self) -> Option<ClientSecret> {
        self.client_secret.clone().map(ClientSecret::new)
    }
}

/// One call to the provider: https (or http to this machine), no redirects, bounded in time and size.
fn call(request: openidconnect::HttpRequest) -> Result<openidconnect::HttpResponse, std::io::Error> {
    let url = request.uri().to_string();
    if !outbound_url_allowed(&url) {
        return Err(std::io::Error::other(format!("{url}: not https")));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent.run(request).map_err(|e| std::io::Error::other(format!("{url}: {e}")))?;
    let (parts, mut body) = response.into_parts();
    let bytes = body
        .with_config()
        .limit(MAX_PROVIDER_ANSWER_BYTES)
        .read_to_vec()
        .map_err(|e| std::io::Error::other(format!("{url}: {e}")))?;
    Ok(openidconnect::http::Response::from_parts(parts, bytes))
}

/// An authenticating proxy's say-so, believed only from its addresses.
#[derive(Debug)]
pub struct TrustedHeaders {
    from: Vec<Cidr>,
    pub issuer: String,
    user_header: HeaderName,
    groups_header: HeaderName,
}

impl TrustedHeaders {
    fn compile(t: RawTrustedHeaders) -> Result<TrustedHeaders, String> {
        let bad = |what: String| format!("console.sign_in.trusted_headers: {what}");
        if t.from.is_empty() || t.from.len() > 64 {
            return Err(bad("from: 1-64 addresses or CIDR ranges of the authenticating proxy".to_owned()));
        }
        let from = t
            .from
            .iter()
            .map(|c| Cidr::parse(c).ok_or_else(|| bad(format!("from: `{c}` is not an address or CIDR range"))))
            .collect::<Result<_, _>>()?;
        if t.issuer.is_empty() || t.issuer.len() > 256 {
            return Err(bad("issuer: 1-256 bytes".to_owned()));
        }
        let header = |h: &str| HeaderName::try_from(h).map_err(|_| bad(format!("`{h}` is not a header name")));
        Ok(TrustedHeaders {
            from,
            issuer: t.issuer,
            user_header: header(&t.user_header)?,
            groups_header: header(&t.groups_header)?,
        })
    }

    /// The person the proxy names, if the request came from the proxy and names one well-formed.
    pub fn vouched(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<Subject, &'static str> {
        let peer = peer.ok_or("no source address")?;
        if !self.from.iter().any(|c| c.contains(peer.ip())) {
            return Err("this request did not come through the authenticating proxy");
        }
        let text = |name: &HeaderName| -> Result<Option<&str>, &'static str> {
            let mut values = headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (None, _) => Ok(None),
                (Some(v), None) => v.to_str().map(Some).map_err(|_| "a sign-in header is not visible ASCII"),
                (Some(_), Some(_)) => Err("a sign-in header is repeated"),
            }
        };
        let user = text(&self.user_header)?.map(str::trim).filter(|u| !u.is_empty()).ok_or("the proxy named nobody")?;
        if user.len() > MAX_USER_BYTES || !user.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the user name is not 1-256 visible ASCII characters");
        }
        let groups: Vec<String> = text(&self.groups_header)?
            .map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        if groups.len() > MAX_GROUPS || groups.iter().any(|g| g.len() > 128) {
            return Err("too many groups, or a group longer than 128 bytes");
        }
        Ok(Subject { iss: self.issuer.clone(), sub: user.to_owned(), groups })
    }
}

/// An address range: `10.0.0.0/8`, `::1/128`, or a single address.
#[derive(Debug, Clone, Copy)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { net: addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

/// Whether the first `bits` bits of `a` and `b` agree.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let bits = usize::from(bits);
    a.iter().zip(b).enumerate().all(|(i, (x, y))| {
        let start = i * 8;
        if bits <= start {
            return true;
        }
        let keep = (bits - start).min(8);
        let mask = u8::MAX.checked_shl(u32::try_from(8 - keep).unwrap_or(0)).unwrap_or(0);
        x & mask == y & mask
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn proxy(from: &[&str]) -> TrustedHeaders {
        TrustedHeaders::compile(RawTrustedHeaders {
            from: from.iter().map(|s| (*s).to_owned()).collect(),
            issuer: "https://proxy.example".to_owned(),
            user_header: default_user_header(),
            groups_header: default_groups_header(),
        })
        .unwrap()
    }

    fn at(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40_000))
    }

    #[test]
    fn ranges_contain_what_they_should_and_nothing_else() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.255.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()), "IPv4-mapped addresses count as IPv4");
        let odd = Cidr::parse("192.168.0.128/25").unwrap();
        assert!(odd.contains("192.168.0.200".parse().unwrap()) && !odd.contains("192.168.0.127".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(!Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("::1/128").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "example.com", "10.0.0.0/", "10.0.0/8"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_proxy_is_believed_from_its_addresses_only_and_its_headers_are_checked() {
        let p = proxy(&["127.0.0.1/32"]);
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", "alice".parse().unwrap());
        h.insert("x-forwarded-groups", "sre, oncall ,".parse().unwrap());
        let who = p.vouched(&h, at("127.0.0.1")).unwrap();
        assert_eq!((who.iss.as_str(), who.sub.as_str()), ("https://proxy.example", "alice"));
        assert_eq!(who.groups, ["sre", "oncall"]);
        assert!(p.vouched(&h, at("127.0.0.2")).is_err(), "not the proxy's address");
        assert!(p.vouched(&h, None).is_err(), "no address, no trust");
        h.append("x-forwarded-user", "bob".parse().unwrap());
        assert!(p.vouched(&h, at("127.0.0.1")).is_err(), "two users named");
        h.remove("x-forwarded-user");
        assert!(p.vouched(&h, at("127.0.0.1")).is_err(), "nobody named");
        h.insert("x-forwarded-user", "al ice".parse().unwrap());
        assert!(p.vouched(&h, at("127.0.0.1")).is_err(), "spaces are not a user name");
    }

    #[test]
    fn a_sign_in_block_is_checked_against_the_identity_issuers() {
        let raw = |issuer: &str| RawSignIn {
            oidc: Some(RawOidc {
                issuer: issuer.to_owned(),
                client_id: "console".to_owned(),
                client_secret_file: None,
                scopes: vec![],
            }),
            trusted_headers: None,
        };
        let issuer: IdentityIssuer = serde_yaml::from_str(
            "{issuer: 'https://idp.example', audience: console, jwks_url: 'https://idp.example/jwks'}",
        )
        .unwrap();
        let base = Path::new(".");
        assert!(matches!(
            raw("https://idp.example").compile(base, false, std::slice::from_ref(&issuer)),
            Ok(SignIn::Oidc(_))
        ));
        let e = raw("https://other.example").compile(base, false, &[issuer]).unwrap_err();
        assert!(e.contains("identity.issuers needs an entry"), "{e}");
        assert!(raw("http://idp.example").compile(base, false, &[]).unwrap_err().contains("https"));
        assert!(RawSignIn::default().compile(base, false, &[]).is_err(), "no way in at all");
        assert!(matches!(RawSignIn::default().compile(base, true, &[]), Ok(SignIn::Dev)));
    }
}
