//! Load on the sidecar's audit ingest (`POST /v1/audit`): N threads, one keep-alive HTTP/1.1
//! connection each, sending batches of valid `access.*` events signed as a filter signs them.
//! It talks HTTP only, so it measures any sidecar build; it prints one JSON line of results.
//!
//! Bodies are built once per connection; a batch only rewrites the request-id digits in place,
//! so the client's time goes to signing (SHA-256 of the body, HMAC) and the socket.

use jitgate_token::caller_auth;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: audit-load --url http://127.0.0.1:PORT --caller-id ID --secret-file PATH \
[--connections N] [--batch 200] (--events TOTAL | --seconds S) [--retry]

  --secret-file  the caller secret as the sidecar reads it: base64url, one line
  --events       stop after this many events were offered (with --seconds too: whichever first)
  --retry        on 503 wait Retry-After seconds and resend the same events, freshly signed

Prints one JSON line; exits 3 (after printing it) when a connection gave up: 20 failures in a row.";

const MAX_CONNECTIONS: usize = 256;
/// The sidecar's own bound on a batch.
const MAX_BATCH: usize = 1000;
const MAX_SECRET_FILE_BYTES: u64 = 4096;
/// Bounds on what is read back: a response head, and a body.
const MAX_HEAD_BYTES: u64 = 16 * 1024;
const MAX_BODY_BYTES: u64 = 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Resends of one batch after 503s, and failures in a row, before a connection gives up.
const MAX_RETRIES: u32 = 100;
const MAX_FAILURES_IN_A_ROW: u32 = 20;
/// Longest Retry-After honoured.
const MAX_RETRY_AFTER_S: u64 = 60;
/// Digits of the per-connection event counter in each request id.
const COUNTER_DIGITS: usize = 10;

#[derive(Debug)]
struct Options {
    /// `host:port` to connect to, also the Host header.
    authority: String,
    /// The request target of the audit sink.
    path: String,
    caller_id: String,
    secret: Vec<u8>,
    connections: usize,
    batch: usize,
    events: Option<u64>,
    seconds: Option<f64>,
    retry: bool,
}

fn main() {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("audit-load: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    match run(&opts) {
        // A connection that gave up leaves the numbers short: still printed, but not a success.
        Ok(line) if line.get("gave_up") == Some(&serde_json::Value::Bool(true)) => {
            println!("{line}");
            std::process::exit(3);
        }
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("audit-load: {e}");
            std::process::exit(1);
        }
    }
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let (mut url, mut caller_id, mut secret_file) = (None, None, None);
    let (mut connections, mut batch, mut events, mut seconds, mut retry) = (1usize, 200usize, None, None, false);
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        if name == "--retry" {
            retry = true;
            continue;
        }
        if name == "--help" || name == "-h" {
            return Err("help".to_owned());
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        let number = |what: &str| value.parse::<u64>().map_err(|_| format!("{what}: a whole number"));
        match name.as_str() {
            "--url" => url = Some(value.clone()),
            "--caller-id" => caller_id = Some(value.clone()),
            "--secret-file" => secret_file = Some(value.clone()),
            "--connections" => connections = usize::try_from(number("--connections")?).unwrap_or(usize::MAX),
            "--batch" => batch = usize::try_from(number("--batch")?).unwrap_or(usize::MAX),
            "--events" => events = Some(number("--events")?),
            "--seconds" => {
                seconds = Some(value.parse::<f64>().map_err(|_| "--seconds: a number".to_owned())?);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let (authority, base) = parse_url(&url.ok_or("--url is required")?)?;
    let caller_id = caller_id.ok_or("--caller-id is required")?;
    if !caller_auth::valid_id(&caller_id) {
        return Err("--caller-id: 1-64 of [A-Za-z0-9._-]".to_owned());
    }
    let secret = read_secret(&secret_file.ok_or("--secret-file is required")?)?;
    if !(1..=MAX_CONNECTIONS).contains(&connections) {
        return Err(format!("--connections: 1 to {MAX_CONNECTIONS}"));
    }
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(format!("--batch: 1 to {MAX_BATCH}"));
    }
    if events.is_none() && seconds.is_none() {
        return Err("give --events or --seconds".to_owned());
    }
    if seconds.is_some_and(|s| !(s > 0.0 && s <= 86_400.0)) {
        return Err("--seconds: more than 0, at most a day".to_owned());
    }
    if events == Some(0) {
        return Err("--events: at least 1".to_owned());
    }
    Ok(Options {
        authority,
        path: format!("{base}/v1/audit"),
        caller_id,
        secret,
        connections,
        batch,
        events,
        seconds,
        retry,
    })
}

/// `http://host:port[/prefix]` to (`host:port`, `/prefix` without a trailing slash).
fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("http://").ok_or("--url: http://host:port (plain HTTP only)")?;
    let (authority, base) = match rest.split_once('/') {
        Some((a, b)) => (a, format!("/{}", b.trim_end_matches('/'))),
        None => (rest, String::new()),
    };
    let base = if base == "/" { String::new() } else { base };
    if authority.is_empty() || authority.len() > 255 || authority.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err("--url: no host".to_owned());
    }
    let authority = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
    Ok((authority, base))
}

