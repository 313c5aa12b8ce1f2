//! The session cookie's value: a random token and a key id, HMAC-signed.
//!
//! Format: `KID.TOKEN.MAC`, each part base64url without padding. `KID` names
//! the key (8 hex digits derived from it), `TOKEN` is 32 random bytes, `MAC`
//! is HMAC-SHA256 over a domain tag, the key id and the token. A value that
//! does not verify under the named key is no cookie at all; verifying needs
//! no I/O. New cookies are signed with the current key; previous keys keep
//! verifying until their cookies' sessions end.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::config::KeySource;
use crate::error::{Error, Result};

/// Bytes of randomness in a token (256 bits).
pub const TOKEN_LEN: usize = 32;
/// Shortest key accepted.
pub const MIN_KEY_LEN: usize = 32;
/// Domain separation for the MAC, so a MAC made for something else never
/// verifies as a cookie.
const MAC_TAG: &[u8] = b"wsgate-session-v1\0";

/// A session token: the secret half of a cookie.
pub type Token = [u8; TOKEN_LEN];

/// One signing key.
#[derive(Clone)]
struct Key {
    id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

impl Key {
    fn new(secret: Vec<u8>) -> Result<Self> {
        if secret.len() < MIN_KEY_LEN {
            return Err(Error::Config(format!(
                "a secret key needs at least {MIN_KEY_LEN} bytes"
            )));
        }
        let digest = Sha256::new()
            .chain_update(b"wsgate-key-id\0")
            .chain_update(&secret)
            .finalize();
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { id, secret })
    }

    /// HMAC over the domain tag, the key id and the token. (HMAC takes keys
    /// of any length, so `None` does not happen in practice.)
    fn keyed(&self, token: &[u8]) -> Option<Hmac<Sha256>> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret).ok()?;
        mac.update(MAC_TAG);
        mac.update(self.id.as_bytes());
        mac.update(b".");
        mac.update(token);
        Some(mac)
    }

    fn mac(&self, token: &[u8]) -> Vec<u8> {
        // An empty tag never verifies.
        self.keyed(token)
            .map(|m| m.finalize().into_bytes().to_vec())
            .unwrap_or_default()
    }

    fn verify_mac(&self, token: &[u8], tag: &[u8]) -> bool {
        self.keyed(token)
            .is_some_and(|m| m.verify_slice(tag).is_ok())
    }
}

/// The current key and the previous keys that still verify.
#[derive(Clone, Debug)]
pub struct Keys {
    current: Key,
    previous: Vec<Key>,
}

impl Keys {
    /// Keys from raw secrets.
    ///
    /// # Errors
    /// A secret shorter than [`MIN_KEY_LEN`].
    pub fn new(current: Vec<u8>, previous: Vec<Vec<u8>>) -> Result<Self> {
        Ok(Self {
            current: Key::new(current)?,
            previous: previous.into_iter().map(Key::new).collect::<Result<_>>()?,
        })
    }

