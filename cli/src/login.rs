//! `jitgate login`: the OpenID authorization-code flow with PKCE (S256) and a loopback redirect
//! (RFC 8252 §7.3): the browser signs in at the provider and comes back to a one-shot listener on
//! 127.0.0.1; the code and its verifier are exchanged for an ID token.

use crate::client::Client;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

pub const CLIENT_ID: &str = "jitgate-cli";

fn random_b64(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    jitgate_token::encoding::b64_encode(&b)
}

/// Signs in through `provider` (an OpenID discovery base URL); returns the ID token and its lifetime.
pub fn login(http: &Client, provider: &str, open_browser: bool, timeout: Duration) -> Result<(String, u64), String> {
    let discovery =
        http.get_json(&format!("{}/.well-known/openid-configuration", provider.trim_end_matches('/')), None)?;
    let endpoint = |k: &str| -> Result<String, String> {
        discovery.get(k).and_then(Value::as_str).map(str::to_owned).ok_or(format!("the provider has no {k}"))
    };
    let (authorize, token_endpoint) = (endpoint("authorization_endpoint")?, endpoint("token_endpoint")?);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let (verifier, state) = (random_b64(48), random_b64(24));
    let challenge = jitgate_token::encoding::b64_encode(&Sha256::digest(verifier.as_bytes()));
    let start = format!("{authorize}?");
    let mut url = form_urlencoded::Serializer::for_suffix(start.clone(), start.len());
    url.append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", "openid")
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let url = url.finish();
    eprintln!("Open this address to sign in:\n  {url}");
    if open_browser {
        // Best effort: without a browser the address above is enough.
        let _ = std::process::Command::new("xdg-open").arg(&url).spawn();
    }
    let code = wait_for_code(&listener, &state, timeout)?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("client_id", CLIENT_ID),
        ("code_verifier", verifier.as_str()),
    ];
    let answer = http.post_form(&token_endpoint, &form)?;
    let id_token = answer.get("id_token").and_then(Value::as_str).ok_or("the provider returned no id_token")?;
    Ok((id_token.to_owned(), answer.get("expires_in").and_then(Value::as_u64).unwrap_or(3600)))
}

/// Serves the redirect: one request to `/callback` with the matching `state` (others get 400).
fn wait_for_code(listener: &TcpListener, state: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    loop {
        let (stream, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(format!("no sign-in within {} s", timeout.as_secs()));
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        let _ = BufReader::new(&stream).take(8192).read_until(b'\n', &mut bytes);
        let line = String::from_utf8_lossy(&bytes);
        let target = line.split_whitespace().nth(1).unwrap_or("");
        let query = target.strip_prefix("/callback?").unwrap_or("");
        let params: std::collections::HashMap<String, String> =
            form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let (status, text, outcome) = match (params.get("state"), params.get("code"), params.get("error")) {
            (Some(s), Some(code), None) if s == state => {
                ("200 OK", "Signed in to jitgate. You can close this tab.", Ok(code.clone()))
            }
            (Some(s), _, Some(err)) if s == state => {
                ("400 Bad Request", "Sign-in failed.", Err(format!("sign-in failed: {err}")))
            }
            _ => ("400 Bad Request", "Not the sign-in this command started.", Err(String::new())),
        };
        let mut out = &stream;
        let _ = write!(
            out,
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        match outcome {
            Ok(code) => return Ok(code),
            Err(e) if !e.is_empty() => return Err(e),
            Err(_) => {} // a stray request (a favicon, another tab): keep waiting
        }
    }
}
