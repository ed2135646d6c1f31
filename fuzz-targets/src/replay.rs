//! Every committed corpus input, and fixed mutations of each, through its target: what a fuzz
//! run found once stays found, without a nightly toolchain or sanitizers.
use crate::{Target, TARGETS};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Mutants per corpus input, and inputs made from nothing for targets whose corpus is thin.
const MUTANTS: u64 = 4;
const GENERATED: u64 = 64;

/// A fixed xorshift: the same inputs on every run, so a failure names an input that reproduces.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn fill(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// One byte changed, the input cut short, or a run of it repeated: the mutations that find the
/// bounds and length bugs of parsers.
fn mutate(input: &[u8], seed: u64) -> Vec<u8> {
    let mut rng = Bytes(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = input.to_vec();
    match seed % 3 {
        0 if !out.is_empty() => {
            let at = rng.below(out.len());
            out[at] ^= (rng.next() as u8) | 1;
        }
        1 => out.truncate(rng.below(input.len() + 1)),
        _ => {
            let from = rng.below(input.len() + 1);
            let to = (from + 1 + rng.below(32)).min(input.len());
            let chunk = input[from..to].to_vec();
            out.splice(from..from, chunk);
        }
    }
    out
}

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs `input`; a panic is returned as the failure it is, naming the input.
fn run(target: &str, body: Target, what: &str, input: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| body(input))).err().map(|e| {
        let message = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        format!("{target}: {what} ({} bytes): {message}", input.len())
    })
}

#[test]
fn every_target_has_its_cargo_fuzz_bin() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        assert!(manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")), "{name} is not a cargo fuzz bin");
    }
    assert_eq!(manifest.matches("[[bin]]").count(), TARGETS.len(), "a cargo fuzz bin is missing from TARGETS");
}

#[test]
fn corpora_and_their_mutations_pass_every_target() {
    let mut failures = Vec::new();
    let mut runs = 0;
    for (target, body) in TARGETS {
        let files = corpus(target);
        for file in &files {
            let input = std::fs::read(file).unwrap();
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            failures.extend(run(target, *body, &format!("corpus {name}"), &input));
            for m in 0..MUTANTS {
                failures.extend(run(target, *body, &format!("corpus {name} mutant {m}"), &mutate(&input, m)));
            }
            runs += 1 + MUTANTS;
        }
        let mut rng = Bytes(0x006a_6974_6761_7465 ^ target.len() as u64);
        for g in 0..GENERATED {
            let len = rng.below(if g % 2 == 0 { 64 } else { 2048 });
            failures.extend(run(target, *body, &format!("generated {g}"), &rng.fill(len)));
        }
        runs += GENERATED;
    }
    assert!(failures.is_empty(), "{} of {runs} inputs failed:\n{}", failures.len(), failures.join("\n"));
    // The replay is only worth something if the corpora are there.
    assert!(runs > 2_000, "only {runs} inputs replayed: are the corpora in fuzz/corpus/?");
}

#[test]
fn a_failing_target_is_reported_with_its_input() {
    fn fails_on_x(data: &[u8]) {
        assert!(!data.contains(&b'x'), "found an x");
    }
    assert_eq!(run("probe", fails_on_x, "generated 1", b"abc"), None);
    let failure = run("probe", fails_on_x, "generated 2", b"axc").unwrap();
    assert!(failure.contains("probe: generated 2 (3 bytes): found an x"), "{failure}");
}
