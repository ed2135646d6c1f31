//! The chain's tests: what each kind of tampering looks like in the report, and how segments,
//! checkpoints and retention keep the chain verifiable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::*;
use crate::files::DurableAppend;
use jitgate_token::mint::{sign_typed, SigningKey};
use jitgate_token::{Alg, KeySet};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

#[derive(Debug)]
struct TestSigner(SigningKey);

impl Signer for TestSigner {
    fn sign(&self, payload: &[u8]) -> Result<String, String> {
        sign_typed(&self.0, CHECKPOINT_TYP, payload).map_err(|e| e.to_string())
    }
}

fn key(kid: &str) -> SigningKey {
    SigningKey::from_seed(Alg::ES256, Some(kid), &[kid.len() as u8; 32]).unwrap()
}

fn keys_of(k: &SigningKey) -> KeySet {
    KeySet::new(vec![k.verifying_jwk().unwrap()]).unwrap()
}

struct Setup {
    max_bytes: u64,
    retention: Retention,
    hold: Arc<AtomicU64>,
    anchors: Option<PathBuf>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            max_bytes: 1 << 30,
            retention: Retention::default(),
            hold: Arc::new(AtomicU64::new(u64::MAX)),
            anchors: None,
        }
    }
}

fn options(s: &Setup) -> Options {
    let k = key("k1");
    Options {
        segmenting: Segmenting { max_bytes: s.max_bytes, max_age_s: 86_400 },
        retention: s.retention.clone(),
        trusted: Some(keys_of(&k)),
        signer: Box::new(TestSigner(k)),
        anchoring: s.anchors.as_ref().map(|p| Anchoring {
            file: DurableAppend::open(p).unwrap(),
            every: 4,
            log_as: "test",
        }),
        legacy_file: None,
        hold: s.hold.clone(),
        published: None,
        log_as: "test",
    }
}

fn open(dir: &Path, s: &Setup) -> AuditLog {
    AuditLog::open(dir, options(s), 1000).unwrap().0
}

fn events(from: u64, to: u64) -> Vec<String> {
    (from..=to).map(|i| json!({"event": "grant.requested", "i": i}).to_string()).collect()
}

/// A chain of `n` events in one segment.
fn chain(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("audit");
    let mut log = open(&chain, &Setup::default());
    log.append(&events(1, n), 0).unwrap();
    (dir, chain)
}

/// A chain of `n` events, one segment per `per` events.
fn segmented(n: u64, per: u64, s: &Setup) -> (tempfile::TempDir, PathBuf, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("audit");
    let mut log = open(&chain, s);
    for start in (1..=n).step_by(per as usize) {
        log.append(&events(start, (start + per - 1).min(n)), 1000 + start).unwrap();
        log.rotate(1000 + start).unwrap();
    }
    (dir, chain, log)
}

fn segment_path(chain: &Path, first: u64) -> PathBuf {
    chain.join(format!("audit-{first:020}.jsonl"))
}

fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(String::from).collect();
    f(&mut lines);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn check(chain: &Path, keys: Option<&KeySet>) -> ChainReport {
    verify_chain(chain, &ChainCheck { keys, ..ChainCheck::default() }).unwrap()
}

#[test]
fn an_intact_chain_verifies_and_reopens_where_it_ended() {
    let (_d, chain) = chain(5);
    let r = check(&chain, None);
    assert_eq!((r.first, r.last, r.problem), (1, 5, None));
    let mut log = open(&chain, &Setup::default());
    assert_eq!(log.append(&[json!({"event": "x"}).to_string()], 0).unwrap(), 6);
    assert_eq!(check(&chain, None).problem, None);
}

#[test]
fn a_changed_line_is_named() {
    let (_d, chain) = chain(5);
    rewrite(&segment_path(&chain, 1), |l| l[2] = l[2].replace("\"i\":3", "\"i\":33"));
    let p = check(&chain, None).problem.unwrap();
    assert_eq!(p, "audit-00000000000000000001.jsonl line 3: content does not match its hash (changed)");
}

