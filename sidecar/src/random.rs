//! Random identifiers.

/// Random bytes as lowercase hex: ids and `jti`s.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    jitgate_token::encoding::hex(&b)
}
