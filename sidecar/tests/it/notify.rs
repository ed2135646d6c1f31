//! Approval notifications against a real HTTP receiver on this machine: what arrived, signed how,
//! and that a receiver that is down, slow or refusing never holds up or loses a decision.

use crate::support::{self, NOW, POLICY};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use jitgate_sidecar::config::Config;
use jitgate_sidecar::{grants, notify, App};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const HOOK_SECRET: [u8; 32] = [7; 32];

/// What a receiver does with a delivery.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Status(u16),
    /// Holds every delivery until `release`.
    Hold,
}

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A webhook receiver: a real socket, a thread per connection, everything recorded.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    /// The answer, and whether held deliveries may go.
    state: Arc<(Mutex<(Answer, bool)>, Condvar)>,
    /// Deliveries that arrived and are being held.
    holding: Arc<Mutex<usize>>,
}

impl Receiver {
    fn start(answer: Answer) -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").unwrap(), answer)
    }

    fn on(listener: TcpListener, answer: Answer) -> Receiver {
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new((Mutex::new((answer, false)), Condvar::new()));
        let holding = Arc::new(Mutex::new(0));
        let (g, st, h) = (got.clone(), state.clone(), holding.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (g, st, h) = (g.clone(), st.clone(), h.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let mut headers = HashMap::new();
                    loop {
                        line.clear();
                        reader.read_line(&mut line).unwrap();
                        let Some((k, v)) = line.trim_end().split_once(':') else { break };
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    g.lock().unwrap().push(Received { path, headers, body });
                    let (lock, cv) = &*st;
                    let mut s = lock.lock().unwrap();
                    if s.0 == Answer::Hold {
                        *h.lock().unwrap() += 1;
                        while !s.1 {
                            s = cv.wait(s).unwrap();
                        }
                    }
                    let status = if let Answer::Status(n) = s.0 { n } else { 200 };
                    drop(s);
                    let _ = write!(conn, "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                });
            }
        });
        Receiver { port, got, state, holding }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn release(&self) {
        let (lock, cv) = &*self.state;
        lock.lock().unwrap().1 = true;
        cv.notify_all();
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (up to 20 s, so a broken build fails instead of hanging) until `n` deliveries arrived.
    fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.got.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.received()
    }
}

struct Sidecar {
    _dir: tempfile::TempDir,
    app: Arc<App>,
}

fn sidecar(notifications: &str) -> Sidecar {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), notifications);
    let app = support::pinned(dir.path());
    Sidecar { _dir: dir, app }
}

fn write(dir: &Path, notifications: &str) {
    use jitgate_token::encoding::b64_encode;
    std::fs::write(dir.join("policy.yaml"), POLICY).unwrap();
    std::fs::write(dir.join("hook-secret"), b64_encode(&HOOK_SECRET)).unwrap();
    std::fs::write(
        dir.join("sidecar.yaml"),
        format!(
            "data_dir: data\npolicy_file: policy.yaml\nissuer: https://jitgate.local\naudiences: [demo-api]\n\
             identity: {{dev_issuer: true}}\nnotifications:\n{notifications}"
        ),
    )
    .unwrap();
}

impl Sidecar {
    /// An identity token issued at the sidecar's current (pinned) time.
    fn id_token(&self, sub: &str, groups: &[&str]) -> String {
        support::id_token(&self.app, sub, groups, self.app.clock.now())
    }