#[test]
fn a_removed_line_is_named() {
    let (_d, chain) = chain(5);
    rewrite(&segment_path(&chain, 1), |l| {
        l.remove(1);
    });
    let p = check(&chain, None).problem.unwrap();
    assert!(p.contains("line 2: seq 3 where 2 was due: 1 line(s) removed"), "{p}");
    let (_d, chain) = self::chain(5);
    rewrite(&segment_path(&chain, 1), |l| {
        l.pop();
    });
    // Removing the tail cannot be seen from the file alone; the head hash (reported) can.
    assert_eq!(check(&chain, None).last, 4);
}

#[test]
fn reordered_lines_are_named() {
    let (_d, chain) = chain(5);
    rewrite(&segment_path(&chain, 1), |l| l.swap(1, 2));
    let p = check(&chain, None).problem.unwrap();
    assert!(p.contains("line 2: seq 3 where 2 was due"), "{p}");
}

#[test]
fn a_single_file_chain_of_an_earlier_version_still_verifies() {
    let (_d, chain) = chain(5);
    let file = segment_path(&chain, 1);
    assert_eq!(verify(&file).unwrap(), Report { lines: 5, head: check(&chain, None).head, problem: None });
    rewrite(&file, |l| l[2] = l[2].replace("\"i\":3", "\"i\":33"));
    assert_eq!(verify(&file).unwrap().problem.unwrap(), "line 3: content does not match its hash (changed)");
}

#[test]
fn a_removed_tail_is_caught_by_a_published_head() {
    let dir = tempfile::tempdir().unwrap();
    let anchors_path = dir.path().join("anchors.jsonl");
    let chain = dir.path().join("audit");
    let mut log = open(&chain, &Setup { anchors: Some(anchors_path.clone()), ..Setup::default() });
    log.append(&events(1, 10), 7).unwrap();
    let anchors = read_anchors(&anchors_path).unwrap();
    assert_eq!(anchors.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![4, 8]);
    let with = |a: &[Anchor]| verify_chain(&chain, &ChainCheck { anchors: a, ..ChainCheck::default() }).unwrap();
    assert_eq!(with(&anchors).problem, None);
    rewrite(&segment_path(&chain, 1), |l| l.truncate(6));
    assert_eq!(with(&[]).problem, None, "the chain alone cannot tell");
    let p = with(&anchors).problem.unwrap();
    assert!(p.contains("ends at event 6") && p.contains("published at event 8"), "{p}");
}

