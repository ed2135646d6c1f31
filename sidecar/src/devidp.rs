//! The development issuer as a minimal OpenID provider, so people sign in for real in demos and
//! tests: a sign-in page for the configured `identity.dev_users`, the authorization-code flow with
//! PKCE (S256 only) for the `jitgate` CLI (loopback redirect, RFC 8252), and its ID token is the
//! development identity token the API already trusts. Never for production: it exists only with
//! `identity.dev_issuer: true`.
//!
//! Bounded: at most `MAX_CODES` codes waiting (60 s each, used once). Five failures in a minute
//! lock a user name out for the rest of it: every configured user is always counted (their table
//! is as long as the configuration), made-up names in a table of `MAX_TRACKED` that gives up its
//! oldest entry, so junk names can neither stop the counting for real users nor grow memory.

use crate::config::DevUser;
use crate::files::at;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

/// The clients this provider knows: the `jitgate` CLI (loopback redirect) and the sidecar's own
/// console (its configured `console.public_url` + `/ui/callback`).
pub const CLI_CLIENT: &str = "jitgate-cli";
pub const CONSOLE_CLIENT: &str = "jitgate-console";
const CODE_TTL_S: u64 = 60;
const MAX_CODES: usize = 1000;
const MAX_TRACKED: usize = 1000;
/// Longer names are no configured user's and are not remembered at all.
const MAX_USER_NAME_BYTES: usize = 256;
const MAX_FAILURES: u32 = 5;
const MIN_PASSWORD_CHARS: usize = 12;
/// Lifetime of the identity tokens it issues.
pub const ID_TOKEN_TTL_S: u64 = 3600;

/// A checked authorization request (`GET` or `POST /dev-idp/authorize`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub client_id: &'static str,
    pub redirect_uri: String,
    pub state: String,
    pub code_challenge: String,
}

struct Code {
    sub: String,
    groups: Vec<String>,
    request: AuthRequest,
    expires: u64,
}

struct User {
    groups: Vec<String>,
    password_digest: [u8; 32],
}

pub struct DevIdp {
    users: HashMap<String, User>,
    codes: HashMap<String, Code>,
    /// Failed sign-ins of configured users: count and the minute they are counted in.
    failures: HashMap<String, (u32, u64)>,
    /// The same for names nobody configured (so they answer as a real user would), bounded.
    strangers: HashMap<String, (u32, u64)>,
}

impl std::fmt::Debug for DevIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIdp").field("users", &self.users.keys().collect::<Vec<_>>()).finish()
    }
}

/// Why a sign-in or a code redemption failed (said to the client in OAuth terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadCredentials,
    LockedOut,
    Busy,
    InvalidGrant,
}

impl DevIdp {
    /// Reads the users' password files.
    pub fn load(users: &[DevUser]) -> Result<DevIdp, String> {
        let mut map = HashMap::new();
        for u in users {
            let text = std::fs::read_to_string(&u.password_file).map_err(at(&u.password_file))?;
            let password = text.trim_end_matches(['\r', '\n']);
            if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > 256 {
                return Err(format!(
                    "{}: a dev user's password is {MIN_PASSWORD_CHARS} to 256 characters",
                    u.password_file.display()
                ));
            }
            let user = User { groups: u.groups.clone(), password_digest: Sha256::digest(password.as_bytes()).into() };
            map.insert(u.sub.clone(), user);
        }
        Ok(DevIdp { users: map, codes: HashMap::new(), failures: HashMap::new(), strangers: HashMap::new() })
    }

