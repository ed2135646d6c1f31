//! The runtime verifier's answers to signature jobs, looked up when the engine's decision calls
//! `verify_signature`; a leaf that the host and the job conversions both read.

use jitgate_engine::prefetch::SignatureJob;
use jitgate_token::Alg;

/// What the runtime is asked to verify: every asymmetric algorithm (where its crypto lacks one,
/// the job comes back unchecked and Rust decides).
pub fn runtime_verifies(alg: Alg) -> bool {
    !alg.is_symmetric()
}

/// The runtime's verdicts for a decision: `verify_signature` answers from them, and only for
/// exactly the bytes they were given for (`None`: not checked, Rust decides).
#[derive(Debug, Default)]
pub struct Verdicts(pub Vec<(SignatureJob, bool)>);

impl Verdicts {
    pub fn lookup(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        let found = self
            .0
            .iter()
            .find(|(j, _)| j.hash == hash && j.public_key == public_key && j.signature == signature && j.text == text);
        found.map(|(_, ok)| *ok)
    }
}

impl jitgate_token::alg::HostVerifier for Verdicts {
    fn verify(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        self.lookup(hash, public_key, signature, text)
    }

    fn handles(&self, alg: Alg) -> bool {
        runtime_verifies(alg)
    }
}