    async fn json(&self, method: &str, uri: &str, who: &str, body: Value) -> (StatusCode, Value) {
        let bytes = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {who}"))
            .body(Body::from(bytes))
            .unwrap();
        let (status, _, bytes) = support::call(&self.app, req).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn ask(&self, who: &str, scope: &str, justification: &str) -> (StatusCode, Value) {
        self.json(
            "POST",
            "/v1/requests",
            who,
            json!({"scope": scope, "duration": "30m", "justification": justification}),
        )
        .await
    }

    fn metric(&self, webhook: &str, outcome: &str) -> u64 {
        let prefix = format!("jitgate_sidecar_notifications_total{{webhook=\"{webhook}\",outcome=\"{outcome}\"}} ");
        self.app.metrics.encode().lines().find_map(|l| l.strip_prefix(&prefix)?.parse().ok()).unwrap_or(0)
    }
}

fn body(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test]
async fn approval_events_reach_each_webhook_in_its_format_signed() {
    let rx = Receiver::start(Answer::Status(200));
    let s = sidecar(&format!(
        "  console_url: https://jitgate.example/ui/\n  webhooks:\n\
         \x20   - {{name: chat, url: '{}', format: slack}}\n\
         \x20   - {{name: soc, url: '{}', format: json, secret_file: hook-secret}}\n\
         \x20   - {{name: glass, url: '{}', format: json, secret_file: hook-secret, events: [break_glass.used]}}\n",
        rx.url("/chat"),
        rx.url("/soc"),
        rx.url("/glass")
    ));
    let (alice, bob, sam) =
        (s.id_token("alice", &["sre"]), s.id_token("bob", &["sre-leads"]), s.id_token("sam", &["secops"]));
    let (st, req) = s.ask(&alice, "orders:write", "INC-7 disk <!channel> *full* <https://evil|click>").await;
    assert_eq!(st, StatusCode::CREATED);
    let id = req["id"].as_str().unwrap().to_owned();
    let (st, _) = s.json("POST", &format!("/v1/requests/{id}/approve"), &bob, Value::Null).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.json("POST", "/v1/revoke", &sam, json!({"grant": id})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, glass) = s.ask(&alice, "prod:break-glass", "INC-9 outage").await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, denied) = s.ask(&alice, "orders:write", "CHG-1 resize").await;
    assert_eq!(st, StatusCode::CREATED);
    let denied_id = denied["id"].as_str().unwrap();
    s.json("POST", &format!("/v1/requests/{denied_id}/deny"), &bob, Value::Null).await;

    // chat and soc: created, approved, revoked, created (+ break-glass), auto-approved, created, denied.
    let all = rx.wait_for(2 * 8 + 1);
    let of = |p: &str| all.iter().filter(|r| r.path == p).cloned().collect::<Vec<_>>();
    let soc: Vec<Value> = of("/soc").iter().map(body).collect();
    let types: Vec<&str> = soc.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "request.created",
            "request.approved",
            "access.revoked",
            "request.created",
            "break_glass.used",
            "request.approved",
            "request.created",
            "request.denied"
        ]
    );
    assert_eq!(soc[0]["event"]["grant"], id.as_str());
    assert_eq!(soc[0]["link"], format!("https://jitgate.example/ui/requests/{id}"));
    assert_eq!(soc[1]["event"]["approver"], "bob");

    // Every signed delivery verifies; the delivery ids are unique.
    for r in of("/soc").iter().chain(&of("/glass")) {
        let sig = &r.headers["x-jitgate-signature"];
        let ts: u64 = sig.strip_prefix("t=").unwrap().split(',').next().unwrap().parse().unwrap();
        assert_eq!(sig, &notify::signature(&HOOK_SECRET, ts, &r.body), "the HMAC covers the timestamp and body");
        assert_ne!(sig, &notify::signature(&HOOK_SECRET, ts + 1, &r.body), "and the timestamp is bound");
    }
    let ids: std::collections::HashSet<&String> = all.iter().map(|r| &r.headers["x-jitgate-delivery"]).collect();
    assert_eq!(ids.len(), all.len(), "one delivery id per delivery");

    // Slack: text and blocks with a button to the approval page; mrkdwn from the requester is defused.
    let chat: Vec<Value> = of("/chat").iter().map(body).collect();
    assert_eq!(chat.len(), 8);
    let text = chat[0]["text"].as_str().unwrap();
    assert!(text.contains("alice") && text.contains("orders:write") && text.contains(&id), "{text}");
    assert!(!text.contains('<') && !text.contains('*'), "no mention, link or markup injected: {text}");
    assert_eq!(chat[0]["blocks"][1]["elements"][0]["url"], format!("https://jitgate.example/ui/requests/{id}"));
    assert!(!of("/chat")[0].headers.contains_key("x-jitgate-signature"), "no secret, no signature");
    assert!(chat[4]["text"].as_str().unwrap().contains("BREAK-GLASS"));

    // The break-glass-only webhook got exactly the break-glass notice.
    let glass_hook: Vec<Value> = of("/glass").iter().map(body).collect();
    assert_eq!(glass_hook.len(), 1);
    assert_eq!(
        (glass_hook[0]["type"].as_str(), glass_hook[0]["event"]["grant"].as_str()),
        (Some("break_glass.used"), glass["id"].as_str())
    );

    // No token ever leaves in a notice.
    assert!(all.iter().all(|r| !String::from_utf8_lossy(&r.body).contains("eyJ")));
    assert_eq!(s.metric("soc", "delivered"), 8);
    assert_eq!(s.metric("glass", "delivered"), 1);
}