    pub fn user_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Checks a user's password and, if right, issues a code for `request`.
    pub fn sign_in(&mut self, user: &str, password: &str, request: AuthRequest, now: u64) -> Result<String, Refusal> {
        let minute = now / 60;
        let known = self.users.contains_key(user);
        let table = if known { &mut self.failures } else { &mut self.strangers };
        let failed = table.get(user).filter(|(_, m)| *m == minute).map_or(0, |(n, _)| *n);
        if failed >= MAX_FAILURES {
            return Err(Refusal::LockedOut);
        }
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        let (ok, groups) = match self.users.get(user) {
            Some(u) => (bool::from(u.password_digest.ct_eq(&digest)), u.groups.clone()),
            None => (false, Vec::new()),
        };
        if !ok {
            if known {
                self.failures.insert(user.to_owned(), (failed + 1, minute));
            } else if user.len() <= MAX_USER_NAME_BYTES {
                self.strangers.retain(|_, (_, m)| *m == minute);
                if self.strangers.len() >= MAX_TRACKED && !self.strangers.contains_key(user) {
                    // Full of this minute's junk: one of them is forgotten (it could not sign in anyway).
                    if let Some(k) = self.strangers.keys().next().cloned() {
                        self.strangers.remove(&k);
                    }
                }
                self.strangers.insert(user.to_owned(), (failed + 1, minute));
            }
            return Err(Refusal::BadCredentials);
        }
        self.codes.retain(|_, c| c.expires > now);
        if self.codes.len() >= MAX_CODES {
            return Err(Refusal::Busy);
        }
        let code = crate::random::random_hex(24);
        let expires = now + CODE_TTL_S;
        self.codes.insert(code.clone(), Code { sub: user.to_owned(), groups, request, expires });
        Ok(code)
    }

    /// Redeems a code once: the subject and groups, if the redirect URI and PKCE verifier match.
    pub fn redeem(
        &mut self,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        now: u64,
    ) -> Result<(String, Vec<String>), Refusal> {
        let c = self.codes.remove(code).ok_or(Refusal::InvalidGrant)?;
        let verifier_ok = (43..=128).contains(&verifier.len())
            && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        let challenge = jitgate_token::encoding::b64_encode(&Sha256::digest(verifier.as_bytes()));
        let pkce = bool::from(challenge.as_bytes().ct_eq(c.request.code_challenge.as_bytes()));
        let same_client = c.request.client_id == client_id && c.request.redirect_uri == redirect_uri;
        if c.expires <= now || !same_client || !verifier_ok || !pkce {
            return Err(Refusal::InvalidGrant);
        }
        Ok((c.sub, c.groups))
    }
}

/// Checks the parameters of an authorization request: the CLI with a loopback redirect
/// (`http://127.0.0.1:<port>/callback`, any port) or the console with its own redirect
/// (`console_redirect`), the code flow with an S256 challenge.
pub fn auth_request(q: &HashMap<String, String>, console_redirect: Option<&str>) -> Result<AuthRequest, String> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let redirect_uri = get("redirect_uri");
    let client_id = match (get("client_id"), console_redirect) {
        (CLI_CLIENT, _) if loopback_redirect(redirect_uri) => CLI_CLIENT,
        (CLI_CLIENT, _) => return Err("redirect_uri must be http://127.0.0.1:<port>/callback".to_owned()),
        (CONSOLE_CLIENT, Some(r)) if r == redirect_uri => CONSOLE_CLIENT,
        (CONSOLE_CLIENT, _) => return Err("redirect_uri is not the console's".to_owned()),
        _ => return Err("unknown client_id".to_owned()),
    };
    if get("response_type") != "code" || get("code_challenge_method") != "S256" {
        return Err("response_type=code with code_challenge_method=S256 (PKCE) is required".to_owned());
    }
    let challenge = get("code_challenge");
    if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err("code_challenge must be a base64url SHA-256".to_owned());
    }
    let state = get("state");
    if state.is_empty() || state.len() > 256 || !state.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("state is 1-256 printable characters".to_owned());
    }
    Ok(AuthRequest {
        client_id,
        redirect_uri: redirect_uri.to_owned(),
        state: state.to_owned(),
        code_challenge: challenge.to_owned(),
    })
}

