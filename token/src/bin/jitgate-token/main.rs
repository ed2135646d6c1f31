//! Developer tool: make keys and mint (or deliberately break) tokens for demos and tests.
//!
//!   jitgate-token keygen --alg ES256 --kid k1            private JWK on stdout
//!   jitgate-token jwks KEYFILE...                        public JWKS of the given private keys
//!   jitgate-token mint --key KEYFILE --claims JSON [--typ at+jwt] [--header JSON] [--now SECS] [--count N]
//!                                                       (--count: N tokens, one per line, jti suffixed -0, -1, ...)
//!   jitgate-token jkt KEYFILE                           RFC 7638 thumbprint, for a token's cnf.jkt
//!   jitgate-token dpop --key KEYFILE --htm GET --htu URL [--token TOKEN] [--nonce N] [--jti J] [--now SECS] [--count N]
//!     (without --token: no `ath`, a proof for a token endpoint, RFC 9449 §5)
//!                                                       a DPoP proof (RFC 9449) for one request
//!                                                       (--count: N proofs with random jtis, one per line)
//!   jitgate-token sign-call --id KEY_ID --secret-file FILE --method M --path P [--body-file FILE|-] [--ts SECS] [--nonce B64URL]
//!                                                       the Authorization value of a signed caller call (sign_call.rs)
//!
//! In claims, a string "now", "now+N" or "now-N" becomes a NumericDate relative to --now (or the
//! system clock: this is a tool, not the filter).

// serde_json reads through `[]` yield Null, and every write goes to an object built here.
#![allow(clippy::indexing_slicing)]

use jitgate_token::encoding::b64_encode;
use jitgate_token::mint::{dpop_proof, jkt, sign_compact, SigningKey};
use jitgate_token::Alg;
use serde_json::{json, Value};
use std::process::ExitCode;

mod sign_call;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn load_key(path: &str) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let jwk: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    if jwk["kty"] == "oct" {
        let k = jwk["k"].as_str().ok_or("oct key without k")?;
        let secret = jitgate_token::encoding::b64_decode(k.as_bytes()).map_err(|e| e.to_string())?;
        return Ok(SigningKey::hs256(jwk["kid"].as_str(), &secret));
    }
    SigningKey::from_private_jwk(&jwk).map_err(|e| format!("{path}: {e}"))
}

fn resolve_times(v: &mut Value, now: i64) {
    match v {
        Value::String(s) if s == "now" || s.starts_with("now+") || s.starts_with("now-") => {
            let offset: i64 = s.get(3..).filter(|o| !o.is_empty()).and_then(|o| o.parse().ok()).unwrap_or(0);
            *v = json!(now.saturating_add(offset));
        }
        Value::Object(map) => map.values_mut().for_each(|x| resolve_times(x, now)),
        _ => {}
    }
}

fn count_arg(args: &[String]) -> Result<usize, String> {
    arg(args, "--count").map_or(Ok(1), |n| n.parse()).map_err(|_| "--count takes a number".to_owned())
}

fn now_arg(args: &[String]) -> Result<i64, String> {
    match arg(args, "--now") {
        Some(n) => n.parse().map_err(|_| "--now takes Unix seconds".to_owned()),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())
            .map(|d| d.as_secs() as i64),
    }
}

fn run(args: &[String]) -> Result<String, String> {
    match args.first().map(String::as_str) {
        Some("jkt") => jkt(&load_key(args.get(1).ok_or("jkt needs a key file")?)?).map_err(|e| e.to_string()),
        Some("dpop") => {
            use sha2::{Digest, Sha256};
            let key = load_key(&arg(args, "--key").ok_or("--key is required")?)?;
            let now = now_arg(args)?;
            let count = count_arg(args)?;
            let mut claims = json!({"htm": arg(args, "--htm").unwrap_or_else(|| "GET".into()),
                "htu": arg(args, "--htu").ok_or("--htu is required")?, "iat": now});
            // The access token the proof goes with (its ath); none for a proof to a token endpoint.
            if let Some(token) = arg(args, "--token") {
                claims["ath"] = json!(b64_encode(&Sha256::digest(token.as_bytes())));
            }
            if let Some(n) = arg(args, "--nonce") {
                claims["nonce"] = json!(n);
            }
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                claims["jti"] = json!(match arg(args, "--jti").filter(|_| count == 1) {
                    Some(j) => j,
                    None => {
                        use rand_core::RngCore;
                        let mut r = [0u8; 16];
                        rand_core::OsRng.fill_bytes(&mut r);
                        b64_encode(&r)
                    }
                });
                out.push(dpop_proof(&key, &claims).map_err(|e| e.to_string())?);
            }
            Ok(out.join("\n"))
        }
        Some("keygen") => {
            let alg = Alg::parse(&arg(args, "--alg").unwrap_or_else(|| "ES256".into())).map_err(|e| e.to_string())?;
            let key = SigningKey::generate(alg, arg(args, "--kid").as_deref()).map_err(|e| e.to_string())?;
            let jwk =
                if alg == Alg::HS256 { key.public_jwk() } else { key.private_jwk().map_err(|e| e.to_string())? };
            Ok(jwk.to_string())
        }
        Some("jwks") => {
            let keys = args.get(1..).unwrap_or_default().iter().map(|p| load_key(p).map(|k| k.public_jwk()));
            Ok(json!({"keys": keys.collect::<Result<Vec<_>, _>>()?}).to_string())
        }
        Some("mint") => {
            let key = load_key(&arg(args, "--key").ok_or("--key is required")?)?;
            let now = now_arg(args)?;
            let mut claims: Value = serde_json::from_str(&arg(args, "--claims").ok_or("--claims is required")?)
                .map_err(|e| e.to_string())?;
            resolve_times(&mut claims, now);
            let mut header =
                json!({"alg": key.alg().name(), "typ": arg(args, "--typ").unwrap_or_else(|| "at+jwt".into())});
            if let Some(kid) = &key.kid {
                header["kid"] = json!(kid);
            }
            if let Some(extra) = arg(args, "--header") {
                let extra: Value = serde_json::from_str(&extra).map_err(|e| e.to_string())?;
                for (k, v) in extra.as_object().cloned().unwrap_or_default() {
                    header[k] = v;
                }
            }
            let count = count_arg(args)?;
            if count == 1 {
                return sign_compact(&key, &header, claims.to_string().as_bytes()).map_err(|e| e.to_string());
            }
            let jti = claims["jti"].as_str().unwrap_or("t").to_owned();
            let mut out = Vec::with_capacity(count);
            for i in 0..count {
                claims["jti"] = json!(format!("{jti}-{i}"));
                out.push(sign_compact(&key, &header, claims.to_string().as_bytes()).map_err(|e| e.to_string())?);
            }
            Ok(out.join("\n"))
        }
        Some("sign-call") => sign_call::run(args.get(1..).unwrap_or_default()),
        _ => Err("usage: jitgate-token keygen|jwks|mint|jkt|dpop|sign-call (see the source header)".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jitgate-token: {e}");
            ExitCode::from(2)
        }
    }
}
