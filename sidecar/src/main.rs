//! `jitgate-sidecar`: serve the API, mint development identity tokens, rotate keys, verify audit files.

use clap::{Parser, Subcommand};
use jitgate_sidecar::config::Config;
use jitgate_sidecar::{identity, keys, App};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// How often expiries are looked for: a grant's tokens end by their own `exp`; this only announces it.
const EXPIRY_SWEEP_S: u64 = 5;
/// How often the audit chain is looked after, and how soon after start it is first verified.
const AUDIT_UPKEEP_S: u64 = 5;
const AUDIT_FIRST_VERIFY_S: u64 = 5;

/// jitgate's issuance sidecar: token exchange, grants and approvals, JWKS, revocations, audit.
#[derive(Parser)]
#[command(name = "jitgate-sidecar", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API on the configured listener.
    Serve {
        /// The sidecar's YAML configuration.
        #[arg(long)]
        config: PathBuf,
        /// `embedded`, or redis://HOST:PORT (overrides the configuration's `store`).
        #[arg(long)]
        store: Option<String>,
    },
    /// The development identity issuer (`identity.dev_issuer: true`).
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print a new caller secret (base64url) for `callers.secrets`.
    CallerSecret,
    /// The hash-chained audit file.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Mint an identity token for a demo or test user.
    Mint {
        /// The sidecar's YAML configuration (its keys directory holds the dev issuer's key).
        #[arg(long)]
        config: PathBuf,
        /// The subject (`sub`) of the token.
        #[arg(long)]
        sub: String,
        /// Comma-separated groups.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Lifetime: seconds, or <n>s, <n>m, <n>h, <n>d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Start signing with a new key; the previous one stays in the JWKS until its tokens expire.
    Rotate {
        /// The sidecar's YAML configuration.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the chain: every kept segment line by line, each closed one against its signed
    /// checkpoint, and (with --anchors) that no tail was cut. Prints the range it proved.
    Verify {
        /// The chain's directory (data_dir/audit), or a single-file chain of an earlier version.
        path: PathBuf,
        /// The anchor file the chain heads and checkpoints were published to (`audit.anchor_file`).
        #[arg(long)]
        anchors: Option<PathBuf>,
        /// The sidecar's JWKS (`GET /.well-known/jwks.json`, saved to a file): checkpoint
        /// signatures are checked against it.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// Print this event with its proof of place in the chain (its neighbours' links, its
        /// segment's checkpoint) instead of checking everything.
        #[arg(long)]
        event: Option<u64>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve { config, store } => serve(&config, store.as_deref()),
        Command::Identity { command: IdentityCommand::Mint { config, sub, groups, ttl } } => {
            identity_mint(&config, &sub, &groups, &ttl)
        }
        Command::Keys { command: KeysCommand::Rotate { config } } => rotate(&config),
        Command::CallerSecret => {
            let mut secret = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
            println!("{}", jitgate_token::encoding::b64_encode(&secret));
            Ok(())
        }
        Command::Audit { command: AuditCommand::Verify { path, anchors, jwks, event } } => {
            verify(&path, anchors.as_deref(), jwks.as_deref(), event)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jitgate-sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}

fn now() -> u64 {
    jitgate_sidecar::Clock::default().now()
}

fn serve(config: &Path, store: Option<&str>) -> Result<(), String> {
    let mut config = Config::load(config)?;
    if let Some(store) = store {
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
    // Expiry: undecided requests past the policy's `pending_ttl`, and the end of approved grants.
    let sweeper = app.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(EXPIRY_SWEEP_S));
        if let Err(e) = jitgate_sidecar::grants::expire_due(&sweeper) {
            eprintln!("jitgate-sidecar: expiry sweep failed (retried in {EXPIRY_SWEEP_S} s): {e}");
        }
    });
    // The audit chain: segments closed by age, retention, and the full verification on schedule.
    let auditor = app.clone();
    std::thread::spawn(move || {
        let every = auditor.config.audit.verify_every_s;
        let mut verify_at = (every > 0).then(|| now().saturating_add(AUDIT_FIRST_VERIFY_S));
        loop {
            std::thread::sleep(std::time::Duration::from_secs(AUDIT_UPKEEP_S));
            let due = verify_at.is_some_and(|t| now() >= t);
            auditor.audit_upkeep(due);
            if due {
                verify_at = Some(now().saturating_add(every));
            }
        }
    });
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
        jitgate_sidecar::server::serve(app.clone(), listener, tls, shutdown).await;
        // The exporters' cursors on disk, so a clean restart resends nothing.
        app.exporters.stop();
        Ok(())
    })
}

fn identity_mint(config: &Path, sub: &str, groups: &[String], ttl: &str) -> Result<(), String> {
    let config = Config::load(config)?;
    if !config.identity.dev_issuer {
        return Err("identity.dev_issuer is off in this configuration".to_owned());
    }
    let ttl = jitgate_sidecar::policy::parse_duration(ttl).ok_or(format!("--ttl `{ttl}` is not a duration"))?;
    std::fs::create_dir_all(&config.keys_dir).map_err(|e| e.to_string())?;
    println!("{}", identity::dev_mint(&config.keys_dir, sub, groups, ttl, now())?);
    Ok(())
}

fn rotate(config: &Path) -> Result<(), String> {
    let config = Config::load(config)?;
    let kid = keys::KeyRing::rotate(&config.keys_dir.join("signing-keys.json"), now())?;
    println!("new signing key {kid}; the previous key stays in the JWKS until its tokens expire");
    Ok(())
}

fn verify(path: &Path, anchors: Option<&Path>, jwks: Option<&Path>, event: Option<u64>) -> Result<(), String> {
    let anchors = anchors.map(jitgate_audit::read_anchors).transpose()?.unwrap_or_default();
    let keys = jwks.map(read_jwks).transpose()?;
    if let Some(seq) = event {
        let proof = jitgate_audit::show_event(path, seq, keys.as_ref())?;
        println!("{}", serde_json::to_string_pretty(&proof).map_err(|e| e.to_string())?);
        return Ok(());
    }
    let shown = path.display();
    if !path.is_dir() {
        // A single-file chain of an earlier version.
        let report = jitgate_audit::verify_anchored(path, &anchors)?;
        return match report.problem {
            None => {
                println!("{shown}: {} events, chain intact, head {}", report.lines, report.head);
                Ok(())
            }
            Some(p) => Err(format!("{shown}: {p} (the {} events before it verify)", report.lines)),
        };
    }
    let check = jitgate_audit::ChainCheck { keys: keys.as_ref(), anchors: &anchors, ..Default::default() };
    let report = jitgate_audit::verify_chain(path, &check)?;
    let heads = if anchors.is_empty() { String::new() } else { format!("; {} published heads checked", anchors.len()) };
    match &report.problem {
        None => {
            println!("{shown}: chain intact: {}{heads}", report.summary());
            Ok(())
        }
        Some(p) => Err(format!("{shown}: {p} (events {}..={} before it verify)", report.first, report.last)),
    }
}

/// A JWKS file, bounded.
fn read_jwks(path: &Path) -> Result<jitgate_token::KeySet, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() > 1024 * 1024 {
        return Err(format!("{}: larger than 1 MiB", path.display()));
    }
    jitgate_token::KeySet::from_jwks(&text).map_err(|e| format!("{}: {e}", path.display()))
}