    /// Loads keys; a missing current key file is created (mode 0600).
    ///
    /// # Errors
    /// Unreadable or too short key files, a missing previous key file.
    pub fn load(current: &KeySource, previous: &[KeySource]) -> Result<Self> {
        let cur = match current {
            KeySource::Bytes(b) => b.clone(),
            KeySource::File(p) => load_or_create(p)?,
        };
        let prev = previous
            .iter()
            .map(|k| match k {
                KeySource::Bytes(b) => Ok(b.clone()),
                KeySource::File(p) => read_key_file(p),
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(cur, prev)
    }

    /// The current key's id.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// A fresh random token.
    pub fn new_token() -> Token {
        let mut t = [0u8; TOKEN_LEN];
        rand::fill(&mut t);
        t
    }

    /// Signs `token` with the current key into a cookie value.
    pub fn sign(&self, token: &Token) -> String {
        let k = &self.current;
        format!(
            "{}.{}.{}",
            k.id,
            URL_SAFE_NO_PAD.encode(token),
            URL_SAFE_NO_PAD.encode(k.mac(token))
        )
    }

    /// The token of a cookie value that verifies under the current or a
    /// previous key; `None` for anything tampered, truncated or unsigned.
    pub fn verify(&self, value: &str) -> Option<Token> {
        let mut parts = value.split('.');
        let (kid, token, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == kid)?;
        let token: Token = URL_SAFE_NO_PAD.decode(token).ok()?.try_into().ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        key.verify_mac(&token, &tag).then_some(token)
    }
}

/// SHA-256 of a token: what the database stores.
pub fn token_hash(token: &Token) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn read_key_file(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path)
        .map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?;
    let text = String::from_utf8_lossy(&raw);
    let trimmed = text.trim();
    if trimmed.len() >= 2 * MIN_KEY_LEN && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        let bytes = (0..trimmed.len() / 2)
            .filter_map(|i| u8::from_str_radix(&trimmed[2 * i..2 * i + 2], 16).ok())
            .collect::<Vec<_>>();
        return Ok(bytes);
    }
    if raw.len() >= MIN_KEY_LEN {
        return Ok(raw);
    }
    Err(Error::Config(format!(
        "key file {} holds fewer than {MIN_KEY_LEN} bytes",
        path.display()
    )))
}

fn load_or_create(path: &Path) -> Result<Vec<u8>> {
    if path.exists() {
        warn_if_readable_by_others(path);
        return read_key_file(path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(format!("{hex}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::io(format!("writing key file {}", path.display()), e))?;
            tracing::info!(path = %path.display(), "created a new secret key file");
            Ok(key.to_vec())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(e) => Err(Error::io(
            format!("creating key file {}", path.display()),
            e,
        )),
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "secret key file is readable by other users; chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(seed: u8) -> Keys {
        Keys::new(vec![seed; 32], vec![]).unwrap()
    }

    #[test]
    fn sign_and_verify() {
        let k = keys(1);
        let t = Keys::new_token();
        let v = k.sign(&t);
        assert_eq!(k.verify(&v), Some(t));
        assert!(v.starts_with(k.current_id()));
    }

    #[test]
    fn tampering_is_rejected() {
        let k = keys(1);
        let t = Keys::new_token();
        let v = k.sign(&t);
        // flip one character in each part
        for i in 0..v.len() {
            let mut b = v.clone().into_bytes();
            if b[i] == b'.' {
                continue;
            }
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let s = String::from_utf8(b).unwrap();
            if s != v {
                assert_eq!(k.verify(&s), None, "accepted {s}");
            }
        }
        // truncated, unsigned, extra parts, empty
        assert_eq!(k.verify(&v[..v.len() - 1]), None);
        let unsigned = v.rsplit_once('.').unwrap().0;
        assert_eq!(k.verify(unsigned), None);
        assert_eq!(k.verify(&format!("{v}.x")), None);
        assert_eq!(k.verify(""), None);
        assert_eq!(k.verify("..."), None);
        // another key's cookie
        assert_eq!(keys(2).verify(&v), None);
    }

    #[test]
    fn rotation_keeps_previous_keys_verifying() {
        let old = keys(1);
        let t = Keys::new_token();
        let old_cookie = old.sign(&t);
        let rotated = Keys::new(vec![2; 32], vec![vec![1; 32]]).unwrap();
        assert_eq!(rotated.verify(&old_cookie), Some(t));
        let new_cookie = rotated.sign(&t);
        assert_ne!(new_cookie, old_cookie);
        assert_eq!(rotated.verify(&new_cookie), Some(t));
        // a key dropped from the list stops verifying
        assert_eq!(keys(2).verify(&old_cookie), None);
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(Keys::new(vec![1; 31], vec![]).is_err());
    }

    #[test]
    fn key_file_created_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.key");
        let a = Keys::load(&KeySource::File(path.clone()), &[]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = Keys::load(&KeySource::File(path), &[]).unwrap();
        assert_eq!(a.current_id(), b.current_id());
    }
}
