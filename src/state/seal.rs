//! Sealing the PKI that travels with S3 snapshots.
//!
//! A snapshot uploaded to S3 carries the cluster's PKI so that a restore works from a new
//! workstation that has only cluster.yml and the S3 credentials. The PKI holds private
//! keys, so it is encrypted (ChaCha20-Poly1305) with a key derived from the S3 secret key:
//! whoever can read the bucket with those credentials can restore, and a copy of the
//! object alone reveals nothing.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const CONTEXT: &str = "rkectl 2026 pki sealed with the S3 secret key v1";

fn cipher(secret: &str) -> ChaCha20Poly1305 {
    let key = blake3::derive_key(CONTEXT, secret.as_bytes());
    ChaCha20Poly1305::new(Key::from_slice(&key))
}

/// Encrypts `plaintext`; the result is base64 text, safe to store in a manifest.
pub fn seal(secret: &str, plaintext: &str) -> String {
    let mut nonce = [0u8; 12];
    // The nonce must never repeat for a key; 96 random bits make that a non-issue here.
    crate::secret::random_bytes(&mut nonce);
    let ct = cipher(secret)
        .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
        .expect("encryption of an in-memory buffer cannot fail");
    let mut out = nonce.to_vec();
    out.extend(ct);
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// Decrypts what [`seal`] made; `None` if the key is wrong or the data was altered.
pub fn open(secret: &str, sealed: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD.decode(sealed).ok()?;
    if raw.len() < 12 {
        return None;
    }
    let (nonce, ct) = raw.split_at(12);
    let pt = cipher(secret).decrypt(Nonce::from_slice(nonce), ct).ok()?;
    String::from_utf8(pt).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_pki_opens_only_with_the_same_key() {
        let s = seal("secret-key-1", "ca private key");
        assert!(!s.contains("ca private key"));
        assert_eq!(open("secret-key-1", &s).as_deref(), Some("ca private key"));
        assert_eq!(open("another-key", &s), None);
    }
}
