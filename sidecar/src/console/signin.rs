//! How the console signs people in: the development issuer (demos and tests), an external OpenID
//! provider (authorization code + PKCE + nonce through the `openidconnect` crate), or the headers
//! of an authenticating proxy in front of the sidecar (oauth2-proxy style), believed only from the
//! configured source addresses.

use super::binding::Secrets;
use crate::blocking::lock;
use crate::config::sign_in::{OidcConfig, SignInConfig, TrustedHeadersConfig};
use crate::identity::Subject;
use crate::outbound::outbound_url_allowed;
use axum::http::{HeaderMap, HeaderName};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Largest provider answer (discovery document, JWKS, token response) read.
const MAX_PROVIDER_ANSWER_BYTES: u64 = 256 * 1024;
/// How long discovered provider metadata (and the keys in it) is used before it is fetched again.
const METADATA_TTL_S: u64 = 600;
const MAX_USER_BYTES: usize = 256;
const MAX_GROUPS: usize = 64;

/// The configured way in.
#[derive(Debug)]
pub enum SignIn {
    Dev,
    Oidc(Box<OidcProvider>),
    TrustedHeaders(TrustedHeaders),
}

impl SignIn {
    /// The runtime side of the configured way in (provider metadata is fetched on first use).
    pub fn new(config: &SignInConfig) -> SignIn {
        match config {
            SignInConfig::Dev => SignIn::Dev,
            SignInConfig::Oidc(o) => {
                SignIn::Oidc(Box::new(OidcProvider { config: o.clone(), metadata: Mutex::new(None) }))
            }
            SignInConfig::TrustedHeaders(t) => SignIn::TrustedHeaders(TrustedHeaders(t.clone())),
        }
    }
}

/// An external OpenID provider; its metadata is discovered on first use and cached.
pub struct OidcProvider {
    config: OidcConfig,
    metadata: Mutex<Option<(CoreProviderMetadata, u64)>>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish()
    }
}

impl OidcProvider {
    pub fn client_id(&self) -> &str {
        &self.config.client_id
    }

    /// Fresh metadata, or the last good metadata when the provider cannot be reached.
    fn metadata(&self, now: u64) -> Result<CoreProviderMetadata, String> {
        let cached = lock(&self.metadata).clone();
        if let Some((m, at)) = &cached {
            if now < at.saturating_add(METADATA_TTL_S) {
                return Ok(m.clone());
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|e| e.to_string())?;
        match CoreProviderMetadata::discover(&issuer, &call) {
            Ok(m) => {
                *lock(&self.metadata) = Some((m.clone(), now));
                Ok(m)
            }
            Err(e) => cached.map(|(m, _)| m).ok_or_else(|| format!("the sign-in provider is unreachable: {e}")),
        }
    }

    /// The address to send the browser to for the sign-in whose state, PKCE verifier and nonce
    /// are `secrets`.
    pub fn start(&self, redirect: &str, secrets: &Secrets, now: u64) -> Result<String, String> {
        let metadata = self.metadata(now)?;
        let client =
            CoreClient::from_provider_metadata(metadata, ClientId::new(self.config.client_id.clone()), self.secret())
                .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).map_err(|e| e.to_string())?);
        let challenge =
            PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(secrets.pkce_verifier.clone()));
        let (state, nonce) = (secrets.state.clone(), secrets.nonce.clone());
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        );
        for s in &self.config.scopes {
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
        let client =
            CoreClient::from_provider_metadata(metadata, ClientId::new(self.config.client_id.clone()), self.secret())
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
        self.config.client_secret.clone().map(ClientSecret::new)
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
pub struct TrustedHeaders(TrustedHeadersConfig);

impl TrustedHeaders {
    /// The person the proxy names, if the request came from the proxy and names one well-formed.
    pub fn vouched(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<Subject, &'static str> {
        let peer = peer.ok_or("no source address")?;
        if !self.0.from.iter().any(|c| c.contains(peer.ip())) {
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
        let user =
            text(&self.0.user_header)?.map(str::trim).filter(|u| !u.is_empty()).ok_or("the proxy named nobody")?;
        if user.len() > MAX_USER_BYTES || !user.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the user name is not 1-256 visible ASCII characters");
        }
        let groups: Vec<String> = text(&self.0.groups_header)?
            .map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        if groups.len() > MAX_GROUPS || groups.iter().any(|g| g.len() > 128) {
            return Err("too many groups, or a group longer than 128 bytes");
        }
        Ok(Subject { iss: self.0.issuer.clone(), sub: user.to_owned(), groups })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::sign_in::Cidr;

    fn proxy(from: &[&str]) -> TrustedHeaders {
        TrustedHeaders(TrustedHeadersConfig {
            from: from.iter().map(|s| Cidr::parse(s).unwrap()).collect(),
            issuer: "https://proxy.example".to_owned(),
            user_header: HeaderName::from_static("x-forwarded-user"),
            groups_header: HeaderName::from_static("x-forwarded-groups"),
        })
    }

    fn at(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40_000))
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
}
