//! The exporters against chains written here and a local TCP collector that misbehaves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
use super::*;
use crate::config::export::{ExportSink, SinkKind, Syslog, DEFAULT_SD_ID};
use crate::metrics::Metrics;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;

/// Appends events `seqs` to the segment starting at `segment` (hashes made up: the reader does
/// not check them).
fn append(dir: &Path, segment: u64, seqs: std::ops::RangeInclusive<u64>) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("audit-{segment:020}.jsonl"));
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let mut text = String::new();
    for seq in seqs {
        text += &format!(
            "{{\"seq\":{seq},\"prev\":\"{:064x}\",\"hash\":\"{seq:064x}\",\"event\":{{\"ts\":\"2026-12-01T10:00:00.000Z\",\"event\":\"access.allow\",\"n\":{seq}}}}}\n",
            seq - 1
        );
    }
    f.write_all(text.as_bytes()).unwrap();
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn syslog_sink(port: u16, ack_delay: Duration) -> ExportSink {
    ExportSink {
        name: "siem".into(),
        kind: SinkKind::Syslog(Box::new(Syslog {
            host: "127.0.0.1".into(),
            port,
            tls: None,
            facility: 13,
            app_name: "jitgate-sidecar".into(),
            hostname: "test".into(),
            sd_id: DEFAULT_SD_ID.into(),
            ack_delay,
            timeout: Duration::from_secs(5),
        })),
    }
}

/// Reads octet-counted frames and returns each one's seq; None at the end of the stream.
fn next_seq(r: &mut impl BufRead) -> Option<u64> {
    let mut len = Vec::new();
    r.read_until(b' ', &mut len).ok()?;
    let n: usize = std::str::from_utf8(len.strip_suffix(b" ")?).ok()?.parse().ok()?;
    let mut msg = vec![0u8; n];
    r.read_exact(&mut msg).ok()?;
    let msg = String::from_utf8(msg).unwrap();
    assert!(msg.starts_with("<110>1 2026-12-01T10:00:00.000Z test jitgate-sidecar "), "{msg}");
    let seq = msg.split("seq=\"").nth(1)?.split('"').next()?.parse().unwrap();
    assert!(msg.ends_with(&format!("\"n\":{seq}}}")), "{msg}");
    Some(seq)
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn seqs(&self) -> Vec<u64> {
        let text = String::from_utf8(lock(&self.0).clone()).unwrap();
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64().unwrap()).collect()
    }
}

fn stdout_sink() -> ExportSink {
    ExportSink { name: "shipper".into(), kind: SinkKind::Stdout }
}

fn start_stdout(ex: &Exporters, chain: &Path, head: u64, out: &Captured) {
    let out = out.clone();
    ex.start_with(chain.to_owned(), Arc::new(AtomicU64::new(head)), ExportCounters::default(), move |_| {
        Some(Box::new(out.clone()))
    });
}

#[test]
fn no_sinks_hold_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hold = Arc::new(AtomicU64::new(0));
    let ex = Exporters::load(&[], dir.path(), hold.clone()).unwrap();
    assert_eq!(hold.load(Ordering::Acquire), u64::MAX);
    assert!(ex.status().is_empty());
}