/// The secret as the sidecar reads it: one line of unpadded base64url, 32 bytes or more.
fn read_secret(path: &str) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?.len();
    if len > MAX_SECRET_FILE_BYTES {
        return Err(format!("{path}: larger than {MAX_SECRET_FILE_BYTES} bytes"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let secret = jitgate_token::encoding::b64_decode(text.trim().as_bytes())
        .map_err(|_| format!("{path}: not unpadded base64url"))?;
    if secret.len() < 32 {
        return Err(format!("{path}: a caller secret has at least 32 bytes"));
    }
    Ok(secret)
}

/// Random bytes for nonces and the run's tag (uniqueness, not secrecy, is what matters here).
fn random_seed() -> Result<[u8; 16], String> {
    let mut seed = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(seed)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A timestamp as the filter writes it (`2026-11-22T10:00:00.123Z`).
fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = jitgate_token::civil::from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60, unix_ms % 1000)
}

/// One connection's batch body: `[e1,e2,...]`, with where each event's counter digits are and
/// where each event ends (a shorter last batch is a prefix of the events).
struct Template {
    body: Vec<u8>,
    digits: Vec<usize>,
    ends: Vec<usize>,
}

/// The events a filter ships, in the mix of a busy API: mostly verified calls, some denials.
fn event(i: usize, request_id: &str, ts: &str, now: u64) -> serde_json::Value {
    let k = i as u64 + 1;
    let users = ["alice@example.com", "bob.sre@example.com", "carol@corp.example.com", "svc-batch-reporter"];
    let user = users.get(i % users.len()).copied().unwrap_or("alice@example.com");
    let jti = format!("{:032x}", u128::from(k).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
    let grant = format!("g-{:016x}", (k / 7 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let client = format!("10.20.{}.{}:{}", i % 7, 10 + i % 200, 40_000 + (i * 7919) % 20_000);
    let path = format!("/orders/{}/items/{}", 100_000 + i * 37 % 90_000, i % 13);
    match i % 10 {
        // Cached, verified reads.
        0..=5 => {
            json!({"ts": ts, "event": "access.allow", "request_id": request_id, "reason": "verified", "status": 200,
            "rule": "orders", "sub": user, "jti_hash": jti, "grant": grant, "scopes_required": ["orders:read"],
            "scopes_granted": "orders:read orders:write", "method": "GET", "authority": "api.internal.example.com",
            "path": path, "client": client, "token_exp": now + 600, "replay": "none", "break_glass": false,
            "latency_us": 18 + i % 40})
        }
        // Single-use writes.
        6 | 7 => {
            json!({"ts": ts, "event": "access.allow", "request_id": request_id, "reason": "verified", "status": 200,
            "rule": "orders-write", "sub": user, "jti_hash": jti, "grant": grant,
            "scopes_required": ["orders:write"], "scopes_granted": "orders:write", "method": "POST",
            "authority": "api.internal.example.com", "path": path, "client": client, "token_exp": now + 300,
            "replay": "single_use", "break_glass": false, "latency_us": 140 + i % 90})
        }
        // A scope the token lacks.
        8 => json!({"ts": ts, "event": "access.deny", "request_id": request_id, "reason": "insufficient_scope",
            "status": 403, "rule": "orders-write", "sub": user, "jti_hash": jti, "grant": grant,
            "scopes_required": ["orders:write"], "scopes_granted": "orders:read", "method": "DELETE",
            "authority": "api.internal.example.com", "path": path, "client": client, "token_exp": now + 600,
            "replay": "single_use", "break_glass": false, "latency_us": 25}),
        // No token at all.
        _ => json!({"ts": ts, "event": "access.deny", "request_id": request_id, "reason": "missing_credential",
            "status": 401, "rule": "orders", "sub": null, "jti_hash": null, "grant": null,
            "scopes_required": ["orders:read"], "scopes_granted": null, "method": "GET",
            "authority": "api.internal.example.com", "path": path, "client": client, "token_exp": null,
            "replay": "none", "break_glass": false, "latency_us": 9}),
    }
}

impl Template {
    fn new(prefix: &str, batch: usize) -> Result<Template, String> {
        let now = unix_now();
        let ts = rfc3339(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64));
        let zeros = "0".repeat(COUNTER_DIGITS);
        let request_id = format!("{prefix}{zeros}");
        let needle = format!("\"request_id\":\"{prefix}");
        let mut t = Template { body: vec![b'['], digits: Vec::new(), ends: Vec::new() };
        for i in 0..batch {
            if i > 0 {
                t.body.push(b',');
            }
            let text = serde_json::to_string(&event(i, &request_id, &ts, now)).map_err(|e| e.to_string())?;
            let at = text.find(&needle).ok_or("request_id not found in an event")?;
            t.digits.push(t.body.len() + at + needle.len());
            t.body.extend_from_slice(text.as_bytes());
            t.ends.push(t.body.len());
        }
        t.body.push(b']');
        Ok(t)
    }

    /// The body of `count` events numbered from `first`.
    fn fill(&mut self, first: u64, count: usize) -> Vec<u8> {
        for (j, &at) in self.digits.iter().take(count).enumerate() {
            let mut n = first.saturating_add(j as u64);
            if let Some(slot) = self.body.get_mut(at..at + COUNTER_DIGITS) {
                for b in slot.iter_mut().rev() {
                    *b = b'0' + (n % 10) as u8;
                    n /= 10;
                }
            }
        }
        let end = count.checked_sub(1).and_then(|i| self.ends.get(i)).copied().unwrap_or(0);
        let mut body = self.body.get(..end).unwrap_or_default().to_vec();
        body.push(b']');
        body
    }
}

/// A response as far as the client cares.
struct Response {
    status: u16,
    retry_after: Option<u64>,
    close: bool,
    body: Vec<u8>,
}

/// One keep-alive connection.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(authority: &str) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(authority)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Connection { reader: BufReader::with_capacity(64 * 1024, stream) })
    }

    fn send(&mut self, request: &[u8]) -> std::io::Result<Response> {
        self.reader.get_mut().write_all(request)?;
        self.read_response()
    }

    fn line(&mut self, budget: &mut u64) -> std::io::Result<String> {
        let mut buf = Vec::new();
        let n = (&mut self.reader).take(*budget).read_until(b'\n', &mut buf)?;
        *budget = budget.saturating_sub(n as u64);
        if n == 0 || !buf.ends_with(b"\n") {
            return Err(bad("response head cut short or too long"));
        }
        let text = String::from_utf8(buf).map_err(|_| bad("response head not UTF-8"))?;
        Ok(text.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn read_response(&mut self) -> std::io::Result<Response> {
        let mut budget = MAX_HEAD_BYTES;
        let status_line = self.line(&mut budget)?;
        let mut parts = status_line.split(' ');
        let version = parts.next().unwrap_or_default();
        let status = parts.next().and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| bad("no status"))?;
        let (mut length, mut chunked, mut retry_after) = (None, false, None);
        let mut close = version == "HTTP/1.0";
        loop {
            let line = self.line(&mut budget)?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else { return Err(bad("malformed header")) };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.parse::<u64>().map_err(|_| bad("bad content-length"))?),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "retry-after" => retry_after = value.parse::<u64>().ok(),
                _ => {}
            }
        }
        let body = if chunked {
            self.chunked_body()?
        } else {
            let n = length.unwrap_or(0);
            if n > MAX_BODY_BYTES {
                return Err(bad("response body too large"));
            }
            let mut body = vec![0u8; usize::try_from(n).map_err(|_| bad("response body too large"))?];
            self.reader.read_exact(&mut body)?;
            body
        };
        Ok(Response { status, retry_after, close, body })
    }

    fn chunked_body(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        let mut budget = MAX_HEAD_BYTES;
        loop {
            let size_line = self.line(&mut budget)?;
            let size = u64::from_str_radix(size_line.split(';').next().unwrap_or_default().trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                while !self.line(&mut budget)?.is_empty() {}
                return Ok(body);
            }
            if body.len() as u64 + size > MAX_BODY_BYTES {
                return Err(bad("response body too large"));
            }
            let start = body.len();
            body.resize(start + usize::try_from(size).map_err(|_| bad("chunk too large"))?, 0);
            self.reader.read_exact(body.get_mut(start..).unwrap_or_default())?;
            let mut crlf = [0u8; 2];
            self.reader.read_exact(&mut crlf)?;
        }
    }
}

