//! The audit exporters (`audit.export`): one thread per sink reads the chain forward from the
//! sink's cursor and ships each event, at least once.
//!
//! **Acknowledged** means: written and flushed on a connection that was still healthy (a
//! non-blocking read saw neither an end of stream, a reset nor a TLS alert) at least `ack_delay`
//! after the write. A flushed write alone proves nothing: a collector that dies with our bytes
//! unread in its socket buffer drops them, and we learn of it only from the reset that follows.
//! Whatever was sent but not acknowledged when a connection fails is sent again on the next one,
//! from the acknowledged position; so a few seconds of events may arrive twice, recognizable by
//! their `seq`. Nothing waits in memory: the chain on disk is the queue (one read batch at a time).
//!
//! The cursor file is written at most about once a second and may lag what was acknowledged (a
//! crash resends the difference); retention keeps every event after the lowest cursor on disk.

pub mod cursor;
pub mod stdout;
pub mod syslog;
pub mod transport;

use crate::blocking::lock;
use crate::config::export::{ExportSink, SinkKind};
use crate::metrics::ExportCounters;
use cursor::{Cursor, Keeper};
use jitgate_audit::ChainReader;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub use transport::Transport;

/// Events read (and sent) at a time.
const BATCH: usize = 256;
/// Events sent but not yet acknowledged beyond which reading waits for acknowledgements: the
/// sending rate is at most this per `ack_delay`, so it is well above what ingest can chain in
/// that time (a few hundred thousand a second); in memory that is one small entry per batch.
const MAX_IN_FLIGHT: u64 = 4_194_304;
/// How often a caught-up sink looks for new events (and checks its connection).
const POLL: Duration = Duration::from_millis(200);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest error text kept for the status.
const MAX_ERROR: usize = 512;

/// What the console and the metrics show of one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStatus {
    pub name: String,
    /// `syslog` or `stdout`.
    pub kind: &'static str,
    /// The last seq the sink acknowledged (0: none).
    pub acknowledged: u64,
    /// Chain events after it.
    pub lag: u64,
    pub connected: bool,
    /// The last connect, write, chain or cursor error (addresses and OS errors, nothing secret);
    /// kept after a recovery, when `connected` tells the present.
    pub last_error: Option<String>,
    /// Events retention removed before this sink sent them.
    pub skipped: u64,
}

#[derive(Debug)]
struct SinkState {
    config: ExportSink,
    cursor_path: PathBuf,
    /// The cursor as loaded; the thread takes over from it.
    loaded: Cursor,
    fresh: bool,
    acked: AtomicU64,
    /// What the cursor file says: retention must keep the events after it.
    stored: AtomicU64,
    connected: AtomicBool,
    skipped: AtomicU64,
    last_error: Mutex<Option<String>>,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

#[derive(Debug)]
struct Shared {
    sinks: Vec<SinkState>,
    hold: Arc<AtomicU64>,
    head: OnceLock<Arc<AtomicU64>>,
    stop: AtomicBool,
}

impl Shared {
    /// The lowest seq a sink has yet to have on disk as acknowledged (`u64::MAX`: no sinks).
    fn update_hold(&self) {
        let hold =
            self.sinks.iter().map(|s| s.stored.load(Ordering::Acquire).saturating_add(1)).min().unwrap_or(u64::MAX);
        self.hold.store(hold, Ordering::Release);
    }
}

/// The configured sinks, their cursors and threads.
#[derive(Debug)]
pub struct Exporters {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Exporters {
    /// Reads each sink's cursor (`<state_dir>/<name>.cursor`), prepares its TLS configuration,
    /// and stores into `hold` the lowest seq any sink has yet to deliver (`u64::MAX` when there
    /// are no sinks): retention keeps segments holding seqs >= hold.
    pub fn load(sinks: &[ExportSink], state_dir: &Path, hold: Arc<AtomicU64>) -> Result<Exporters, String> {
        let mut states = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let cursor_path = cursor::path(state_dir, &sink.name);
            let loaded = cursor::load(&cursor_path)?;
            let tls = match &sink.kind {
                SinkKind::Syslog(s) => s
                    .tls
                    .as_ref()
                    .map(syslog::tls_config)
                    .transpose()
                    .map_err(|e| format!("audit.export `{}`: {e}", sink.name))?,
                SinkKind::Stdout => None,
            };
            let fresh = loaded.is_none();
            let loaded = loaded.unwrap_or(Cursor { seq: 0, hash: String::new() });
            states.push(SinkState {
                config: sink.clone(),
                cursor_path,
                acked: AtomicU64::new(loaded.seq),
                stored: AtomicU64::new(loaded.seq),
                loaded,
                fresh,
                connected: AtomicBool::new(false),
                skipped: AtomicU64::new(0),
                last_error: Mutex::new(None),
                tls,
            });
        }
        let shared = Arc::new(Shared { sinks: states, hold, head: OnceLock::new(), stop: AtomicBool::new(false) });
        shared.update_hold();
        Ok(Exporters { shared, threads: Mutex::new(Vec::new()) })
    }