#[test]
fn a_collector_that_drops_the_connection_gets_the_unacknowledged_events_again() {
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("audit");
    append(&chain, 1, 1..=300);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel::<(u8, u64)>();
    let collector = std::thread::spawn(move || {
        // The first connection takes everything up to event 310, then closes with the rest unread.
        let (conn, _) = listener.accept().unwrap();
        let mut r = BufReader::with_capacity(64, conn);
        while let Some(seq) = next_seq(&mut r) {
            tx.send((1, seq)).unwrap();
            if seq == 310 {
                break;
            }
        }
        drop(r);
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut r = BufReader::new(conn);
        while let Some(seq) = next_seq(&mut r) {
            tx.send((2, seq)).unwrap();
        }
    });
    let hold = Arc::new(AtomicU64::new(0));
    let metrics = Metrics::default();
    let state = dir.path().join("export");
    let ex = Exporters::load(&[syslog_sink(port, Duration::from_millis(1500))], &state, hold.clone()).unwrap();
    assert_eq!(hold.load(Ordering::Acquire), 1, "a sink without a cursor holds the whole chain");
    let head = Arc::new(AtomicU64::new(300));
    ex.start(chain.clone(), head.clone(), metrics.export.clone());
    wait_for("the first 300 acknowledged", || ex.status()[0].acknowledged == 300);
    wait_for("the cursor on disk", || hold.load(Ordering::Acquire) == 301);
    assert_eq!(cursor::load(&cursor::path(&state, "siem")).unwrap().unwrap().seq, 300);
    // A new segment; the collector reads ten of its events and goes away.
    append(&chain, 301, 301..=600);
    head.store(600, Ordering::Release);
    wait_for("all 600 acknowledged", || ex.status()[0].acknowledged == 600);
    ex.stop();
    let status = &ex.status()[0];
    assert_eq!((status.acknowledged, status.lag, status.connected), (600, 0, false));
    assert!(status.last_error.as_deref().is_some_and(|e| e.contains("retrying in 1s from event 301")), "{status:?}");
    collector.join().unwrap();
    let got: Vec<(u8, u64)> = rx.try_iter().collect();
    let first: Vec<u64> = got.iter().filter(|(c, _)| *c == 1).map(|(_, s)| *s).collect();
    let second: Vec<u64> = got.iter().filter(|(c, _)| *c == 2).map(|(_, s)| *s).collect();
    assert_eq!(first, (1..=310).collect::<Vec<_>>());
    assert_eq!(second, (301..=600).collect::<Vec<_>>(), "resent from the acknowledged position, in order");
    assert_eq!(
        cursor::load(&cursor::path(&state, "siem")).unwrap().unwrap(),
        Cursor { seq: 600, hash: format!("{:064x}", 600) }
    );
    assert_eq!(hold.load(Ordering::Acquire), 601);
    let text = metrics.encode();
    assert!(text.contains("jitgate_sidecar_audit_export_failures_total{sink=\"siem\"} 1"), "{text}");
    let sent: u64 = text
        .split("jitgate_sidecar_audit_export_events_total{sink=\"siem\"} ")
        .nth(1)
        .unwrap()
        .split('\n')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent >= 600 + 10, "{sent} sent, the resends included");
    assert!(text.contains("jitgate_sidecar_audit_export_acknowledged_seq{sink=\"siem\"} 600"), "{text}");
    assert!(text.contains("jitgate_sidecar_audit_export_lag_events{sink=\"siem\"} 0"), "{text}");
}

#[test]
fn a_collector_that_is_down_gets_everything_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("audit");
    append(&chain, 1, 1..=50);
    // A port nobody listens on yet.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = Metrics::default();
    let ex = Exporters::load(&[syslog_sink(port, Duration::from_millis(200))], dir.path(), Arc::new(AtomicU64::new(0)))
        .unwrap();
    ex.start(chain.clone(), Arc::new(AtomicU64::new(50)), metrics.export.clone());
    wait_for("a failed connect", || ex.status()[0].last_error.is_some());
    assert!(!ex.status()[0].connected);
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut r = BufReader::new(conn);
    let seqs: Vec<u64> = (0..50).map(|_| next_seq(&mut r).unwrap()).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    wait_for("acknowledged", || ex.status()[0].acknowledged == 50);
    assert!(ex.status()[0].connected);
    ex.stop();
    assert!(metrics.encode().contains("jitgate_sidecar_audit_export_failures_total{sink=\"siem\"} "));
}

