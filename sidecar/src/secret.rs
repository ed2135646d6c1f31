//! Secret files: read (caller secrets, webhook keys, the deployment's nonce and sign-in keys) and
//! written readable by their owner only.

use crate::files::at;
use std::path::Path;

/// Smallest caller secret, in bytes once decoded (HMAC-SHA256 keys of at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;
const MAX_SECRET_FILE_BYTES: usize = 4096;

/// Reads a secret file: base64url (unpadded, one line), at least 32 bytes once decoded.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(at(path))?;
    if text.len() > MAX_SECRET_FILE_BYTES {
        return Err(format!("{}: larger than {MAX_SECRET_FILE_BYTES} bytes", path.display()));
    }
    let secret = jitgate_token::encoding::b64_decode(text.trim().as_bytes())
        .map_err(|_| format!("{}: not unpadded base64url", path.display()))?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!("{}: a secret needs at least {MIN_SECRET_BYTES} bytes", path.display()));
    }
    Ok(secret)
}

/// A 32-byte secret kept base64url in a 0600 file, created on first use (the DPoP nonce key the
/// filters of one deployment share; replicas share it through `keys_dir`).
pub fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, String> {
    if !path.exists() {
        let mut secret = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
        write_private(path, jitgate_token::encoding::b64_encode(&secret).as_bytes())?;
    }
    read_secret(path)
}

/// Writes a secret file readable by its owner only, atomically (temp file, then rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let io = at(path);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