fn bad(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned())
}

/// `"accepted": N` of the sidecar's answer.
fn accepted(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = text.get(text.find("\"accepted\"")? + "\"accepted\"".len()..)?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What one connection counted.
#[derive(Default)]
struct Tally {
    offered: u64,
    accepted: u64,
    requests: u64,
    ok_batches: u64,
    unavailable: u64,
    non_2xx: u64,
    io_errors: u64,
    gave_up: Option<String>,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
}

/// Where all connections take their events from, and when they stop.
struct Shared {
    remaining: Option<AtomicU64>,
    seconds: Option<Duration>,
    /// When the connections were released (whoever looks first sets it, right after the barrier).
    t0: OnceLock<Instant>,
    stop: AtomicBool,
}

impl Shared {
    fn claim(&self, batch: usize) -> usize {
        if self.stop.load(Ordering::Relaxed) || self.past_deadline() {
            return 0;
        }
        let Some(remaining) = &self.remaining else { return batch };
        let mut taken = 0;
        let _ = remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
            taken = r.min(batch as u64);
            Some(r - taken)
        });
        usize::try_from(taken).unwrap_or(0)
    }

    fn past_deadline(&self) -> bool {
        self.seconds.is_some_and(|s| self.t0.get_or_init(Instant::now).elapsed() >= s)
    }
}

