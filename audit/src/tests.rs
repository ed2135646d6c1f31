//! The chain's tests: what each kind of tampering looks like in the report.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::*;
use crate::files::DurableAppend;
use serde_json::json;
use std::path::{Path, PathBuf};

fn chain(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (mut log, _) = AuditLog::open(&path).unwrap();
    let events: Vec<_> = (1..=n).map(|i| json!({"event": "grant.requested", "i": i}).to_string()).collect();
    log.append(&events, 0).unwrap();
    (dir, path)
}

fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(String::from).collect();
    f(&mut lines);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn an_intact_chain_verifies_and_reopens_where_it_ended() {
    let (_d, path) = chain(5);
    let r = verify(&path).unwrap();
    assert_eq!((r.lines, r.problem), (5, None));
    let (mut log, _) = AuditLog::open(&path).unwrap();
    assert_eq!(log.append(&[json!({"event": "x"}).to_string()], 0).unwrap(), 6);
    assert_eq!(verify(&path).unwrap().problem, None);
}

#[test]
fn a_changed_line_is_named() {
    let (_d, path) = chain(5);
    rewrite(&path, |l| l[2] = l[2].replace("\"i\":3", "\"i\":33"));
    assert_eq!(verify(&path).unwrap().problem.unwrap(), "line 3: content does not match its hash (changed)");
}

#[test]
fn a_removed_line_is_named() {
    let (_d, path) = chain(5);
    rewrite(&path, |l| {
        l.remove(1);
    });
    let p = verify(&path).unwrap().problem.unwrap();
    assert!(p.starts_with("line 2: seq 3 where 2 was due: 1 line(s) removed"), "{p}");
    let (_d, path) = chain(5);
    rewrite(&path, |l| {
        l.pop();
    });
    // Removing the tail cannot be seen from the file alone; the head hash (reported) can.
    assert_eq!(verify(&path).unwrap().lines, 4);
}

#[test]
fn reordered_lines_are_named() {
    let (_d, path) = chain(5);
    rewrite(&path, |l| l.swap(1, 2));
    let p = verify(&path).unwrap().problem.unwrap();
    assert!(p.starts_with("line 2: seq 3 where 2 was due"), "{p}");
}

#[test]
fn a_removed_tail_is_caught_by_a_published_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let anchors_path = dir.path().join("anchors.jsonl");
    let (mut log, _) = AuditLog::open(&path).unwrap();
    log.anchor_to(Anchoring { file: DurableAppend::open(&anchors_path).unwrap(), every: 4, log_as: "test" });
    let events: Vec<_> = (1..=10).map(|i| json!({"event": "grant.requested", "i": i}).to_string()).collect();
    log.append(&events, 7).unwrap();
    let anchors = read_anchors(&anchors_path).unwrap();
    assert_eq!(anchors.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![4, 8]);
    assert_eq!(verify_anchored(&path, &anchors).unwrap().problem, None);
    rewrite(&path, |l| l.truncate(6));
    assert_eq!(verify(&path).unwrap().problem, None, "the file alone cannot tell");
    let p = verify_anchored(&path, &anchors).unwrap().problem.unwrap();
    assert!(p.contains("ends at event 6") && p.contains("published at event 8"), "{p}");
}

#[test]
fn a_torn_last_line_is_truncated_and_the_chain_goes_on() {
    let (_d, path) = chain(3);
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, br#"{"seq":4,"prev":"ab"#).unwrap();
    let (mut log, torn) = AuditLog::open(&path).unwrap();
    assert!(torn.is_some());
    assert_eq!(log.append(&[json!({"event": "x"}).to_string()], 0).unwrap(), 4);
    assert_eq!(verify(&path).unwrap().problem, None);
}

#[test]
fn queries_return_the_newest_first_in_pages() {
    let (_d, path) = chain(300);
    let (page, next) = query_newest(&path, None, 100, |_| true).unwrap();
    assert_eq!((page[0]["i"].as_u64(), page[99]["i"].as_u64(), next), (Some(300), Some(201), Some(201)));
    let (page, next) = query_newest(&path, next, 250, |e| e["i"].as_u64().unwrap() % 2 == 0).unwrap();
    assert_eq!((page.len(), page[0]["i"].as_u64(), next), (100, Some(200), None));
}

#[test]
fn a_broken_chain_is_not_extended() {
    let (_d, path) = chain(3);
    rewrite(&path, |l| l[0] = l[0].replace("\"i\":1", "\"i\":9"));
    assert!(AuditLog::open(&path).unwrap_err().contains("line 1"));
}
