//! One line of the chain and the hash that links it to the line before.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Serialize, Deserialize)]
pub(crate) struct Line<'a> {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
    #[serde(borrow)]
    pub event: &'a RawValue,
}

pub(crate) fn link_hash(prev: &str, seq: u64, event: &str) -> String {
    let digest = Sha256::new()
        .chain_update(prev.as_bytes())
        .chain_update(b"\n")
        .chain_update(seq.to_string().as_bytes())
        .chain_update(b"\n")
        .chain_update(event.as_bytes())
        .finalize();
    jitgate_token::encoding::hex(&digest)
}