fn worker(opts: &Options, conn_no: usize, seed: [u8; 16], shared: &Shared, start: &Barrier) -> Tally {
    let mut tally = Tally::default();
    let run_tag: String = seed.iter().skip(12).map(|b| format!("{b:02x}")).collect();
    let template = Template::new(&format!("load-{run_tag}-{conn_no}-"), opts.batch);
    // A failed first connect is retried (and counted) by the loop.
    let mut conn = Connection::open(&opts.authority).ok();
    start.wait();
    let mut template = match template {
        Ok(t) => t,
        Err(e) => {
            tally.gave_up = Some(e);
            return tally;
        }
    };
    let mut nonce = [0u8; 24];
    if let Some(n) = nonce.get_mut(..8) {
        n.copy_from_slice(seed.get(..8).unwrap_or(&[0u8; 8]));
    }
    if let Some(n) = nonce.get_mut(8..16) {
        n.copy_from_slice(&(conn_no as u64).to_le_bytes());
    }
    let (mut counter, mut calls, mut failures) = (0u64, 0u64, 0u32);
    let mut request = Vec::with_capacity(template.body.len() + 512);
    'batches: loop {
        let count = shared.claim(opts.batch);
        if count == 0 {
            break;
        }
        let body = template.fill(counter, count);
        counter += count as u64;
        tally.offered += count as u64;
        let mut retries = 0u32;
        loop {
            calls += 1;
            if let Some(n) = nonce.get_mut(16..24) {
                n.copy_from_slice(&calls.to_le_bytes());
            }
            let Some(auth) = caller_auth::authorization(
                &opts.caller_id,
                &opts.secret,
                unix_now(),
                &nonce,
                "POST",
                &opts.path,
                &body,
            ) else {
                tally.gave_up = Some("the secret cannot key HMAC-SHA256".to_owned());
                break 'batches;
            };
            request.clear();
            let head = format!(
                "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nauthorization: {auth}\r\n\r\n",
                opts.path,
                opts.authority,
                body.len()
            );
            request.extend_from_slice(head.as_bytes());
            request.extend_from_slice(&body);
            if conn.is_none() {
                conn = Connection::open(&opts.authority).ok();
            }
            let sent = Instant::now();
            let answer = match conn.as_mut() {
                Some(c) => c.send(&request),
                None => Err(std::io::Error::other("cannot connect")),
            };
            tally.requests += 1;
            let r = match answer {
                Ok(r) => r,
                Err(e) => {
                    tally.io_errors += 1;
                    tally.first_error.get_or_insert_with(|| format!("i/o: {e}"));
                    conn = None;
                    failures += 1;
                    if failures >= MAX_FAILURES_IN_A_ROW {
                        tally.gave_up = Some(format!("{failures} failures in a row, the last: {e}"));
                        break 'batches;
                    }
                    continue;
                }
            };
            let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
            if r.close {
                conn = None;
            }
            if (200..300).contains(&r.status) {
                failures = 0;
                tally.ok_batches += 1;
                tally.accepted += accepted(&r.body).unwrap_or(count as u64);
                tally.latencies_us.push(micros);
                break;
            }
            if r.status == 503 {
                tally.unavailable += 1;
                if opts.retry && retries < MAX_RETRIES {
                    retries += 1;
                    let wait = r.retry_after.unwrap_or(1).min(MAX_RETRY_AFTER_S);
                    std::thread::sleep(Duration::from_secs(wait));
                    if shared.past_deadline() {
                        break 'batches;
                    }
                    continue;
                }
            }
            tally.non_2xx += 1;
            tally.first_error.get_or_insert_with(|| {
                let text = String::from_utf8_lossy(&r.body);
                format!("{}: {}", r.status, text.chars().take(300).collect::<String>())
            });
            failures += 1;
            if failures >= MAX_FAILURES_IN_A_ROW {
                tally.gave_up = Some(format!("{failures} failures in a row"));
                break 'batches;
            }
            break;
        }
    }
    // One connection giving up stops the others: its share would be missing from the numbers.
    if tally.gave_up.is_some() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    tally
}