#[test]
fn a_torn_last_line_is_truncated_and_the_chain_goes_on() {
    let (_d, chain) = chain(3);
    let mut f = std::fs::OpenOptions::new().append(true).open(segment_path(&chain, 1)).unwrap();
    std::io::Write::write_all(&mut f, br#"{"seq":4,"prev":"ab"#).unwrap();
    let (mut log, notes) = AuditLog::open(&chain, options(&Setup::default()), 0).unwrap();
    assert!(notes.iter().any(|n| n.contains("incomplete last record")), "{notes:?}");
    assert_eq!(log.append(&[json!({"event": "x"}).to_string()], 0).unwrap(), 4);
    assert_eq!(check(&chain, None).problem, None);
}

#[test]
fn a_broken_chain_is_not_extended() {
    let (_d, chain) = chain(3);
    rewrite(&segment_path(&chain, 1), |l| l[0] = l[0].replace("\"i\":1", "\"i\":9"));
    let e = AuditLog::open(&chain, options(&Setup::default()), 0).unwrap_err();
    assert!(e.contains("line 1") && e.contains("refusing to extend"), "{e}");
}

#[test]
fn segments_continue_the_chain_and_each_closed_one_has_a_signed_checkpoint() {
    let (_d, chain, mut log) = segmented(10, 3, &Setup::default());
    log.append(&events(11, 11), 2000).unwrap();
    let files: Vec<String> = segment_list(&chain);
    assert_eq!(files.len(), 5, "{files:?}");
    // The first line of each segment links to the last of the one before.
    let lines = |first| std::fs::read_to_string(segment_path(&chain, first)).unwrap();
    let last_hash: serde_json::Value = serde_json::from_str(lines(1).lines().last().unwrap()).unwrap();
    let first_of_next: serde_json::Value = serde_json::from_str(lines(4).lines().next().unwrap()).unwrap();
    assert_eq!((first_of_next["seq"].as_u64(), &first_of_next["prev"]), (Some(4), &last_hash["hash"]));
    let r = check(&chain, Some(&keys_of(&key("k1"))));
    assert_eq!(
        (r.first, r.last, r.checkpoints, r.signatures_checked, r.problem.clone()),
        (1, 11, 4, Some(4), None),
        "{r:?}"
    );
    assert!(r.summary().contains("events 1..=11 verified in 5 segments"), "{}", r.summary());
    // Another key does not make the checkpoints verify.
    let p = check(&chain, Some(&keys_of(&key("other")))).problem.unwrap();
    assert!(p.contains("checkpoint of audit-00000000000000000001.jsonl: signature"), "{p}");
    assert_eq!(log.status().segments, 5);
}

fn segment_list(chain: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(chain)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit-"))
        .collect();
    v.sort();
    v
}

#[test]
fn opening_reads_only_the_open_segment_and_a_full_check_finds_damage_in_a_closed_one() {
    let (_d, chain, log) = segmented(9, 3, &Setup::default());
    drop(log);
    rewrite(&segment_path(&chain, 4), |l| l[1] = l[1].replace("\"i\":5", "\"i\":55"));
    // Start-up does not read closed segments, so it opens (constant time) ...
    let mut log = open(&chain, &Setup::default());
    assert_eq!(log.append(&events(10, 10), 2000).unwrap(), 10);
    // ... and the full check names the damage.
    let p = check(&chain, None).problem.unwrap();
    assert_eq!(p, "audit-00000000000000000004.jsonl line 2: content does not match its hash (changed)");
}

#[test]
fn a_rewritten_closed_segment_with_a_consistent_chain_differs_from_its_checkpoint() {
    let (_d, chain, log) = segmented(6, 3, &Setup::default());
    drop(log);
    // Rechain segment 1 from scratch with other content: every line links, but the checkpoint
    // (and the next segment's link) tell.
    let dir2 = tempfile::tempdir().unwrap();
    let mut other = open(&dir2.path().join("audit"), &Setup::default());
    other.append(&(1..=3).map(|i| json!({"event": "forged", "i": i}).to_string()).collect::<Vec<_>>(), 0).unwrap();
    std::fs::copy(segment_path(&dir2.path().join("audit"), 1), segment_path(&chain, 1)).unwrap();
    let p = check(&chain, None).problem.unwrap();
    assert!(p.contains("audit-00000000000000000001.jsonl: differs from its checkpoint"), "{p}");
}

#[test]
fn a_forged_checkpoint_refuses_the_start_and_fails_the_check() {
    let (_d, chain, log) = segmented(6, 3, &Setup::default());
    drop(log);
    let cp_path = chain.join(CHECKPOINTS);
    // Re-sign the last checkpoint with a key the sidecar does not hold, under its kid.
    let text = std::fs::read_to_string(&cp_path).unwrap();
    let mut lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = lines.last_mut().unwrap();
    let mut head = last.clone();
    head.as_object_mut().unwrap().remove("jws");
    let forger = SigningKey::from_seed(Alg::ES256, Some("k1"), &[9u8; 32]).unwrap();
    last["jws"] = json!(TestSigner(forger).sign(head.to_string().as_bytes()).unwrap());
    std::fs::write(&cp_path, lines.iter().map(|l| l.to_string() + "\n").collect::<String>()).unwrap();
    let e = AuditLog::open(&chain, options(&Setup::default()), 0).unwrap_err();
    assert!(e.contains("checkpoint of audit-00000000000000000004.jsonl (kid k1): signature"), "{e}");
    let p = check(&chain, Some(&keys_of(&key("k1")))).problem.unwrap();
    assert!(p.contains("checkpoint of audit-00000000000000000004.jsonl: signature"), "{p}");
}

#[test]
fn retention_expires_old_segments_and_the_chain_verifies_from_the_checkpoint_before_them() {
    let s = Setup { retention: Retention { max_age_s: Some(100), ..Retention::default() }, ..Setup::default() };
    let (_d, chain, mut log) = segmented(9, 3, &s);
    // Closed at 1001, 1004, 1007; at 1105 the first two are over 100 s old.
    log.maintain(1105).unwrap();
    assert_eq!(segment_list(&chain), vec!["audit-00000000000000000007.jsonl", "audit-00000000000000000010.jsonl"]);
    let r = check(&chain, Some(&keys_of(&key("k1"))));
    assert_eq!((r.first, r.last, r.problem.clone()), (7, 10, None), "{r:?}");
    assert!(r.trusted_start.contains("events 1..=6 expired"), "{}", r.trusted_start);
    // Only the checkpoint before the oldest kept segment and later ones stay.
    let kept: Vec<u64> = std::fs::read_to_string(chain.join(CHECKPOINTS))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, vec![6, 9]);
    assert_eq!(log.status().first_kept, 7);
    // The expiry is on record in the chain (event 10).
    let last = query_newest(&chain, None, 1, 10, |_| true).unwrap().0;
    assert_eq!((last[0]["event"].as_str(), last[0]["through_seq"].as_u64()), (Some("audit.expired"), Some(6)));
    // It reopens from the open segment, and an expired event says so.
    drop(log);
    let mut log = open(&chain, &s);
    assert_eq!(log.append(&events(11, 11), 1200).unwrap(), 11);
    assert!(show_event(&chain, 2, None).unwrap_err().contains("not kept (the oldest kept event is 7)"));
}

