//! Photos and signatures from the field, kept by content: `PUT /api/v1/photos/{sha256}` stores the
//! bytes when they hash to the name, so an upload retried after a lost answer is harmless and a
//! corrupted one is refused. Job documents refer to photos by the same SHA-256.
//!
//! Files live under the server's data folder (`photos/ab/abcdef…`), written to a temporary file,
//! flushed and renamed, so a crash never leaves a partial photo under its final name.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Largest photo accepted (a phone camera JPEG is a few MB).
pub const MAX_PHOTO: usize = 20 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    #[error("`{0}` is not a SHA-256 in lowercase hex")]
    BadName(String),
    #[error("the bytes hash to {actual}, not to the name {expected}")]
    Mismatch { expected: String, actual: String },
    #[error("an empty photo")]
    Empty,
    #[error("photo storage: {0}")]
    Io(#[from] std::io::Error),
}

/// What one device may upload in a day: a long day of installs is a few hundred photos.
pub const DAILY_BYTES_PER_DEVICE: usize = 2 * 1024 * 1024 * 1024;

/// The content-addressed photo folder.
#[derive(Debug)]
pub struct PhotoStore {
    dir: PathBuf,
    /// Bytes uploaded per device on the current day (Unix day number), in this process.
    uploaded: std::sync::Mutex<std::collections::HashMap<shared::ids::DeviceId, (i64, usize)>>,
}

/// Whether `put` stored new bytes or already had them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    AlreadyThere,
}

impl PhotoStore {
    pub fn open(dir: &Path) -> Result<Self, PhotoError> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            uploaded: Default::default(),
        })
    }

    /// Counts an upload of `bytes` by `device` at `now_s`; `false` (nothing counted) past its
    /// daily allowance.
    pub fn allow(&self, device: shared::ids::DeviceId, bytes: usize, now_s: i64) -> bool {
        let day = now_s.div_euclid(86_400);
        let Ok(mut m) = self.uploaded.lock() else {
            return false;
        };
        if m.len() > 10_000 {
            m.retain(|_, (d, _)| *d == day);
        }
        let used = m.entry(device).or_insert((day, 0));
        if used.0 != day {
            *used = (day, 0);
        }
        if used.1.saturating_add(bytes) > DAILY_BYTES_PER_DEVICE {
            return false;
        }
        used.1 += bytes;
        true
    }

    /// Checks a photo's name (a SHA-256 in lowercase hex).
    pub fn check_name(&self, sha: &str) -> Result<(), PhotoError> {
        self.path(sha).map(drop)
    }

    fn path(&self, sha: &str) -> Result<PathBuf, PhotoError> {
        let valid = sha.len() == 64
            && sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(PhotoError::BadName(sha.chars().take(80).collect()));
        }
        Ok(self.dir.join(&sha[..2]).join(sha))
    }

    /// Stores `bytes` under `sha` after checking they hash to it.
    pub fn put(&self, sha: &str, bytes: &[u8]) -> Result<Stored, PhotoError> {
        let path = self.path(sha)?;
        if bytes.is_empty() {
            return Err(PhotoError::Empty);
        }
        let actual = hex(&Sha256::digest(bytes));
        if actual != sha {
            return Err(PhotoError::Mismatch {
                expected: sha.to_owned(),
                actual,
            });
        }
        if path.exists() {
            return Ok(Stored::AlreadyThere);
        }
        let folder = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(folder)?;
        let tmp = folder.join(format!("{sha}.part"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(Stored::New)
    }

    /// The photo's bytes, if stored.
    pub fn get(&self, sha: &str) -> Result<Option<Vec<u8>>, PhotoError> {
        match std::fs::read(self.path(sha)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photos_are_kept_by_their_hash_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = PhotoStore::open(dir.path()).unwrap();
        let bytes = b"\xff\xd8\xff\xe0 a small jpeg";
        let sha = hex(&Sha256::digest(bytes));
        assert_eq!(store.get(&sha).unwrap(), None);
        assert_eq!(store.put(&sha, bytes).unwrap(), Stored::New);
        assert_eq!(store.put(&sha, bytes).unwrap(), Stored::AlreadyThere);
        assert_eq!(store.get(&sha).unwrap().as_deref(), Some(&bytes[..]));

        let other = hex(&Sha256::digest(b"other"));
        assert!(matches!(
            store.put(&other, bytes),
            Err(PhotoError::Mismatch { .. })
        ));
        assert_eq!(store.get(&other).unwrap(), None, "nothing written");
        assert!(matches!(
            store.put("../../etc/passwd", bytes),
            Err(PhotoError::BadName(_))
        ));
        assert!(matches!(
            store.put(&sha.to_uppercase(), bytes),
            Err(PhotoError::BadName(_))
        ));
        assert!(matches!(store.put(&sha, b""), Err(PhotoError::Empty)));
    }
}