/// User and system CPU seconds of this process so far.
#[allow(unsafe_code)]
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: rusage is plain integers (all-zero is a valid value), and getrusage only writes
    // the one struct it is given for RUSAGE_SELF.
    let (rc, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut usage), usage)
    };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    let i = rank.saturating_sub(1).min(sorted.len() - 1);
    f64::from(sorted.get(i).copied().unwrap_or(0)) / 1000.0
}

fn run(opts: &Options) -> Result<serde_json::Value, String> {
    let seed = random_seed()?;
    // Every connection connects and builds its bodies first; the clock starts when all are ready.
    let start = Barrier::new(opts.connections + 1);
    let shared = Arc::new(Shared {
        remaining: opts.events.map(AtomicU64::new),
        seconds: opts.seconds.map(Duration::from_secs_f64),
        t0: OnceLock::new(),
        stop: AtomicBool::new(false),
    });
    let (tallies, seconds, cpu) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..opts.connections)
            .map(|c| {
                let (shared, start) = (shared.clone(), &start);
                s.spawn(move || worker(opts, c, seed, &shared, start))
            })
            .collect();
        start.wait();
        let (u0, s0) = cpu_seconds();
        let t0 = *shared.t0.get_or_init(Instant::now);
        let tallies: Vec<Tally> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        let seconds = t0.elapsed().as_secs_f64();
        let (u1, s1) = cpu_seconds();
        (tallies, seconds, (u1 - u0, s1 - s0))
    });
    summarize(opts, &tallies, seconds, cpu)
}