#[test]
fn retention_by_age_waits_for_an_exporter_and_archives() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let hold = Arc::new(AtomicU64::new(2));
    let s = Setup {
        retention: Retention { max_age_s: Some(10), archive_dir: Some(archive.clone()), ..Retention::default() },
        hold: hold.clone(),
        ..Setup::default()
    };
    let (_d, chain, mut log) = segmented(9, 3, &s);
    // An exporter still needs event 2: nothing goes.
    log.maintain(2000).unwrap();
    assert_eq!(segment_list(&chain).len(), 4);
    hold.store(8, std::sync::atomic::Ordering::Release);
    log.maintain(2000).unwrap();
    assert_eq!(segment_list(&chain), vec!["audit-00000000000000000007.jsonl", "audit-00000000000000000010.jsonl"]);
    assert_eq!(segment_list(&archive), vec!["audit-00000000000000000001.jsonl", "audit-00000000000000000004.jsonl"]);
    assert_eq!(std::fs::read_to_string(archive.join(CHECKPOINTS)).unwrap().lines().count(), 1);
    assert_eq!(check(&chain, None).problem, None);
}

#[test]
fn retention_by_size_comes_before_an_exporter() {
    let hold = Arc::new(AtomicU64::new(1));
    let s = Setup { retention: Retention { max_bytes: Some(1), ..Retention::default() }, hold, ..Setup::default() };
    let (_d, chain, mut log) = segmented(9, 3, &s);
    log.maintain(2000).unwrap();
    // Over the size at each rotation: only the open segment is left, although the exporter was at 1.
    assert_eq!(segment_list(&chain).len(), 1);
    let last = query_newest(&chain, None, 1, 10, |_| true).unwrap().0;
    assert_eq!(last[0]["before_export"], true, "the expiry says it came before the export");
    assert_eq!(check(&chain, None).problem, None);
}

#[test]
fn deleting_the_oldest_segments_is_not_mistaken_for_retention() {
    let (_d, chain, log) = segmented(9, 3, &Setup::default());
    drop(log);
    std::fs::remove_file(segment_path(&chain, 1)).unwrap();
    let p = check(&chain, None).problem.unwrap();
    assert!(p.contains("events 1..=3 are not kept and no audit.expired event"), "{p}");
}

#[test]
fn deleting_the_newest_segments_is_caught_by_the_checkpoints_and_the_published_head() {
    let dir = tempfile::tempdir().unwrap();
    let anchors = dir.path().join("anchors.jsonl");
    let s = Setup { anchors: Some(anchors.clone()), ..Setup::default() };
    let chain = dir.path().join("audit");
    let mut log = open(&chain, &s);
    for start in [1, 4, 7] {
        log.append(&events(start, start + 2), 1000).unwrap();
        log.rotate(1000).unwrap();
    }
    log.append(&events(10, 11), 1000).unwrap();
    drop(log);
    std::fs::remove_file(segment_path(&chain, 10)).unwrap();
    std::fs::remove_file(segment_path(&chain, 7)).unwrap();
    let p = check(&chain, None).problem.unwrap();
    assert!(
        p.contains("the chain ends at event 6 but audit-00000000000000000007.jsonl was checkpointed up to event 9"),
        "{p}"
    );
    // At start-up the anchor file's last head (event 9's checkpoint, then the head at 8) is past the chain's end.
    let published = read_anchors(&anchors).unwrap().into_iter().max_by_key(|a| a.seq);
    let e = AuditLog::open(&chain, Options { published, ..options(&Setup::default()) }, 2000).unwrap_err();
    assert!(e.contains("segments were removed"), "{e}");
}

