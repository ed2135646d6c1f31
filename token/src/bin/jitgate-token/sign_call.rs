//! `jitgate-token sign-call`: the `Authorization` value of a call signed as a filter signs it
//! (`jitgate_token::caller_auth`), so tests sign with the library instead of a second copy of
//! the scheme.
//!
//!   jitgate-token sign-call --id KEY_ID --secret-file FILE --method M --path P
//!                           [--body-file FILE|-] [--ts SECS] [--nonce BASE64URL]
//!
//! The secret file is the one the sidecar reads (`callers.secrets[].file`: unpadded base64url,
//! one line); the body comes from a file, `-` for stdin, or is empty. `--ts` and `--nonce` fix
//! what is otherwise the clock and 16 fresh random bytes (replay tests).

use jitgate_token::caller_auth;
use jitgate_token::encoding::b64_decode;
use std::io::Read;

/// Smallest caller secret the sidecar accepts, in bytes once decoded.
const MIN_SECRET_BYTES: usize = 32;
const MAX_SECRET_FILE_BYTES: u64 = 4096;
const NONCE_BYTES: usize = 16;
/// Bodies of caller calls are audit batches: bounded well above the sidecar's own limit.
const MAX_BODY_BYTES: u64 = 64 << 20;

/// Where the body of the signed call comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Empty,
    Stdin,
    File(String),
}

/// One `sign-call` invocation, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignCall {
    pub id: String,
    pub secret_file: String,
    pub method: String,
    pub path: String,
    pub body: Body,
    pub ts: Option<u64>,
    pub nonce: Option<Vec<u8>>,
}

/// Reads `--name VALUE` pairs; every option must be known, given once and have a value.
pub fn parse(args: &[String]) -> Result<SignCall, String> {
    const KNOWN: [&str; 7] = ["--id", "--secret-file", "--method", "--path", "--body-file", "--ts", "--nonce"];
    let mut given: Vec<(&str, &str)> = Vec::new();
    let mut rest = args.iter();
    while let Some(name) = rest.next() {
        let name = KNOWN.iter().find(|k| **k == name).ok_or_else(|| format!("sign-call: unknown argument {name}"))?;
        let value = rest.next().ok_or_else(|| format!("sign-call: {name} needs a value"))?;
        if given.iter().any(|(n, _)| n == name) {
            return Err(format!("sign-call: {name} given twice"));
        }
        given.push((name, value));
    }
    let get = |name: &str| given.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());
    let required = |name: &str| get(name).ok_or_else(|| format!("sign-call: {name} is required"));
    let id = required("--id")?;
    if !caller_auth::valid_id(&id) {
        return Err("sign-call: --id takes 1-64 of [A-Za-z0-9._-]".into());
    }
    let body = match get("--body-file").as_deref() {
        None => Body::Empty,
        Some("-") => Body::Stdin,
        Some(path) => Body::File(path.to_owned()),
    };
    let ts = get("--ts").map(|t| t.parse().map_err(|_| "sign-call: --ts takes Unix seconds".to_owned())).transpose()?;
    let nonce = get("--nonce")
        .map(|n| b64_decode(n.as_bytes()).map_err(|_| "sign-call: --nonce takes unpadded base64url".to_owned()))
        .transpose()?;
    Ok(SignCall {
        id,
        secret_file: required("--secret-file")?,
        method: required("--method")?,
        path: required("--path")?,
        body,
        ts,
        nonce,
    })
}

/// A caller secret file's bytes: unpadded base64url, at least 32 bytes once decoded.
pub fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    let secret = b64_decode(text.trim().as_bytes()).map_err(|_| "the secret file is not unpadded base64url")?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!("a caller secret needs at least {MIN_SECRET_BYTES} bytes"));
    }
    Ok(secret)
}

fn read_limited(mut from: impl Read, what: &str, max: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    from.by_ref().take(max.saturating_add(1)).read_to_end(&mut out).map_err(|e| format!("{what}: {e}"))?;
    if out.len() as u64 > max {
        return Err(format!("{what}: larger than {max} bytes"));
    }
    Ok(out)
}

fn now() -> Result<u64, String> {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).map_err(|e| e.to_string())
}

fn fresh_nonce() -> Vec<u8> {
    use rand_core::RngCore;
    let mut nonce = vec![0u8; NONCE_BYTES];
    rand_core::OsRng.fill_bytes(&mut nonce);
    nonce
}

