//! The signed-in user's identity token, kept in the user's config directory (0600).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

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
    write_private_in(&dir()?, name, bytes)
}

/// `write_private` in `d`, through `<name>.<pid>.tmp` (two commands at once never share one).
/// The temporary file is always made new (`O_CREAT | O_EXCL`, mode 0600): a leftover or planted
/// one is removed first, never reused with its looser mode or written through if it is a
/// symbolic link; and the rename replaces a link, never its target.
fn write_private_in(d: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dirs, 0o700);
    dirs.create(d).map_err(|e| format!("{}: {e}", d.display()))?;
    let p = d.join(name);
    let tmp = temporary(d, name);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", tmp.display())),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}

fn temporary(d: &Path, name: &str) -> PathBuf {
    d.join(format!("{name}.{}.tmp", std::process::id()))
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn a_leftover_temporary_file_does_not_lend_its_mode() {
        let d = tempfile::tempdir().unwrap();
        let tmp = temporary(d.path(), "credentials.json");
        std::fs::write(&tmp, b"old").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = write_private_in(d.path(), "credentials.json", b"new").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(!tmp.exists());
    }

    #[test]
    fn a_planted_link_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = d.path().join("elsewhere");
        std::fs::write(&elsewhere, b"untouched").unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = d.path().join("jitgate");
        std::fs::create_dir(&config).unwrap();
        std::os::unix::fs::symlink(&elsewhere, temporary(&config, "credentials.json")).unwrap();
        let p = write_private_in(&config, "credentials.json", b"secret").unwrap();
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"untouched", "the link's target is left alone");
        assert_eq!(std::fs::metadata(&elsewhere).unwrap().mode() & 0o777, 0o644);
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.file_type().is_file() && m.mode() & 0o777 == 0o600, "a regular 0600 file, not the link");
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
    }
}