    /// Starts one thread per sink reading the chain in `chain_dir`; `head` is the seq of the
    /// newest chained event, kept current by the app. A second call does nothing.
    pub fn start(&self, chain_dir: PathBuf, head: Arc<AtomicU64>, metrics: ExportCounters) {
        self.start_with(chain_dir, head, metrics, |_| None);
    }

    /// `start`, with a writer standing in for stdout (tests).
    fn start_with(
        &self,
        chain_dir: PathBuf,
        head: Arc<AtomicU64>,
        metrics: ExportCounters,
        mut stdout: impl FnMut(&str) -> Option<Box<dyn std::io::Write + Send>>,
    ) {
        let mut threads = lock(&self.threads);
        if !threads.is_empty() || self.shared.head.set(head.clone()).is_err() {
            return;
        }
        for (index, sink) in self.shared.sinks.iter().enumerate() {
            metrics.declare(&sink.config.name);
            let transport: Box<dyn Transport> = match &sink.config.kind {
                SinkKind::Syslog(s) => Box::new(syslog::SyslogTransport::new((**s).clone(), sink.tls.clone())),
                SinkKind::Stdout => Box::new(stdout::StdoutTransport::new(
                    stdout(&sink.config.name).unwrap_or_else(|| Box::new(std::io::stdout())),
                )),
            };
            let worker = Worker::new(self.shared.clone(), index, transport, &chain_dir, head.clone(), metrics.clone());
            let spawned =
                std::thread::Builder::new().name(format!("export-{}", sink.config.name)).spawn(move || worker.run());
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    eprintln!("jitgate-sidecar: audit export `{}`: cannot start its thread: {e}", sink.config.name);
                    *lock(&sink.last_error) = Some(format!("not started: {e}"));
                }
            }
        }
    }

    /// Per sink: acknowledged seq, lag, connected, last error, skipped events.
    pub fn status(&self) -> Vec<SinkStatus> {
        let head = self.shared.head.get().map_or(0, |h| h.load(Ordering::Acquire));
        self.shared
            .sinks
            .iter()
            .map(|s| {
                let acknowledged = s.acked.load(Ordering::Acquire);
                SinkStatus {
                    name: s.config.name.clone(),
                    kind: match s.config.kind {
                        SinkKind::Syslog(_) => "syslog",
                        SinkKind::Stdout => "stdout",
                    },
                    acknowledged,
                    lag: head.saturating_sub(acknowledged),
                    connected: s.connected.load(Ordering::Acquire),
                    last_error: lock(&s.last_error).clone(),
                    skipped: s.skipped.load(Ordering::Acquire),
                }
            })
            .collect()
    }

    /// Stops the threads, each writing its cursor first (at shutdown: nothing acknowledged is
    /// sent again after a clean restart).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A batch sent and not yet acknowledged: its last event, and when it was flushed.
#[derive(Debug)]
struct InFlight {
    last: Cursor,
    at: Instant,
}