fn summarize(opts: &Options, tallies: &[Tally], seconds: f64, cpu: (f64, f64)) -> Result<serde_json::Value, String> {
    if tallies.len() != opts.connections {
        return Err("a connection thread panicked".to_owned());
    }
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let mut latencies: Vec<u32> = tallies.iter().flat_map(|t| t.latencies_us.iter().copied()).collect();
    latencies.sort_unstable();
    let accepted = sum(|t| t.accepted);
    let ok_batches = sum(|t| t.ok_batches);
    let per_s = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
    let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
    let errors: Vec<&String> = tallies.iter().filter_map(|t| t.gave_up.as_ref().or(t.first_error.as_ref())).collect();
    for e in errors.iter().take(3) {
        eprintln!("audit-load: {e}");
    }
    Ok(json!({
        "connections": opts.connections,
        "batch": opts.batch,
        "events_sent": sum(|t| t.offered),
        "accepted": accepted,
        "requests": sum(|t| t.requests),
        "seconds": round(seconds, 3),
        "events_per_s": round(per_s(accepted), 1),
        "batches_per_s": round(per_s(ok_batches), 2),
        "status_503": sum(|t| t.unavailable),
        "non_2xx": sum(|t| t.non_2xx),
        "io_errors": sum(|t| t.io_errors),
        "p50_ms": round(percentile(&latencies, 0.50), 3),
        "p99_ms": round(percentile(&latencies, 0.99), 3),
        "max_ms": round(percentile(&latencies, 1.0), 3),
        "client_cpu_user_s": round(cpu.0, 3),
        "client_cpu_sys_s": round(cpu.1, 3),
        "client_cpu_share": round(if seconds > 0.0 { (cpu.0 + cpu.1) / seconds } else { 0.0 }, 3),
        "gave_up": tallies.iter().any(|t| t.gave_up.is_some()),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn bodies_are_valid_json_with_unique_request_ids() {
        let mut t = Template::new("load-ab-3-", 50).unwrap();
        let a: serde_json::Value = serde_json::from_slice(&t.fill(0, 50)).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&t.fill(50, 7)).unwrap();
        let ids: std::collections::HashSet<String> = a
            .as_array()
            .unwrap()
            .iter()
            .chain(b.as_array().unwrap())
            .map(|e| e["request_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 57);
        assert!(ids.contains("load-ab-3-0000000056"));
        assert_eq!(b.as_array().unwrap().len(), 7);
    }

    #[test]
    fn urls_and_answers() {
        assert_eq!(parse_url("http://127.0.0.1:9180").unwrap(), ("127.0.0.1:9180".into(), String::new()));
        assert_eq!(parse_url("http://h/x/").unwrap(), ("h:80".into(), "/x".into()));
        assert!(parse_url("https://h").is_err());
        assert_eq!(accepted(br#"{"accepted":200,"seq":5}"#), Some(200));
        assert_eq!(accepted(br#"{"seq": 5, "accepted" : 7}"#), Some(7));
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }
}
