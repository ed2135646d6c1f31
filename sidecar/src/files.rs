//! File plumbing for the store journal, the replay ledger and the key files. The durable-append
//! pieces are the audit chain's (jitgate-audit), shared rather than copied.

pub use jitgate_audit::files::{at, recover_torn_tail, DurableAppend};
use std::fs::File;
use std::path::Path;

/// Makes a rename in `path`'s directory durable.
pub fn sync_dir(path: &Path) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}
