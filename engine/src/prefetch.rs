//! The signatures a request's decision will ask the host to verify, found without side effects,
//! so a host whose crypto is asynchronous (WebCrypto at the JavaScript edge) can verify them first
//! and answer `verify_signature` from its results.

use crate::request::{credential, Header, Request, SingleHeader};
use crate::Engine;
use jitgate_token::alg::HostVerifier;
use jitgate_token::dpop;
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

/// Takes down every call and answers "no" so the caller stops there (no wasm fallback runs).
#[derive(Debug, Default)]
struct Recorder(RefCell<Vec<SignatureJob>>);

impl Recorder {
    fn into_jobs(self) -> Vec<SignatureJob> {
        self.0.into_inner()
    }

    fn take(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) {
        let job = SignatureJob {
            hash: hash.to_owned(),
            public_key: public_key.to_vec(),
            signature: signature.to_vec(),
            text: text.to_vec(),
        };
        self.0.borrow_mut().push(job);
    }
}

impl HostVerifier for Recorder {
    fn verify(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        self.take(hash, public_key, signature, text);
        Some(false)
    }
}

/// The self-test's calls: answering "yes" lets `host_self_test` make both.
struct SelfTestRecorder(Recorder);

impl HostVerifier for SelfTestRecorder {
    fn verify(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        self.0.take(hash, public_key, signature, text);
        Some(true)
    }
}

/// The calls `Engine::start` makes to test the host's `verify_signature`.
pub fn self_test_jobs() -> Vec<SignatureJob> {
    let recorder = SelfTestRecorder(Recorder::default());
    jitgate_token::alg::host_self_test(&recorder);
    recorder.0.into_jobs()
}

impl Engine {
    /// The host verifications deciding these headers will ask for: the access token's signature
    /// (unless cached) and the DPoP proof's. Empty when signatures are not the host's.
    pub fn signature_jobs<'h>(&self, headers: impl IntoIterator<Item = Header<'h>>, now_s: u64) -> Vec<SignatureJob> {
        if !self.host_crypto {
            return Vec::new();
        }
        let req = Request::from_headers(headers, None);
        let recorder = Recorder::default();
        if let SingleHeader::One(value) = req.authorization {
            if let Ok((_, token)) = credential(value, self.config.max_token_bytes) {
                let cached = self.cache.borrow().holds(token, now_s);
                if let (false, Some((verifier, _))) = (cached, self.state.verifier()) {
                    let _ = verifier.check_signature(token, Some(&recorder));
                }
            }
        }
        if let SingleHeader::One(proof) = req.dpop {
            let _ = dpop::verify_proof(proof, Some(&recorder));
        }
        recorder.into_jobs()
    }
}
