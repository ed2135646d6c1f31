//! How the console signs people in, as configured (`console.sign_in`): the development issuer, an
//! external OpenID provider, or an authenticating proxy's headers. Checked here against the rest
//! of the configuration; `console::signin` acts on it.

use super::identity::IdentityIssuer;
use crate::files::at;
use crate::outbound::outbound_url_allowed;
use axum::http::HeaderName;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::Path;

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
#[derive(Debug, Clone)]
pub enum SignInConfig {
    Dev,
    Oidc(OidcConfig),
    TrustedHeaders(TrustedHeadersConfig),
}

/// An external OpenID provider the console sends people to.
#[derive(Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    /// Absent: a public client (PKCE only).
    pub client_secret: Option<String>,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig").field("issuer", &self.issuer).field("client_id", &self.client_id).finish()
    }
}

/// An authenticating proxy, believed only from its addresses.
#[derive(Debug, Clone)]
pub struct TrustedHeadersConfig {
    pub from: Vec<Cidr>,
    /// The issuer people signed in this way are recorded under.
    pub issuer: String,
    pub user_header: HeaderName,
    /// Comma-separated groups; absent header: no groups.
    pub groups_header: HeaderName,
}

impl RawSignIn {
    /// Checks the block against the rest of the configuration; `base` resolves the secret file.
    pub fn compile(self, base: &Path, dev_issuer: bool, issuers: &[IdentityIssuer]) -> Result<SignInConfig, String> {
        match (self.oidc, self.trusted_headers) {
            (None, None) if dev_issuer => Ok(SignInConfig::Dev),
            (None, None) => Err("console: no sign-in: configure sign_in.oidc or sign_in.trusted_headers, \
                                 or identity.dev_issuer for demos"
                .to_owned()),
            (Some(_), Some(_)) => Err("console.sign_in: oidc or trusted_headers, not both".to_owned()),
            (Some(o), None) => o.compile(base, issuers).map(SignInConfig::Oidc),
            (None, Some(t)) => t.compile().map(SignInConfig::TrustedHeaders),
        }
    }
}

impl RawOidc {
    fn compile(self, base: &Path, issuers: &[IdentityIssuer]) -> Result<OidcConfig, String> {
        let o = self;
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
        Ok(OidcConfig { issuer: o.issuer, client_id: o.client_id, client_secret, scopes: o.scopes })
    }
}

impl RawTrustedHeaders {
    fn compile(self) -> Result<TrustedHeadersConfig, String> {
        let t = self;
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
        Ok(TrustedHeadersConfig {
            from,
            issuer: t.issuer,
            user_header: header(&t.user_header)?,
            groups_header: header(&t.groups_header)?,
        })
    }
}

/// An address range: `10.0.0.0/8`, `::1/128`, or a single address.
#[derive(Debug, Clone, Copy)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { net: addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
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
            Ok(SignInConfig::Oidc(_))
        ));
        let e = raw("https://other.example").compile(base, false, &[issuer]).unwrap_err();
        assert!(e.contains("identity.issuers needs an entry"), "{e}");
        assert!(raw("http://idp.example").compile(base, false, &[]).unwrap_err().contains("https"));
        assert!(RawSignIn::default().compile(base, false, &[]).is_err(), "no way in at all");
        assert!(matches!(RawSignIn::default().compile(base, true, &[]), Ok(SignInConfig::Dev)));
    }
}