/// Reads the secret and the body, and signs the call.
pub fn run(args: &[String]) -> Result<String, String> {
    let call = parse(args)?;
    let open = |path: &str| std::fs::File::open(path).map_err(|e| format!("{path}: {e}"));
    let secret_text = read_limited(open(&call.secret_file)?, &call.secret_file, MAX_SECRET_FILE_BYTES)?;
    let secret_text = String::from_utf8(secret_text).map_err(|_| format!("{}: not text", call.secret_file))?;
    let secret = decode_secret(&secret_text).map_err(|e| format!("{}: {e}", call.secret_file))?;
    let body = match &call.body {
        Body::Empty => Vec::new(),
        Body::Stdin => read_limited(std::io::stdin().lock(), "stdin", MAX_BODY_BYTES)?,
        Body::File(path) => read_limited(open(path)?, path, MAX_BODY_BYTES)?,
    };
    let ts = call.ts.map_or_else(now, Ok)?;
    let nonce = call.nonce.unwrap_or_else(fresh_nonce);
    caller_auth::authorization(&call.id, &secret, ts, &nonce, &call.method, &call.path, &body)
        .ok_or_else(|| "sign-call: the secret is not a usable HMAC key".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    const BASE: [&str; 8] = ["--id", "filters", "--secret-file", "s", "--method", "POST", "--path", "/v1/audit"];

    #[test]
    fn the_required_options_make_a_call_with_an_empty_body_now_and_a_fresh_nonce() {
        let call = parse(&args(&BASE)).unwrap();
        assert_eq!(
            call,
            SignCall {
                id: "filters".into(),
                secret_file: "s".into(),
                method: "POST".into(),
                path: "/v1/audit".into(),
                body: Body::Empty,
                ts: None,
                nonce: None,
            }
        );
    }

    #[test]
    fn body_ts_and_nonce_are_read_as_given() {
        let more =
            [&BASE[..], &["--body-file", "-", "--ts", "1800000000", "--nonce", "AQEBAQEBAQEBAQEBAQEBAQ"]].concat();
        let call = parse(&args(&more)).unwrap();
        assert_eq!((call.body, call.ts, call.nonce), (Body::Stdin, Some(1_800_000_000), Some(vec![1u8; 16])));
        let from_file = [&BASE[..], &["--body-file", "batch.json"]].concat();
        assert_eq!(parse(&args(&from_file)).unwrap().body, Body::File("batch.json".into()));
    }

    #[test]
    fn bad_command_lines_are_refused_with_what_is_wrong() {
        let cases: [(&[&str], &str); 8] = [
            (&BASE[2..], "--id is required"),
            (&BASE[..6], "--path is required"),
            (&["--id", "a b"], "--id takes"),
            (&["--id"], "--id needs a value"),
            (&["--id", "a", "--id", "b"], "given twice"),
            (&["--secret", "x"], "unknown argument --secret"),
            (&[&BASE[..], &["--ts", "-5"]].concat(), "--ts takes Unix seconds"),
            (&[&BASE[..], &["--nonce", "AQ=="]].concat(), "--nonce takes unpadded base64url"),
        ];
        for (line, why) in cases {
            let err = parse(&args(line)).unwrap_err();
            assert!(err.contains(why), "{line:?}: {err}");
        }
    }

    #[test]
    fn the_secret_file_is_read_as_the_sidecar_reads_it() {
        assert_eq!(decode_secret(&format!("{}\n", "A".repeat(43))).unwrap().len(), 32);
        assert!(decode_secret("c2hvcnQ").unwrap_err().contains("at least 32 bytes"));
        assert!(decode_secret(&"+".repeat(43)).unwrap_err().contains("base64url"));
    }

    #[test]
    fn the_signed_value_is_the_librarys_and_verifies() {
        let dir = std::env::temp_dir().join(format!("jitgate-sign-call-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (secret_file, body_file) = (dir.join("secret"), dir.join("body"));
        std::fs::write(&secret_file, format!("{}\n", jitgate_token::encoding::b64_encode(&[7u8; 32]))).unwrap();
        std::fs::write(&body_file, b"[{}]").unwrap();
        let line = [
            "--id",
            "proxies-1",
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--method",
            "POST",
            "--path",
            "/v1/audit",
            "--body-file",
            body_file.to_str().unwrap(),
            "--ts",
            "1800000000",
            "--nonce",
            "AQEBAQEBAQEBAQEBAQEBAQ",
        ];
        let value = run(&args(&line)).unwrap();
        let expected = caller_auth::authorization(
            "proxies-1",
            &[7u8; 32],
            1_800_000_000,
            &[1u8; 16],
            "POST",
            "/v1/audit",
            b"[{}]",
        )
        .unwrap();
        assert_eq!(value, expected);
        assert!(caller_auth::parse(&value).unwrap().verify(&[7u8; 32], "POST", "/v1/audit", b"[{}]"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
