//! `jitgate`: ask for, approve, use and revoke just-in-time access against jitgate-sidecar.
//! Every command has `--help`; `--output json` prints machine-readable results for scripts.

mod client;
mod credentials;
mod dpop;
mod login;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use client::Client;
use credentials::Credentials;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "jitgate", version, about = "Just-in-time access: request, approve, use and revoke it")]
struct Cli {
    /// Text for people, or JSON for scripts.
    #[arg(long, value_enum, global = true, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in through the browser (OpenID authorization code + PKCE); the token is kept 0600.
    Login {
        /// The sidecar's URL, e.g. http://127.0.0.1:9180.
        #[arg(long)]
        sidecar: String,
        /// OpenID provider (discovery base URL); default: the sidecar's development issuer.
        #[arg(long)]
        provider: Option<String>,
        /// Print the sign-in address only; do not start a browser.
        #[arg(long)]
        no_browser: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Ask for access to one or more scopes.
    Request {
        #[arg(required = true)]
        scopes: Vec<String>,
        /// How long: seconds, or <n>s, <n>m, <n>h, <n>d.
        #[arg(long = "for", default_value = "30m")]
        duration: String,
        /// Justification, e.g. a ticket id.
        #[arg(long, default_value = "")]
        reason: String,
        /// Wait until the request is approved or denied.
        #[arg(long)]
        wait: bool,
    },
    /// Your requests, or (--to-decide) the ones waiting for your decision.
    Status {
        #[arg(long)]
        to_decide: bool,
    },
    /// Approve a request.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request.
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Revoke a grant, a subject's access, or one token (by jti).
    Revoke {
        #[arg(long, group = "what")]
        grant: Option<String>,
        #[arg(long, group = "what")]
        sub: Option<String>,
        #[arg(long, group = "what")]
        jti: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Print a JIT token for a scope (RFC 8693 exchange of your identity token).
    Token {
        #[arg(long, required = true)]
        scope: Vec<String>,
        #[arg(long)]
        audience: Option<String>,
        /// Bind the token to your DPoP key (RFC 9449): it then works only with `jitgate proof`.
        #[arg(long)]
        dpop: bool,
    },
    /// Print a DPoP proof for one request with a `--dpop` token, for the `DPoP` header.
    Proof {
        /// The request's method, e.g. GET.
        method: String,
        /// The request's URL (query and fragment are left out of the proof).
        url: String,
        /// The DPoP-bound token the request carries.
        #[arg(long)]
        token: String,
        /// The server's nonce, from a `DPoP-Nonce` answer header.
        #[arg(long)]
        nonce: Option<String>,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Shell completions, e.g. `jitgate completions bash > /etc/bash_completion.d/jitgate`.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The newest events (admins).
    Tail {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        sub: Option<String>,
        #[arg(long)]
        grant: Option<String>,
        #[arg(long)]
        event: Option<String>,
    },
    /// Check the hash chain: a chain directory (data_dir/audit: every segment, each against its
    /// checkpoint) or a single chain file.
    Verify {
        file: PathBuf,
        #[arg(long)]
        anchors: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command, cli.output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jitgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The saved sign-in, refused once expired.
fn session() -> Result<Credentials, String> {
    let c = credentials::load()?;
    if c.expires_at <= now() {
        return Err("the sign-in expired: run `jitgate login`".to_owned());
    }
    Ok(c)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn print(output: Output, value: &Value, text: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => println!("{value}"),
        Output::Text => println!("{}", text(value)),
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn describe(g: &Value) -> String {
    let scopes: Vec<&str> =
        g.get("scopes").and_then(Value::as_array).map_or(Vec::new(), |a| a.iter().filter_map(Value::as_str).collect());
    format!(
        "{}  {:<8}  {:<10}  {}  {}",
        s(g, "id"),
        s(g, "status"),
        s(g, "sub"),
        scopes.join(" "),
        s(g, "justification")
    )
}

fn run(command: Command, output: Output) -> Result<(), String> {
    let http = Client::new();
    match command {
        Command::Login { sidecar, provider, no_browser, timeout } => {
            let sidecar = sidecar.trim_end_matches('/').to_owned();
            let provider = provider.unwrap_or_else(|| format!("{sidecar}/dev-idp"));
            let (id_token, ttl) = login::login(&http, &provider, !no_browser, Duration::from_secs(timeout))?;
            let path = credentials::save(&Credentials { sidecar, id_token, expires_at: now() + ttl })?;
            print(output, &json!({"signed_in": true, "credentials": path, "expires_in": ttl}), |_| {
                format!("Signed in; token kept in {} for {} min.", path.display(), ttl / 60)
            });
        }
        Command::Request { scopes, duration, reason, wait } => {
            let c = session()?;
            let body = json!({"scope": scopes.join(" "), "duration": duration, "justification": reason});
            let mut g = http.post_json(&format!("{}/v1/requests", c.sidecar), &c.id_token, &body)?;
            if wait && s(&g, "status") == "pending" {
                g = wait_for_decision(&http, &c, s(&g, "id").to_owned(), output)?;
            }
            print(output, &g, describe);
            if s(&g, "status") == "denied" {
                return Err(format!("request {} was denied", s(&g, "id")));
            }
        }
        Command::Status { to_decide } => {
            let c = session()?;
            let view = if to_decide { "to_decide" } else { "mine" };
            let list = http.get_json(&format!("{}/v1/requests?view={view}", c.sidecar), Some(&c.id_token))?;
            print(output, &list, |l| {
                let rows: Vec<String> = l
                    .get("requests")
                    .and_then(Value::as_array)
                    .map_or(Vec::new(), |a| a.iter().map(describe).collect());
                if rows.is_empty() {
                    "nothing".to_owned()
                } else {
                    rows.join("\n")
                }
            });
        }
        Command::Approve { id, comment } => decide(&http, output, &id, comment, "approve")?,
        Command::Deny { id, comment } => decide(&http, output, &id, comment, "deny")?,
        Command::Revoke { grant, sub, jti, reason } => {
            let c = session()?;
            let mut body = match (grant, sub, jti) {
                (Some(g), None, None) => json!({"grant": g}),
                (None, Some(s), None) => json!({"sub": s}),
                (None, None, Some(j)) => json!({"jti": j}),
                _ => return Err("name exactly one of --grant, --sub, --jti".to_owned()),
            };
            if let (Some(r), Some(o)) = (reason, body.as_object_mut()) {
                o.insert("reason".to_owned(), Value::from(r));
            }
            let done = http.post_json(&format!("{}/v1/revoke", c.sidecar), &c.id_token, &body)?;
            let count = |k: &str| done.get(k).and_then(Value::as_array).map_or(0, Vec::len);
            let text = format!("revoked {}, already revoked {}", count("revoked"), count("unchanged"));
            print(output, &done, |_| text);
        }
        Command::Token { scope, audience, dpop } => {
            let c = session()?;
            let scope = scope.join(" ");
            let jkt = if dpop { Some(dpop::thumbprint(&dpop::key()?)?) } else { None };
            let mut form = vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                ("subject_token", c.id_token.as_str()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("scope", scope.as_str()),
            ];
            if let Some(a) = audience.as_deref() {
                form.push(("audience", a));
            }
            if let Some(j) = jkt.as_deref() {
                form.push(("dpop_jkt", j));
            }
            let t = http.post_form(&format!("{}/v1/token", c.sidecar), &form)?;
            // Text output is the token alone, for `$(jitgate token --scope ...)`.
            print(output, &t, |t| s(t, "access_token").to_owned());
        }
        Command::Proof { method, url, token, nonce } => {
            let proof = dpop::proof(&dpop::key()?, &method, &url, &token, nonce.as_deref(), now())?;
            print(output, &json!({"dpop": proof}), |_| proof.clone());
        }
        Command::Audit { command: AuditCommand::Tail { limit, sub, grant, event } } => {
            let c = session()?;
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("limit", &limit.to_string());
            for (k, v) in [("sub", sub), ("grant", grant), ("event", event)] {
                if let Some(v) = v {
                    q.append_pair(k, &v);
                }
            }
            let page = http.get_json(&format!("{}/v1/audit?{}", c.sidecar, q.finish()), Some(&c.id_token))?;
            print(output, &page, |p| {
                let events = p.get("events").and_then(Value::as_array).cloned().unwrap_or_default();
                events.iter().rev().map(Value::to_string).collect::<Vec<_>>().join("\n")
            });
        }
        Command::Audit { command: AuditCommand::Verify { file, anchors } } => {
            let anchors = anchors.as_deref().map(jitgate_audit::read_anchors).transpose()?.unwrap_or_default();
            let report = if file.is_dir() {
                let check = jitgate_audit::ChainCheck { anchors: &anchors, ..Default::default() };
                let r = jitgate_audit::verify_chain(&file, &check)?;
                jitgate_audit::Report { lines: r.events(), head: r.head, problem: r.problem }
            } else {
                jitgate_audit::verify_anchored(&file, &anchors)?
            };
            let value = json!({"file": file, "events": report.lines, "head": report.head, "problem": report.problem});
            print(output, &value, |v| match v["problem"].as_str() {
                None => format!("{}: {} events, chain intact, head {}", file.display(), report.lines, report.head),
                Some(p) => format!("{}: {p}", file.display()),
            });
            if report.problem.is_some() {
                return Err("the audit chain does not verify".to_owned());
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "jitgate", &mut std::io::stdout());
        }
    }
    Ok(())
}

fn decide(http: &Client, output: Output, id: &str, comment: Option<String>, verb: &str) -> Result<(), String> {
    let c = session()?;
    let body = comment.map_or(json!({}), |text| json!({"comment": text}));
    let g = http.post_json(&format!("{}/v1/requests/{id}/{verb}", c.sidecar), &c.id_token, &body)?;
    print(output, &g, describe);
    Ok(())
}

/// Polls the request until it is decided, showing the wait on stderr.
fn wait_for_decision(http: &Client, c: &Credentials, id: String, output: Output) -> Result<Value, String> {
    let t0 = Instant::now();
    let frames = ['|', '/', '-', '\\'];
    let mut i = 0usize;
    loop {
        let g = http.get_json(&format!("{}/v1/requests/{id}", c.sidecar), Some(&c.id_token))?;
        if s(&g, "status") != "pending" {
            if output == Output::Text {
                eprintln!();
            }
            return Ok(g);
        }
        if c.expires_at <= now() {
            return Err("the sign-in expired while waiting: run `jitgate login`".to_owned());
        }
        if output == Output::Text {
            let frame = frames.get(i % frames.len()).copied().unwrap_or('.');
            eprint!("\r{frame} waiting for approval of {id} ({} s)", t0.elapsed().as_secs());
            let _ = std::io::stderr().flush();
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
}
