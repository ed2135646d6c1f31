//! The signatures a request's decision will ask the host to verify, found without side effects,
//! so a host whose crypto is asynchronous (WebCrypto at the JavaScript edge) can verify them first
//! and answer `verify_signature` from its results.

use crate::engine::Engine;
use crate::host::Host;
use crate::request::{credential, Header, Request, SingleHeader};
use jitgate_token::alg::HostVerifier;
use jitgate_token::dpop;
use jitgate_token::Alg;
use std::cell::RefCell;

/// One `verify_signature` call the decision will make, with the same arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureJob {
    pub hash: String,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// As the host receives it (ECDSA: DER).
    pub signature: Vec<u8>,
    pub text: Vec<u8>,
}

impl SignatureJob {
    pub fn new(hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> SignatureJob {
        SignatureJob {
            hash: hash.to_owned(),
            public_key: public_key.to_vec(),
            signature: signature.to_vec(),
            text: text.to_vec(),
        }
    }
}

/// Takes down every call for the algorithms `host` verifies, answering `answer`: "no" stops a
/// verification there (no Rust fallback runs), "yes" lets the self-test make both its calls.
struct Recorder<'h, H: Host> {
    host: &'h H,
    answer: bool,
    jobs: RefCell<Vec<SignatureJob>>,
}

impl<'h, H: Host> Recorder<'h, H> {
    fn new(host: &'h H, answer: bool) -> Self {
        Recorder { host, answer, jobs: RefCell::new(Vec::new()) }
    }
}

impl<H: Host> HostVerifier for Recorder<'_, H> {
    fn verify(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        self.jobs.borrow_mut().push(SignatureJob::new(hash, public_key, signature, text));
        Some(self.answer)
    }

    fn handles(&self, alg: Alg) -> bool {
        self.host.verifies(alg)
    }
}

/// The host calls `verify` makes through a verifier that stands for `host` and answers `answer`
/// to each.
pub fn record_jobs(host: &impl Host, answer: bool, verify: impl FnOnce(&dyn HostVerifier)) -> Vec<SignatureJob> {
    let recorder = Recorder::new(host, answer);
    verify(&recorder);
    recorder.jobs.into_inner()
}

/// The calls `Engine::start` makes to test `host`'s `verify_signature`.
pub fn self_test_jobs(host: &impl Host) -> Vec<SignatureJob> {
    record_jobs(host, true, |v| {
        jitgate_token::alg::host_self_test(v);
    })
}

impl Engine {
    /// The verifications deciding these headers will ask `host` for: the access token's
    /// signature (unless cached) and the DPoP proof's. Empty when signatures are not the host's.
    pub fn signature_jobs<'h>(
        &self,
        host: &impl Host,
        headers: impl IntoIterator<Item = Header<'h>>,
        now_s: u64,
    ) -> Vec<SignatureJob> {
        if !self.host_crypto {
            return Vec::new();
        }
        let req = Request::from_headers(headers, None);
        record_jobs(host, false, |recorder| {
            if let SingleHeader::One(value) = req.authorization {
                if let Ok((_, token)) = credential(value, self.config.max_token_bytes) {
                    let cached = self.cache.borrow().holds(token, now_s);
                    if let (false, Some((verifier, _))) = (cached, self.state.verifier()) {
                        let _ = verifier.check_signature(token, Some(recorder));
                    }
                }
            }
            if let SingleHeader::One(proof) = req.dpop {
                let _ = dpop::verify_proof(proof, Some(recorder));
            }
        })
    }
}