#[derive(Debug)]
struct Worker {
    shared: Arc<Shared>,
    index: usize,
    name: String,
    transport: Box<dyn Transport>,
    chain_dir: PathBuf,
    reader: ChainReader,
    keeper: Keeper,
    in_flight: VecDeque<InFlight>,
    /// The last seq sent on the current connection.
    sent: u64,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// No cursor yet: what the reader finds missing at the start was never this sink's.
    fresh: bool,
    skipped_seen: u64,
    head: Arc<AtomicU64>,
    metrics: ExportCounters,
    /// The last error written to stderr, so that a collector that stays down is not logged every retry.
    logged: Option<String>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !s.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        s.truncate(end);
    }
    s
}

impl Worker {
    fn new(
        shared: Arc<Shared>,
        index: usize,
        transport: Box<dyn Transport>,
        chain_dir: &Path,
        head: Arc<AtomicU64>,
        metrics: ExportCounters,
    ) -> Worker {
        let (name, path, loaded, fresh) = match shared.sinks.get(index) {
            Some(s) => (s.config.name.clone(), s.cursor_path.clone(), s.loaded.clone(), s.fresh),
            None => (String::new(), PathBuf::new(), Cursor { seq: 0, hash: String::new() }, true),
        };
        Worker {
            index,
            name,
            transport,
            chain_dir: chain_dir.to_owned(),
            reader: ChainReader::new(chain_dir, loaded.seq),
            sent: loaded.seq,
            keeper: Keeper::new(path, loaded),
            in_flight: VecDeque::new(),
            backoff: BACKOFF_FIRST,
            retry_at: None,
            fresh,
            skipped_seen: 0,
            head,
            metrics,
            logged: None,
            shared,
        }
    }

    fn state(&self) -> Option<&SinkState> {
        self.shared.sinks.get(self.index)
    }

    fn note(&mut self, what: String) {
        let what = clip(what);
        if self.logged.as_deref() != Some(what.as_str()) {
            eprintln!("jitgate-sidecar: audit export `{}`: {what}", self.name);
            self.logged = Some(what.clone());
        }
        if let Some(s) = self.state() {
            *lock(&s.last_error) = Some(what);
        }
    }