/// Five requests; how long each took to be answered, sorted.
#[tokio::test]
async fn expiries_are_announced_once_and_an_expired_request_cannot_be_decided() {
    let rx = Receiver::start(Answer::Status(200));
    let s = sidecar(&format!(
        "  webhooks:\n    - {{name: soc, url: '{}', format: json, secret_file: hook-secret, events: [request.expired]}}\n",
        rx.url("/soc")
    ));
    let (alice, bob, sam) =
        (s.id_token("alice", &["sre"]), s.id_token("bob", &["sre-leads"]), s.id_token("sam", &["secops"]));
    let id_of = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let approved = id_of(&s.ask(&alice, "orders:write", "INC-1 restock").await.1);
    assert_eq!(s.json("POST", &format!("/v1/requests/{approved}/approve"), &bob, Value::Null).await.0, StatusCode::OK);
    let waiting = id_of(&s.ask(&alice, "orders:write", "INC-2 refunds").await.1);
    let cancelled = id_of(&s.ask(&alice, "orders:write", "INC-3 typo").await.1);
    assert_eq!(s.json("POST", "/v1/revoke", &sam, json!({"grant": cancelled})).await.0, StatusCode::OK);
    assert_eq!(grants::expire_due(&s.app).unwrap(), 0, "nothing is due yet");

    // 30 minutes on, the approved grant's time is up: announced once, however often the sweep runs.
    s.app.clock.pin(NOW + 1800);
    assert_eq!(grants::expire_due(&s.app).unwrap(), 1);
    assert_eq!(grants::expire_due(&s.app).unwrap(), 0, "announced once");

    // A day on, the undecided request expires; a late decision is refused, even before the sweep.
    s.app.clock.pin(NOW + 86_400);
    let bob = s.id_token("bob", &["sre-leads"]);
    let (st, late) = s.json("POST", &format!("/v1/requests/{waiting}/approve"), &bob, Value::Null).await;
    assert_eq!((st, late["error"].as_str()), (StatusCode::CONFLICT, Some("not_pending")));
    assert_eq!(grants::expire_due(&s.app).unwrap(), 1, "the cancelled request ends without a notice");
    assert_eq!(grants::expire_due(&s.app).unwrap(), 0);
    let alice = s.id_token("alice", &["sre"]);
    let (_, shown) = s.json("GET", &format!("/v1/requests/{waiting}"), &alice, Value::Null).await;
    assert_eq!(shown["status"], "expired");
    let (st, _) = s.json("POST", &format!("/v1/requests/{waiting}/approve"), &bob, Value::Null).await;
    assert_eq!(st, StatusCode::CONFLICT, "and after it");

    let got: Vec<Value> = rx.wait_for(2).iter().map(body).collect();
    let seen: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|b| {
            (b["type"].as_str().unwrap(), b["event"]["grant"].as_str().unwrap(), b["event"]["stage"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        seen,
        [("request.expired", approved.as_str(), "active"), ("request.expired", waiting.as_str(), "pending")]
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(rx.received().len(), 2, "nothing for the cancelled request");
}

async fn timed_requests(s: &Sidecar, who: &str) -> Vec<Duration> {
    let mut took = Vec::new();
    for i in 0..5 {
        let t0 = Instant::now();
        let (st, _) = s.ask(who, "orders:write", &format!("INC-{i} receiver test")).await;
        took.push(t0.elapsed());
        assert_eq!(st, StatusCode::CREATED);
    }
    took.sort();
    took
}

#[tokio::test]
async fn a_slow_receiver_holds_up_no_decision() {
    let healthy = Receiver::start(Answer::Status(200));
    let s = sidecar(&format!("  webhooks:\n    - {{name: ok, url: '{}', format: slack}}\n", healthy.url("/")));
    let baseline = timed_requests(&s, &s.id_token("alice", &["sre"])).await;
    drop(s);

    let rx = Receiver::start(Answer::Hold);
    let s =
        sidecar(&format!("  timeout: 60\n  webhooks:\n    - {{name: slow, url: '{}', format: slack}}\n", rx.url("/")));
    // The receiver holds the first delivery until released: if a decision waited for it, these
    // requests could not be answered at all.
    let held = timed_requests(&s, &s.id_token("alice", &["sre"])).await;
    eprintln!(
        "requests answered, median / max: healthy receiver {:?} / {:?}, receiver holding a notice {:?} / {:?}",
        baseline[2], baseline[4], held[2], held[4]
    );
    assert_eq!(rx.wait_for(1).len(), 1);
    assert_eq!(*rx.holding.lock().unwrap(), 1, "the receiver is still holding the first notice");
    rx.release();
    assert_eq!(rx.wait_for(5).len(), 5, "then every notice arrives, in order");
    let texts: Vec<String> = rx.received().iter().map(|r| body(r)["text"].as_str().unwrap().to_owned()).collect();
    assert!(texts.iter().enumerate().all(|(i, t)| t.contains(&format!("INC-{i}"))), "{texts:?}");
}

#[tokio::test]
async fn a_receiver_that_is_down_or_failing_gets_the_notice_on_a_retry() {
    // A port nobody listens on yet.
    let spare = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = spare.local_addr().unwrap().port();
    drop(spare);
    let failing = Receiver::start(Answer::Status(503));
    let refusing = Receiver::start(Answer::Status(400));
    let s = sidecar(&format!(
        "  backoff_ms: 50\n  retries: 8\n  webhooks:\n\
         \x20   - {{name: down, url: 'http://127.0.0.1:{port}/', format: slack}}\n\
         \x20   - {{name: failing, url: '{}', format: slack}}\n\
         \x20   - {{name: refusing, url: '{}', format: slack}}\n",
        failing.url("/"),
        refusing.url("/")
    ));
    let alice = s.id_token("alice", &["sre"]);
    let (st, _) = s.ask(&alice, "orders:write", "INC-1 receiver down").await;
    assert_eq!(st, StatusCode::CREATED, "the decision does not wait for any receiver");
    assert!(failing.wait_for(3).len() >= 3, "a 503 is tried again");
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.metric("down", "retried") < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(s.metric("down", "retried") >= 2);
    let back = Receiver::on(TcpListener::bind(("127.0.0.1", port)).unwrap(), Answer::Status(200));
    let got = back.wait_for(1);
    assert!(body(&got[0])["text"].as_str().unwrap().contains("INC-1"), "the receiver that came back gets it");
    assert_eq!(refusing.received().len(), 1, "a 400 is not tried again");
    assert_eq!(s.metric("refusing", "refused"), 1);
}

#[tokio::test]
async fn a_full_queue_drops_notices_and_counts_them_never_decisions() {
    let rx = Receiver::start(Answer::Hold);
    let s = sidecar(&format!("  queue: 2\n  webhooks:\n    - {{name: tiny, url: '{}', format: slack}}\n", rx.url("/")));
    let alice = s.id_token("alice", &["sre"]);
    let mut created = 0;
    for i in 0..12 {
        let (st, _) = s.ask(&alice, "orders:read", &format!("n{i}")).await;
        created += usize::from(st == StatusCode::CREATED);
    }
    assert_eq!(created, 12, "every request is decided");
    // orders:read is approved automatically: 24 notices for a queue of 2 behind a held receiver.
    let dropped = s.metric("*", "dropped") + s.metric("tiny", "dropped");
    assert!(dropped >= 18, "dropped {dropped}");
    rx.release();
}

#[test]
fn a_bad_notifications_block_is_refused_naming_the_problem() {
    for (block, expected) in [
        ("  webhooks:\n    - {name: soc, url: 'https://soc.example/h', format: json}\n", "needs a secret_file"),
        ("  webhooks:\n    - {name: soc, url: 'http://soc.example/h', format: slack}\n", "url must be https"),
        ("  webhooks:\n    - {name: 'Bad Name', url: 'https://x.example/', format: slack}\n", "webhook name"),
        ("  webhooks: []\n", "give 1 to 16 webhooks"),
        ("  queue: 0\n  webhooks:\n    - {name: a, url: 'https://x.example/', format: slack}\n", "queue must be"),
        (
            "  webhooks:\n    - {name: a, url: 'https://x.example/', format: slack, events: [grant.eaten]}\n",
            "unknown variant",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), block);
        let e = Config::load(&dir.path().join("sidecar.yaml")).unwrap_err();
        assert!(e.contains(expected), "{block}: {e}");
    }
}
