//! `jitgate-sidecar`: serve the API, mint development identity tokens, rotate keys, verify audit files.

use jitgate_sidecar::config::Config;
use jitgate_sidecar::{audit, identity, keys, App};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "usage:
  jitgate-sidecar serve --config FILE [--store embedded|redis://HOST:PORT]
  jitgate-sidecar identity mint --config FILE --sub NAME [--groups a,b] [--ttl 1h]
  jitgate-sidecar keys rotate --config FILE
  jitgate-sidecar caller-secret          # a new caller secret (base64url) for callers.secrets
  jitgate-sidecar audit verify FILE [--anchors ANCHOR_FILE]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["serve", rest @ ..] => serve(rest),
        ["identity", "mint", rest @ ..] => identity_mint(rest),
        ["keys", "rotate", rest @ ..] => rotate(rest),
        ["caller-secret"] => {
            let mut secret = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
            println!("{}", jitgate_token::encoding::b64_encode(&secret));
            Ok(())
        }
        ["audit", "verify", file, rest @ ..] => verify(file, rest),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jitgate-sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs; anything else is an error naming it.
fn flags<'a>(rest: &[&'a str], known: &[&str]) -> Result<std::collections::HashMap<String, &'a str>, String> {
    let mut out = std::collections::HashMap::new();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .filter(|n| known.contains(n))
            .ok_or(format!("unknown argument `{flag}`\n{USAGE}"))?;
        let value = it.next().ok_or(format!("`{flag}` needs a value"))?;
        out.insert(name.to_owned(), *value);
    }
    Ok(out)
}

fn config(f: &std::collections::HashMap<String, &str>) -> Result<Config, String> {
    Config::load(&PathBuf::from(f.get("config").ok_or(format!("--config is required\n{USAGE}"))?))
}

fn now() -> u64 {
    jitgate_sidecar::Clock::default().now()
}

fn serve(rest: &[&str]) -> Result<(), String> {
    let f = flags(rest, &["config", "store"])?;
    let mut config = config(&f)?;
    if let Some(store) = f.get("store") {
        config.store = jitgate_sidecar::config::StoreKind::parse(store)?;
    }
    let listen = config.listen;
    let tls = config.tls.as_ref().map(jitgate_sidecar::server::tls_config).transpose()?;
    let app = Arc::new(App::open(config)?);
    if !app.callers.configured() {
        eprintln!("jitgate-sidecar: no callers configured: the filter endpoints answer 401 to everyone");
    }
    if app.identity.has_remote() {
        let refresher = app.clone();
        std::thread::spawn(move || loop {
            refresher.refresh_identity();
            std::thread::sleep(std::time::Duration::from_secs(5));
        });
    }
    // Compaction: the journal drops revocations that can no longer matter.
    let compactor = app.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
        if let Err(e) = compactor.compact() {
            eprintln!("jitgate-sidecar: compaction failed (retried in a minute): {e}");
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("{listen}: {e}"))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!("jitgate-sidecar: listening on {scheme}://{listen}");
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = terminated => {}
            }
        };
        jitgate_sidecar::server::serve(app, listener, tls, shutdown).await;
        Ok(())
    })
}

fn identity_mint(rest: &[&str]) -> Result<(), String> {
    let f = flags(rest, &["config", "sub", "groups", "ttl"])?;
    let config = config(&f)?;
    if !config.identity.dev_issuer {
        return Err("identity.dev_issuer is off in this configuration".to_owned());
    }
    let sub = f.get("sub").ok_or("--sub is required")?;
    let groups: Vec<String> = f.get("groups").map_or(Vec::new(), |g| g.split(',').map(str::to_owned).collect());
    let ttl = match f.get("ttl") {
        Some(t) => jitgate_sidecar::policy::parse_duration(t).ok_or(format!("--ttl `{t}` is not a duration"))?,
        None => 3600,
    };
    std::fs::create_dir_all(&config.keys_dir).map_err(|e| e.to_string())?;
    println!("{}", identity::dev_mint(&config.keys_dir, sub, &groups, ttl, now())?);
    Ok(())
}

fn rotate(rest: &[&str]) -> Result<(), String> {
    let config = config(&flags(rest, &["config"])?)?;
    let kid = keys::KeyRing::rotate(&config.keys_dir.join("signing-keys.json"), now())?;
    println!("new signing key {kid}; the previous key stays in the JWKS until its tokens expire");
    Ok(())
}

fn verify(file: &str, rest: &[&str]) -> Result<(), String> {
    let f = flags(rest, &["anchors"])?;
    let anchors = match f.get("anchors") {
        Some(path) => audit::read_anchors(&PathBuf::from(path))?,
        None => Vec::new(),
    };
    let report = audit::verify_anchored(&PathBuf::from(file), &anchors)?;
    match report.problem {
        None => {
            let checked =
                if anchors.is_empty() { String::new() } else { format!(", {} published heads match", anchors.len()) };
            println!("{file}: {} events, chain intact, head {}{checked}", report.lines, report.head);
            Ok(())
        }
        Some(p) => Err(format!("{file}: {p} (the {} events before it verify)", report.lines)),
    }
}