fn loopback_redirect(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://127.0.0.1:") else { return false };
    let Some((port, path)) = rest.split_once('/') else { return false };
    path == "callback" && !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok_and(|p| p > 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn idp() -> (tempfile::TempDir, DevIdp) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alice"), "correct horse battery\n").unwrap();
        let users =
            [DevUser { sub: "alice".into(), groups: vec!["sre".into()], password_file: dir.path().join("alice") }];
        let idp = DevIdp::load(&users).unwrap();
        (dir, idp)
    }

    fn request(verifier: &str) -> AuthRequest {
        AuthRequest {
            client_id: CLI_CLIENT,
            redirect_uri: "http://127.0.0.1:5000/callback".into(),
            state: "s".into(),
            code_challenge: jitgate_token::encoding::b64_encode(&Sha256::digest(verifier.as_bytes())),
        }
    }

    const VERIFIER: &str = "0123456789012345678901234567890123456789abcd";

    #[test]
    fn a_code_is_redeemed_once_with_its_verifier_and_redirect() {
        let (_d, mut idp) = idp();
        let code = idp.sign_in("alice", "correct horse battery", request(VERIFIER), 100).unwrap();
        let uri = "http://127.0.0.1:5000/callback";
        assert_eq!(idp.redeem(CLI_CLIENT, &code, uri, VERIFIER, 101), Ok(("alice".to_owned(), vec!["sre".to_owned()])));
        assert_eq!(idp.redeem(CLI_CLIENT, &code, uri, VERIFIER, 101), Err(Refusal::InvalidGrant), "used once");
        for (verifier, redirect, at) in [
            ("0123456789012345678901234567890123456789abce", uri, 101),
            (VERIFIER, "http://127.0.0.1:5001/callback", 101),
            (VERIFIER, uri, 100 + CODE_TTL_S),
        ] {
            let code = idp.sign_in("alice", "correct horse battery", request(VERIFIER), 100).unwrap();
            assert_eq!(idp.redeem(CLI_CLIENT, &code, redirect, verifier, at), Err(Refusal::InvalidGrant));
        }
    }

    #[test]
    fn wrong_passwords_lock_a_user_out_for_the_minute() {
        let (_d, mut idp) = idp();
        for _ in 0..MAX_FAILURES {
            assert_eq!(idp.sign_in("alice", "guess", request(VERIFIER), 120), Err(Refusal::BadCredentials));
        }
        assert_eq!(idp.sign_in("alice", "correct horse battery", request(VERIFIER), 121), Err(Refusal::LockedOut));
        assert!(idp.sign_in("alice", "correct horse battery", request(VERIFIER), 180).is_ok(), "the next minute");
        assert_eq!(
            idp.sign_in("mallory", "correct horse battery", request(VERIFIER), 180),
            Err(Refusal::BadCredentials)
        );
    }

    #[test]
    fn junk_user_names_do_not_stop_the_count_for_real_ones() {
        let (_d, mut idp) = idp();
        for i in 0..3 * MAX_TRACKED {
            assert_eq!(idp.sign_in(&format!("junk-{i}"), "x", request(VERIFIER), 120), Err(Refusal::BadCredentials));
        }
        assert!(idp.strangers.len() <= MAX_TRACKED, "made-up names stay bounded");
        for _ in 0..MAX_FAILURES {
            assert_eq!(idp.sign_in("alice", "guess", request(VERIFIER), 121), Err(Refusal::BadCredentials));
        }
        assert_eq!(idp.sign_in("alice", "correct horse battery", request(VERIFIER), 122), Err(Refusal::LockedOut));
        for _ in 0..MAX_FAILURES {
            let _ = idp.sign_in("nobody", "guess", request(VERIFIER), 123);
        }
        assert_eq!(idp.sign_in("nobody", "guess", request(VERIFIER), 123), Err(Refusal::LockedOut), "as a real user");
    }

    #[test]
    fn only_the_cli_with_a_loopback_redirect_and_pkce_is_served() {
        let base: HashMap<String, String> = [
            ("client_id", CLI_CLIENT),
            ("redirect_uri", "http://127.0.0.1:5000/callback"),
            ("response_type", "code"),
            ("code_challenge_method", "S256"),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("state", "xyz"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert!(auth_request(&base, None).is_ok());
        for (k, v) in [
            ("client_id", "other"),
            ("client_id", CONSOLE_CLIENT),
            ("redirect_uri", "http://evil.example:5000/callback"),
            ("redirect_uri", "http://127.0.0.1:5000/elsewhere"),
            ("redirect_uri", "http://127.0.0.1@evil.example/callback"),
            ("code_challenge_method", "plain"),
            ("code_challenge", "short"),
            ("state", ""),
        ] {
            let mut q = base.clone();
            q.insert(k.to_owned(), v.to_owned());
            assert!(auth_request(&q, None).is_err(), "{k}={v}");
        }
    }
}
