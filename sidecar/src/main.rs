//! `jitgate-sidecar`: serve the API, mint development identity tokens, rotate keys, verify audit files.

use clap::{Parser, Subcommand};
use jitgate_sidecar::config::Config;
use jitgate_sidecar::{identity, keys, App};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// How often expiries are looked for: a grant's tokens end by their own `exp`; this only announces it.
const EXPIRY_SWEEP_S: u64 = 5;

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
    /// Check the chain of an audit file (and, with --anchors, that no tail was cut).
    Verify {
        /// The audit file (data_dir/audit.jsonl).
        file: PathBuf,
        /// The anchor file the chain heads were published to (`audit.anchor_file`).
        #[arg(long)]
        anchors: Option<PathBuf>,
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
        Command::Audit { command: AuditCommand::Verify { file, anchors } } => verify(&file, anchors.as_deref()),
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

fn verify(file: &Path, anchors: Option<&Path>) -> Result<(), String> {
    let anchors = anchors.map(jitgate_audit::read_anchors).transpose()?.unwrap_or_default();
    let report = jitgate_audit::verify_anchored(file, &anchors)?;
    let file = file.display();
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
