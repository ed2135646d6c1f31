//! Signature checks handed to the runtime's verifier: the engine's host calls as JS arrays,
//! and the runtime's answers as the host's verdicts for the decision that follows.

use crate::host::EdgeHost;
use jitgate_engine::prefetch::{record_jobs, SignatureJob};
use jitgate_token::alg::P256_SPKI_PREFIX;
use jitgate_token::Alg;
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsError, JsValue};

/// A job as the runtime's verifiers take it: `[alg, spki, signature, data]`, ECDSA signatures
/// back in the raw r||s form (a plain array: cheaper to build than an object).
pub fn to_js(job: &SignatureJob) -> Result<JsValue, JsError> {
    let alg = match job.hash.as_str() {
        "sha256" if job.public_key.starts_with(&P256_SPKI_PREFIX) => Alg::ES256,
        "sha256" => Alg::RS256,
        "rsa-pss-sha256" => Alg::PS256,
        "ed25519" => Alg::EdDSA,
        _ => return Err(JsError::new("signature job of a scheme the engine never produces")),
    };
    let signature = if alg == Alg::ES256 {
        p256::ecdsa::Signature::from_der(&job.signature)
            .map_err(|_| JsError::new("ECDSA signature in a form the engine never produces"))?
            .to_bytes()
            .to_vec()
    } else {
        job.signature.clone()
    };
    let bytes = |b: &[u8]| JsValue::from(Uint8Array::from(b));
    let alg = JsValue::from_str(alg.name());
    Ok(Array::of4(&alg, &bytes(&job.public_key), &bytes(&signature), &bytes(&job.text)).into())
}

pub fn list_to_js(jobs: &[SignatureJob]) -> Result<Array, JsError> {
    jobs.iter().map(to_js).collect()
}

/// The runtime verifier's answers to `jobs`, in order: 1 valid, 0 invalid, anything else (the runtime could
/// not check it) leaves that signature to the engine's Rust code. Answers for another list of jobs
/// (a count that differs: the token got cached in between) are dropped: Rust checks then.
pub fn answers(jobs: Vec<SignatureJob>, codes: &[u8]) -> Vec<(SignatureJob, bool)> {
    if jobs.len() != codes.len() {
        return Vec::new();
    }
    jobs.into_iter().zip(codes).filter(|(_, c)| **c <= 1).map(|(job, c)| (job, *c == 1)).collect()
}

/// The runtime verifier's answers to the engine's self-test jobs.
pub fn self_test_answers(codes: &[u8]) -> Vec<(SignatureJob, bool)> {
    answers(jitgate_engine::prefetch::self_test_jobs(&EdgeHost::default()), codes)
}

/// One signature under a JWK both ways (for the Wycheproof parity test): `{rust, job}` where
/// `rust` is the Rust verdict and `job` the job the engine would hand out, `false`
/// when the engine refuses the signature before any crypto, `null` when the algorithm stays in
/// Rust (HS256).
pub fn parity(jwk_json: &str, message: &[u8], signature: &[u8]) -> Result<JsValue, JsError> {
    let o = Object::new();
    let set = |k: &str, v: &JsValue| Reflect::set(&o, &JsValue::from_str(k), v).map(|_| ());
    let Ok(jwk) = jitgate_token::Jwk::from_json(jwk_json.as_bytes()) else {
        set("key", &JsValue::FALSE).map_err(|_| JsError::new("cannot build the answer"))?;
        return Ok(o.into());
    };
    let rust = jwk.key.verify(message, signature).is_ok();
    let recorded = record_jobs(&EdgeHost::default(), false, |v| {
        let _ = jwk.verify_with(message, signature, Some(v));
    });
    let job = match recorded.first() {
        Some(job) => to_js(job)?,
        None if jwk.spki_der.is_some() => JsValue::FALSE,
        None => JsValue::NULL,
    };
    set("rust", &JsValue::from_bool(rust))
        .and_then(|()| set("job", &job))
        .map_err(|_| JsError::new("cannot build the answer"))?;
    Ok(o.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(text: &[u8]) -> SignatureJob {
        SignatureJob { hash: "sha256".into(), public_key: vec![1], signature: vec![2], text: text.to_vec() }
    }

    #[test]
    fn answers_pair_with_their_jobs_or_are_dropped() {
        let got = answers(vec![job(b"a"), job(b"b"), job(b"c")], &[1, 0, 2]);
        assert_eq!(got, vec![(job(b"a"), true), (job(b"b"), false)], "2: left to Rust");
        assert!(answers(vec![job(b"a")], &[1, 1]).is_empty(), "answers for another list of jobs");
        assert!(answers(vec![job(b"a"), job(b"b")], &[1]).is_empty());
    }
}
