//! jitgate-token's integration tests, one binary: the verifier end to end, DPoP proofs, and the
//! Project Wycheproof vectors (data in `tests/vectors`, loader in `tests/support`, which other
//! crates' tests include too).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod dpop;
mod verify;
mod wycheproof;