#[test]
fn stdout_resumes_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, state) = (dir.path().join("audit"), dir.path().join("export"));
    append(&chain, 1, 1..=50);
    let hold = Arc::new(AtomicU64::new(0));
    let out = Captured::default();
    let ex = Exporters::load(&[stdout_sink()], &state, hold.clone()).unwrap();
    start_stdout(&ex, &chain, 50, &out);
    wait_for("50 acknowledged", || ex.status()[0].acknowledged == 50);
    ex.stop();
    assert_eq!(out.seqs(), (1..=50).collect::<Vec<_>>());
    let first = String::from_utf8(lock(&out.0).clone()).unwrap();
    let first = first.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "{{\"seq\":1,\"prev\":\"{:064x}\",\"hash\":\"{:064x}\",\"event\":{{\"ts\":\"2026-12-01T10:00:00.000Z\",\"event\":\"access.allow\",\"n\":1}}}}",
            0, 1
        )
    );
    // Restarted with 20 more events: only the new ones.
    append(&chain, 1, 51..=70);
    let out = Captured::default();
    let ex = Exporters::load(&[stdout_sink()], &state, hold.clone()).unwrap();
    assert_eq!(hold.load(Ordering::Acquire), 51);
    start_stdout(&ex, &chain, 70, &out);
    wait_for("70 acknowledged", || ex.status()[0].acknowledged == 70);
    ex.stop();
    assert_eq!(out.seqs(), (51..=70).collect::<Vec<_>>());
}

#[test]
fn a_cursor_for_another_chain_sends_everything_again() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, state) = (dir.path().join("audit"), dir.path().join("export"));
    append(&chain, 1, 1..=10);
    for stale in [Cursor { seq: 5, hash: "ab".repeat(32) }, Cursor { seq: 99, hash: "cd".repeat(32) }] {
        cursor::store(&cursor::path(&state, "shipper"), &stale).unwrap();
        let out = Captured::default();
        let ex = Exporters::load(&[stdout_sink()], &state, Arc::new(AtomicU64::new(0))).unwrap();
        start_stdout(&ex, &chain, 10, &out);
        wait_for("10 acknowledged", || ex.status()[0].acknowledged == 10);
        ex.stop();
        assert_eq!(out.seqs(), (1..=10).collect::<Vec<_>>(), "{stale:?}");
        assert!(ex.status()[0].last_error.as_deref().is_some_and(|e| e.contains("sending every event kept again")));
    }
}

#[test]
fn events_expired_before_export_are_counted_but_not_for_a_new_sink() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, state) = (dir.path().join("audit"), dir.path().join("export"));
    // Events 1-100 are gone (retention): the oldest segment starts at 101.
    append(&chain, 101, 101..=120);
    let out = Captured::default();
    let ex = Exporters::load(&[stdout_sink()], &state, Arc::new(AtomicU64::new(0))).unwrap();
    start_stdout(&ex, &chain, 120, &out);
    wait_for("120 acknowledged", || ex.status()[0].acknowledged == 120);
    ex.stop();
    assert_eq!(
        (out.seqs().first().copied(), ex.status()[0].skipped),
        (Some(101), 0),
        "a new sink starts at the oldest kept"
    );
    // A sink whose cursor is at 40 missed 60 events.
    cursor::store(&cursor::path(&state, "shipper"), &Cursor { seq: 40, hash: format!("{:064x}", 40) }).unwrap();
    let out = Captured::default();
    let metrics = Metrics::default();
    let ex = Exporters::load(&[stdout_sink()], &state, Arc::new(AtomicU64::new(0))).unwrap();
    let o = out.clone();
    ex.start_with(chain.clone(), Arc::new(AtomicU64::new(120)), metrics.export.clone(), move |_| {
        Some(Box::new(o.clone()))
    });
    wait_for("120 acknowledged", || ex.status()[0].acknowledged == 120);
    ex.stop();
    assert_eq!((out.seqs().len(), ex.status()[0].skipped), (20, 60));
    assert!(metrics.encode().contains("jitgate_sidecar_audit_export_skipped_events_total{sink=\"shipper\"} 60"));
}
