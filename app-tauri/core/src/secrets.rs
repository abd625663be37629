//! The device's login, encrypted at rest.
//!
//! The session token is sealed with ChaCha20-Poly1305 under a random 256-bit device key. The key
//! lives in its own file readable only by the user (mode 0600 on Unix), apart from the sealed
//! session, so the token never sits in plain text in the app's data, its backups or its logs.
//! A tampered or foreign sealed file does not open and is reported, never half-read.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

const KEY_FILE: &str = "device.key";
const SEALED_FILE: &str = "session.sealed";
const AAD: &[u8] = b"fsm-session-v1";

/// Why the sealed store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret store i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the saved login cannot be opened (wrong key or damaged file)")]
    Unreadable,
}

/// Sealed storage for one small secret in a directory.
#[derive(Debug, Clone)]
pub struct SecretStore {
    dir: PathBuf,
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

impl SecretStore {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    fn key(&self, create: bool) -> Result<Option<[u8; 32]>, SecretError> {
        let path = self.dir.join(KEY_FILE);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b.try_into().map_err(|_| SecretError::Unreadable)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut k = [0u8; 32];
                rand::rng().fill_bytes(&mut k);
                fs::create_dir_all(&self.dir)?;
                write_private(&path, &k)?;
                Ok(Some(k))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Seals and saves `secret`, replacing what was there.
    pub fn save(&self, secret: &[u8]) -> Result<(), SecretError> {
        let key = self.key(true)?.ok_or(SecretError::Unreadable)?;
        let cipher = ChaCha20Poly1305::new(&Key::from(key));
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                chacha20poly1305::aead::Payload {
                    msg: secret,
                    aad: AAD,
                },
            )
            .map_err(|_| SecretError::Unreadable)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        write_private(&self.dir.join(SEALED_FILE), &out)?;
        Ok(())
    }

    /// The saved secret, if any.
    pub fn load(&self) -> Result<Option<Vec<u8>>, SecretError> {
        let sealed = match fs::read(self.dir.join(SEALED_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let key = self.key(false)?.ok_or(SecretError::Unreadable)?;
        if sealed.len() < 12 {
            return Err(SecretError::Unreadable);
        }
        let (nonce, body) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SecretError::Unreadable)?;
        let cipher = ChaCha20Poly1305::new(&Key::from(key));
        cipher
            .decrypt(
                &Nonce::from(nonce),
                chacha20poly1305::aead::Payload {
                    msg: body,
                    aad: AAD,
                },
            )
            .map(Some)
            .map_err(|_| SecretError::Unreadable)
    }

    /// Forgets the saved secret (logout).
    pub fn clear(&self) -> Result<(), SecretError> {
        match fs::remove_file(self.dir.join(SEALED_FILE)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secret_round_trips_and_is_not_plain_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SecretStore::new(dir.path());
        assert_eq!(s.load().expect("load"), None);
        s.save(b"eyJ.secret-token.sig").expect("save");
        assert_eq!(
            s.load().expect("load").as_deref(),
            Some(&b"eyJ.secret-token.sig"[..])
        );
        for entry in fs::read_dir(dir.path()).expect("dir") {
            let bytes = fs::read(entry.expect("entry").path()).expect("read");
            assert!(!bytes.windows(12).any(|w| w == b"secret-token"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
        }
        s.clear().expect("clear");
        assert_eq!(s.load().expect("load"), None);
    }

    #[test]
    fn tampered_or_foreign_sealed_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SecretStore::new(dir.path());
        s.save(b"token").expect("save");
        let path = dir.path().join(SEALED_FILE);
        let mut b = fs::read(&path).expect("read");
        let last = b.len() - 1;
        b[last] ^= 1;
        fs::write(&path, &b).expect("write");
        assert!(matches!(s.load(), Err(SecretError::Unreadable)));
        // A sealed file from another device's key does not open either.
        s.save(b"token").expect("save");
        fs::remove_file(dir.path().join(KEY_FILE)).expect("rm");
        assert!(matches!(s.load(), Err(SecretError::Unreadable)));
    }
}
