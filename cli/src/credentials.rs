//! The signed-in user's identity token, kept in the user's config directory (0600).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Serialize, Deserialize)]
pub struct Credentials {
    pub sidecar: String,
    pub id_token: String,
    pub expires_at: u64,
}

/// `$JITGATE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/jitgate`, else `~/.config/jitgate`.
pub fn dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("JITGATE_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(d).join("jitgate"));
    }
    let home = std::env::var_os("HOME").ok_or("no HOME: set JITGATE_CONFIG_DIR")?;
    Ok(PathBuf::from(home).join(".config").join("jitgate"))
}

pub fn load() -> Result<Credentials, String> {
    let p = dir()?.join("credentials.json");
    let text = std::fs::read_to_string(&p).map_err(|_| "not signed in: run `jitgate login`".to_owned())?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}; run `jitgate login` again", p.display()))
}

/// Writes the credentials readable by the user alone.
pub fn save(c: &Credentials) -> Result<PathBuf, String> {
    write_private("credentials.json", &serde_json::to_vec_pretty(c).map_err(|e| e.to_string())?)
}

/// Writes `name` in the config directory, created 0600 (never widened), replaced atomically.
pub fn write_private(name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let d = dir()?;
    std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    let p = d.join(name);
    let tmp = d.join(format!("{name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}