    fn run(mut self) {
        self.check_cursor();
        while !self.shared.stop.load(Ordering::Acquire) {
            let wait = self.step(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        self.transport.close();
        self.set_connected(false);
        self.persist(Instant::now(), true);
    }

    /// A cursor for another chain (the data directory was replaced, or the chain restarted)
    /// would skip events or wait forever: then everything kept is sent again.
    fn check_cursor(&mut self) {
        let Cursor { seq, hash } = self.keeper.acked().clone();
        if seq == 0 {
            return;
        }
        let mut probe = ChainReader::new(&self.chain_dir, seq.saturating_sub(1));
        let why = match probe.read(1, u64::MAX) {
            Ok(lines) => match lines.first() {
                Some(l) if l.seq == seq && l.hash == hash => return,
                Some(l) if l.seq == seq => format!("event {seq} of the chain has another hash than the cursor's"),
                // Expired by retention: nothing to compare with, and nothing after it was lost.
                Some(_) => return,
                None if probe.skipped() > 0 => return,
                None => format!("the cursor is at event {seq} but the chain ends before it"),
            },
            Err(e) => {
                self.note(format!("cannot check the cursor: {e}"));
                return;
            }
        };
        self.note(format!("{why} (another chain?): sending every event kept again"));
        self.keeper.acknowledge(Cursor { seq: 0, hash: String::new() });
        self.persist(Instant::now(), true);
        self.reader = ChainReader::new(&self.chain_dir, 0);
        self.sent = 0;
        self.fresh = true;
    }

    fn set_connected(&self, up: bool) {
        if let Some(s) = self.state() {
            s.connected.store(up, Ordering::Release);
        }
    }

    fn persist(&mut self, now: Instant, force: bool) {
        match self.keeper.persist(now, force) {
            Ok(true) => {
                if let Some(s) = self.state() {
                    s.stored.store(self.keeper.stored().seq, Ordering::Release);
                }
                self.shared.update_hold();
            }
            Ok(false) => {}
            Err(e) => self.note(format!("cursor not saved (retried): {e}")),
        }
    }

    /// A failed connection or write: everything in flight is sent again after the backoff.
    fn fail(&mut self, now: Instant, why: String, count: bool) {
        if count {
            self.metrics.failure(&self.name);
        }
        let wait = self.backoff;
        self.note(format!(
            "{why}; retrying in {}s from event {}",
            wait.as_secs(),
            self.keeper.acked().seq.saturating_add(1)
        ));
        self.transport.close();
        self.set_connected(false);
        self.in_flight.clear();
        self.retry_at = Some(now + wait);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn publish_position(&self) {
        let acked = self.keeper.acked().seq;
        if let Some(s) = self.state() {
            s.acked.store(acked, Ordering::Release);
        }
        self.metrics.position(&self.name, acked, self.head.load(Ordering::Acquire).saturating_sub(acked));
    }

    /// One round: connect if due, acknowledge what has aged, read and send a batch. Returns how
    /// long to wait before the next round.
    fn step(&mut self, now: Instant) -> Duration {
        if let Some(at) = self.retry_at {
            if at > now {
                // The lag keeps growing while the collector is down: the metric must show it.
                self.publish_position();
                return (at - now).min(POLL);
            }
            self.retry_at = None;
        }
        if !self.transport.is_open() {
            if let Err(e) = self.transport.open() {
                self.fail(now, e, true);
                return Duration::ZERO;
            }
            self.set_connected(true);
            self.reader.rewind(self.keeper.acked().seq);
            self.sent = self.keeper.acked().seq;
        }
        if let Err(e) = self.transport.check() {
            // A receiver closing an idle connection lost nothing: not counted as a failure.
            let lost = !self.in_flight.is_empty();
            self.fail(now, e, lost);
            return Duration::ZERO;
        }
        let delay = self.transport.ack_delay();
        while let Some(front) = self.in_flight.front() {
            if now.saturating_duration_since(front.at) < delay {
                break;
            }
            let last = front.last.clone();
            self.in_flight.pop_front();
            self.keeper.acknowledge(last);
            self.fresh = false;
            self.backoff = BACKOFF_FIRST;
        }
        self.persist(now, false);
        self.publish_position();
        let until_next_ack = self.in_flight.front().map(|f| (f.at + delay).saturating_duration_since(now));
        let poll = until_next_ack.map_or(POLL, |d| d.min(POLL));
        if self.sent.saturating_sub(self.keeper.acked().seq) >= MAX_IN_FLIGHT {
            return poll;
        }
        // Only what the writer has synced: an event is never shipped before it is on disk.
        let batch = match self.reader.read(BATCH, self.head.load(Ordering::Acquire)) {
            Ok(b) => b,
            Err(e) => {
                self.fail(now, format!("reading the chain: {e}"), true);
                return Duration::ZERO;
            }
        };
        self.count_skipped();
        let Some(last) = batch.last() else { return poll };
        let last = Cursor { seq: last.seq, hash: last.hash.clone() };
        if let Err(e) = self.transport.send(&batch, unix_now()) {
            self.fail(now, e, true);
            return Duration::ZERO;
        }
        self.metrics.sent(&self.name, batch.len() as u64);
        self.sent = last.seq;
        // The delay runs from the end of the write (which may have blocked), not the round's start.
        self.in_flight.push_back(InFlight { last, at: Instant::now() });
        if self.logged.is_some() {
            self.logged = None;
        }
        Duration::ZERO
    }

    fn count_skipped(&mut self) {
        let total = self.reader.skipped();
        let new = total.saturating_sub(self.skipped_seen);
        if new == 0 {
            return;
        }
        self.skipped_seen = total;
        let from = self.reader.next_seq();
        if self.fresh && self.keeper.acked().seq == 0 {
            eprintln!(
                "jitgate-sidecar: audit export `{}`: no cursor yet: starting at the oldest event kept, {from}",
                self.name
            );
            return;
        }
        self.metrics.skipped(&self.name, new);
        if let Some(s) = self.state() {
            s.skipped.fetch_add(new, Ordering::AcqRel);
        }
        eprintln!(
            "jitgate-sidecar: audit export `{}`: {new} events were removed by retention before they were exported; going on at {from}",
            self.name
        );
    }
}

#[cfg(test)]
mod tests;