#[test]
fn a_checkpoint_signed_by_an_unknown_key_refuses_the_start() {
    let (_d, chain, log) = segmented(6, 3, &Setup::default());
    drop(log);
    let other = key("a-key-the-sidecar-never-had");
    let e = AuditLog::open(&chain, Options { trusted: Some(keys_of(&other)), ..options(&Setup::default()) }, 0)
        .unwrap_err();
    assert!(e.contains("checkpoint of audit-00000000000000000004.jsonl (kid k1)"), "{e}");
}

#[test]
fn a_checkpointed_last_segment_cut_short_refuses_the_start() {
    let (_d, chain, log) = segmented(6, 3, &Setup::default());
    drop(log);
    std::fs::remove_file(segment_path(&chain, 7)).unwrap();
    rewrite(&segment_path(&chain, 4), |l| {
        l.pop();
    });
    let e = AuditLog::open(&chain, options(&Setup::default()), 0).unwrap_err();
    assert!(e.contains("audit-00000000000000000004.jsonl: differs from its checkpoint"), "{e}");
}

#[derive(Debug)]
struct FlakySigner(std::sync::atomic::AtomicBool, TestSigner);

impl Signer for FlakySigner {
    fn sign(&self, payload: &[u8]) -> Result<String, String> {
        if self.0.load(std::sync::atomic::Ordering::Acquire) {
            return Err("the key file is unreadable".to_owned());
        }
        self.1.sign(payload)
    }
}

#[test]
fn a_segment_that_cannot_be_closed_takes_the_events_on_and_is_closed_once_later() {
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("audit");
    let flaky = Arc::new(FlakySigner(true.into(), TestSigner(key("k1"))));
    #[derive(Debug)]
    struct Shared(Arc<FlakySigner>);
    impl Signer for Shared {
        fn sign(&self, p: &[u8]) -> Result<String, String> {
            self.0.sign(p)
        }
    }
    let s = Setup { max_bytes: 1, ..Setup::default() };
    let mut log =
        AuditLog::open(&chain, Options { signer: Box::new(Shared(flaky.clone())), ..options(&s) }, 0).unwrap().0;
    log.append(&events(1, 1), 0).unwrap();
    // The segment is due to close at every append; it cannot, and the events still go in.
    for i in 2..=5 {
        assert_eq!(log.append(&events(i, i), i).unwrap(), i);
    }
    assert!(log.status().last_error.unwrap().contains("closing segment"));
    assert_eq!(segment_list(&chain).len(), 1);
    flaky.0.store(false, std::sync::atomic::Ordering::Release);
    log.append(&events(6, 6), 40).unwrap();
    assert_eq!(segment_list(&chain).len(), 2);
    assert_eq!(std::fs::read_to_string(chain.join(CHECKPOINTS)).unwrap().lines().count(), 1, "one checkpoint");
    assert_eq!(check(&chain, Some(&keys_of(&key("k1")))).problem, None);
}

#[test]
fn a_missing_middle_segment_is_named() {
    let (_d, chain, log) = segmented(9, 3, &Setup::default());
    drop(log);
    std::fs::remove_file(segment_path(&chain, 4)).unwrap();
    let p = check(&chain, None).problem.unwrap();
    assert!(p.contains("audit-00000000000000000007.jsonl: starts at event 7 where 4 was due"), "{p}");
}

#[test]
fn a_crash_between_checkpoint_and_new_segment_is_picked_up() {
    let (_d, chain, log) = segmented(6, 3, &Setup::default());
    drop(log);
    // The new (empty) segment was never created.
    std::fs::remove_file(segment_path(&chain, 7)).unwrap();
    let mut log = open(&chain, &Setup::default());
    assert_eq!(log.append(&events(7, 7), 2000).unwrap(), 7);
    assert!(segment_path(&chain, 7).exists());
    assert_eq!(check(&chain, None).problem, None);
}

#[test]
fn a_single_file_of_an_earlier_version_becomes_the_first_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, old) = chain(4);
    let legacy = dir.path().join("audit.jsonl");
    std::fs::copy(segment_path(&old, 1), &legacy).unwrap();
    let chain = dir.path().join("audit");
    let (mut log, notes) =
        AuditLog::open(&chain, Options { legacy_file: Some(legacy.clone()), ..options(&Setup::default()) }, 0).unwrap();
    assert!(notes[0].contains("moved to"), "{notes:?}");
    assert!(!legacy.exists());
    assert_eq!(log.append(&events(5, 5), 0).unwrap(), 5);
    assert_eq!(check(&chain, None).last, 5);
}

#[test]
fn an_event_is_shown_with_its_place_in_the_chain() {
    let (_d, chain, mut log) = segmented(6, 3, &Setup::default());
    log.append(&events(7, 8), 2000).unwrap();
    let p = show_event(&chain, 5, Some(&keys_of(&key("k1")))).unwrap();
    assert_eq!(p["event"]["seq"], 5);
    assert_eq!(p["previous"]["hash"], p["event"]["prev"]);
    assert_eq!(p["next"]["prev"], p["event"]["hash"]);
    assert_eq!(
        (p["segment"].as_str(), p["checkpoint"]["seq"].as_u64()),
        (Some("audit-00000000000000000004.jsonl"), Some(6))
    );
    assert_eq!(p["checkpoint_signature"], "checked");
    let open = show_event(&chain, 8, None).unwrap();
    assert!(open["checkpoint"].as_str().unwrap().contains("not checkpointed yet"));
    assert!(show_event(&chain, 9, None).unwrap_err().contains("not in the chain yet"));
}

#[test]
fn a_reader_follows_the_chain_across_segments_and_waits_at_the_head() {
    let (_d, chain, mut log) = segmented(7, 3, &Setup::default());
    let mut r = ChainReader::new(&chain, 2);
    let got: Vec<u64> = r.read(100, u64::MAX).unwrap().iter().map(|l| l.seq).collect();
    assert_eq!(got, (3..=7).collect::<Vec<_>>());
    assert!(r.read(100, u64::MAX).unwrap().is_empty());
    // A partial line (an append in progress) is not returned until it is complete.
    log.append(&events(8, 9), 2000).unwrap();
    let open_seg = segment_path(&chain, 8);
    let mut f = std::fs::OpenOptions::new().append(true).open(&open_seg).unwrap();
    std::io::Write::write_all(&mut f, br#"{"seq":10,"pr"#).unwrap();
    let lines = r.read(100, u64::MAX).unwrap();
    assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![8, 9]);
    assert_eq!(lines[0].event, events(8, 8)[0]);
    // The fast path takes a line apart as serde would.
    let text = std::fs::read_to_string(&open_seg).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["hash"].as_str(), first["prev"].as_str()),
        (Some(lines[0].hash.as_str()), Some(lines[0].prev.as_str()))
    );
    r.rewind(7);
    assert_eq!(r.read(1, u64::MAX).unwrap()[0].seq, 8);
    // Nothing past the synced head is read.
    r.rewind(7);
    assert_eq!(r.read(100, 8).unwrap().iter().map(|l| l.seq).collect::<Vec<_>>(), vec![8]);
}

#[test]
fn queries_return_the_newest_first_in_pages_across_segments() {
    let (_d, chain, _log) = segmented(300, 70, &Setup::default());
    let (page, next) = query_newest(&chain, None, 100, usize::MAX, |_| true).unwrap();
    assert_eq!((page[0]["i"].as_u64(), page[99]["i"].as_u64(), next), (Some(300), Some(201), Some(201)));
    let (page, next) = query_newest(&chain, next, 250, usize::MAX, |e| e["i"].as_u64().unwrap() % 2 == 0).unwrap();
    assert_eq!((page.len(), page[0]["i"].as_u64(), next), (100, Some(200), None));
    // A filter that matches nothing stops after `max_scan` events with where to go on.
    let (page, next) = query_newest(&chain, None, 10, 50, |_| false).unwrap();
    assert_eq!((page.len(), next), (0, Some(251)));
}
