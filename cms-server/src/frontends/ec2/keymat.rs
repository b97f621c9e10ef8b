//! Key material as EC2 makes and shows it.
//!
//! - CreateKeyPair generates the key here (`KeyType` `rsa`, AWS's default: 2048 bits;
//!   or `ed25519`) and hands the public half to the backend as an import, so that
//!   every backend that imports keys offers both types; the private key is in the
//!   answer only, never kept. `KeyFormat` `pem` gives an RSA key as PKCS#1 PEM
//!   (`-----BEGIN RSA PRIVATE KEY-----`) and an ed25519 key as an OpenSSH private key,
//!   as AWS does; `ppk` gives a PuTTY key file (version 2, unencrypted, which every
//!   PuTTY since 0.52 and WinSCP read).
//! - Fingerprints follow AWS's rules, which clients compare (Libcloud's
//!   `ex_find_or_import_keypair_by_key_material` does): a created RSA key: the SHA-1
//!   of its DER PKCS#8 private key; an imported RSA key: the MD5 of its DER
//!   SubjectPublicKeyInfo; ed25519, created or imported: the base64 SHA-256 of the
//!   SSH public key blob, `=` padding kept. Hashes are lower-case colon hex.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::Md5;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use ssh_key::private::KeypairData;
use ssh_key::public::KeyData;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, Mpint, PrivateKey, PublicKey};

/// The size of the RSA keys CreateKeyPair makes, as AWS's.
pub const RSA_BITS: usize = 2048;

/// The key types EC2 knows (`KeyType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    Ed25519,
}

impl KeyType {
    pub fn parse(s: &str) -> Option<KeyType> {
        match s {
            "rsa" => Some(KeyType::Rsa),
            "ed25519" => Some(KeyType::Ed25519),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// The type of an OpenSSH public key, when EC2 knows it.
    pub fn of_public_key(openssh: &str) -> Option<KeyType> {
        match openssh.split_ascii_whitespace().next() {
            Some("ssh-rsa") => Some(KeyType::Rsa),
            Some("ssh-ed25519") => Some(KeyType::Ed25519),
            _ => None,
        }
    }
}

/// The private key formats EC2 gives (`KeyFormat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    Pem,
    Ppk,
}

impl KeyFormat {
    pub fn parse(s: &str) -> Option<KeyFormat> {
        match s {
            "pem" => Some(KeyFormat::Pem),
            "ppk" => Some(KeyFormat::Ppk),
            _ => None,
        }
    }
}

/// A key pair made here.
pub struct Generated {
    /// The public key, OpenSSH format, with the key name as comment.
    pub public_key: String,
    /// The private key in the format asked for.
    pub private_key: String,
    /// EC2's fingerprint of it.
    pub fingerprint: String,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("public_key", &self.public_key)
            .field("private_key", &"<redacted>")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// Why key material could not be made or read.
#[derive(Debug)]
pub struct KeyError(pub String);

fn failed(what: &str) -> impl Fn(String) -> KeyError + '_ {
    move |e| KeyError(format!("{what}: {e}"))
}

fn colon_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn ed25519_fingerprint(blob: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(blob))
}

/// Makes a key pair of `kind` named `name` (CPU-bound: an RSA key takes tens of
/// milliseconds; call it off the async threads).
pub fn generate(kind: KeyType, format: KeyFormat, name: &str) -> Result<Generated, KeyError> {
    match kind {
        KeyType::Rsa => generate_rsa(format, name),
        KeyType::Ed25519 => generate_ed25519(format, name),
    }
}

fn generate_rsa(format: KeyFormat, name: &str) -> Result<Generated, KeyError> {
    let key = RsaPrivateKey::new(&mut OsRng, RSA_BITS)
        .map_err(|e| failed("cannot generate an RSA key")(e.to_string()))?;
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|e| failed("cannot encode the RSA key")(e.to_string()))?;
    let fingerprint = colon_hex(&Sha1::digest(pkcs8.as_bytes()));
    let public = PublicKey::new(
        KeyData::Rsa(ssh_key::public::RsaPublicKey {
            e: mpint(key.e())?,
            n: mpint(key.n())?,
        }),
        name,
    );
    let public_key = public
        .to_openssh()
        .map_err(|e| failed("cannot encode the RSA public key")(e.to_string()))?;
    let private_key = match format {
        KeyFormat::Pem => key
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(|e| failed("cannot encode the RSA key")(e.to_string()))?
            .to_string(),
        KeyFormat::Ppk => {
            let [p, q] = key.primes() else {
                return Err(KeyError("an RSA key of other than two primes".into()));
            };
            let iqmp = key
                .crt_coefficient()
                .ok_or_else(|| KeyError("an RSA key without a CRT coefficient".into()))?;
            let mut private = Vec::new();
            for part in [key.d(), p, q, &iqmp] {
                put_string(&mut private, mpint(part)?.as_bytes());
            }
            ppk("ssh-rsa", name, &public_blob(&public)?, &private)
        }
    };
    Ok(Generated {
        public_key,
        private_key,
        fingerprint,
    })
}

fn generate_ed25519(format: KeyFormat, name: &str) -> Result<Generated, KeyError> {
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .map_err(|e| failed("cannot generate an ed25519 key")(e.to_string()))?;
    key.set_comment(name);
    let public = key.public_key();
    let blob = public_blob(public)?;
    let public_key = public
        .to_openssh()
        .map_err(|e| failed("cannot encode the ed25519 public key")(e.to_string()))?;
    let private_key = match format {
        KeyFormat::Pem => key
            .to_openssh(LineEnding::LF)
            .map_err(|e| failed("cannot encode the ed25519 key")(e.to_string()))?
            .to_string(),
        KeyFormat::Ppk => {
            let KeypairData::Ed25519(pair) = key.key_data() else {
                return Err(KeyError("not an ed25519 key".into()));
            };
            let mut private = Vec::new();
            put_string(&mut private, &pair.private.to_bytes());
            ppk("ssh-ed25519", name, &blob, &private)
        }
    };
    Ok(Generated {
        public_key,
        private_key,
        fingerprint: ed25519_fingerprint(&blob),
    })
}

fn mpint(n: &BigUint) -> Result<Mpint, KeyError> {
    Mpint::from_positive_bytes(&n.to_bytes_be())
        .map_err(|e| failed("cannot encode a number")(e.to_string()))
}

fn public_blob(key: &PublicKey) -> Result<Vec<u8>, KeyError> {
    key.to_bytes()
        .map_err(|e| failed("cannot encode the public key")(e.to_string()))
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // Key parts are far below 4 GiB.
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// An unencrypted PuTTY key file, version 2: its MAC is the HMAC-SHA-1, keyed with
/// the SHA-1 of "putty-private-key-file-mac-key" (and the empty passphrase), of the
/// algorithm, encryption, comment and both blobs.
fn ppk(algorithm: &str, comment: &str, public: &[u8], private: &[u8]) -> String {
    const ENCRYPTION: &str = "none";
    let mut data = Vec::new();
    for part in [
        algorithm.as_bytes(),
        ENCRYPTION.as_bytes(),
        comment.as_bytes(),
        public,
        private,
    ] {
        put_string(&mut data, part);
    }
    let mac_key = Sha1::digest(b"putty-private-key-file-mac-key");
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&mac_key).expect("HMAC takes any key");
    mac.update(&data);
    let mac: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut out = format!(
        "PuTTY-User-Key-File-2: {algorithm}\nEncryption: {ENCRYPTION}\nComment: {comment}\n"
    );
    for (label, blob) in [("Public-Lines", public), ("Private-Lines", private)] {
        let text = base64::engine::general_purpose::STANDARD.encode(blob);
        let lines: Vec<&str> = text
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        out.push_str(&format!("{label}: {}\n", lines.len()));
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    out.push_str(&format!("Private-MAC: {mac}\n"));
    out
}

/// Reads an OpenSSH public key a client imports: its type and EC2's fingerprint of
/// it. EC2 takes RSA (1024 to 4096 bits) and ed25519 keys.
pub fn imported(openssh: &str) -> Result<(KeyType, String), KeyError> {
    let key = PublicKey::from_openssh(openssh.trim())
        .map_err(|_| KeyError("Key is not in valid OpenSSH public key format".into()))?;
    match key.key_data() {
        KeyData::Rsa(r) => {
            let bytes = |m: &Mpint| {
                m.as_positive_bytes()
                    .map(BigUint::from_bytes_be)
                    .ok_or_else(|| KeyError("the RSA key has a non-positive number".into()))
            };
            let public = RsaPublicKey::new(bytes(&r.n)?, bytes(&r.e)?)
                .map_err(|e| KeyError(format!("the RSA key is not valid: {e}")))?;
            let bits = public.n().bits();
            if !(1024..=4096).contains(&bits) {
                return Err(KeyError(format!(
                    "the RSA key has {bits} bits; EC2 takes 1024 to 4096"
                )));
            }
            let der = public
                .to_public_key_der()
                .map_err(|e| KeyError(format!("cannot encode the RSA key: {e}")))?;
            Ok((KeyType::Rsa, colon_hex(&Md5::digest(der.as_bytes()))))
        }
        KeyData::Ed25519(_) => Ok((KeyType::Ed25519, ed25519_fingerprint(&public_blob(&key)?))),
        _ => Err(KeyError(format!(
            "{} keys cannot be imported; EC2 takes RSA and ED25519 keys",
            key.algorithm()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_rsa_keys_are_pkcs1_with_the_sha1_of_their_pkcs8_form() {
        let g = generate(KeyType::Rsa, KeyFormat::Pem, "web").unwrap();
        assert!(g
            .private_key
            .starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let key = RsaPrivateKey::from_pkcs1_pem(&g.private_key).unwrap();
        assert_eq!(key.n().bits(), RSA_BITS);
        let der = key.to_pkcs8_der().unwrap();
        assert_eq!(g.fingerprint, colon_hex(&Sha1::digest(der.as_bytes())));
        assert_eq!(g.fingerprint.len(), 59);
        assert!(g.public_key.starts_with("ssh-rsa ") && g.public_key.ends_with(" web"));
        // The public half is the private key's; importing it gives the MD5 rule.
        let (kind, fp) = imported(&g.public_key).unwrap();
        assert_eq!(kind, KeyType::Rsa);
        let spki = key.to_public_key().to_public_key_der().unwrap();
        assert_eq!(fp, colon_hex(&Md5::digest(spki.as_bytes())));
        assert!(!format!("{g:?}").contains("PRIVATE"));
    }

    #[test]
    fn created_ed25519_keys_are_openssh_with_a_base64_sha256() {
        let g = generate(KeyType::Ed25519, KeyFormat::Pem, "me@host").unwrap();
        let key = PrivateKey::from_openssh(&g.private_key).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Ed25519);
        assert_eq!(key.public_key().to_openssh().unwrap(), g.public_key);
        let blob = key.public_key().to_bytes().unwrap();
        assert_eq!(blob.len(), 51);
        assert_eq!(g.fingerprint, ed25519_fingerprint(&blob));
        assert!(g.fingerprint.ends_with('='), "{}", g.fingerprint);
        assert_eq!(
            imported(&g.public_key).unwrap(),
            (KeyType::Ed25519, g.fingerprint)
        );
    }

    /// Splits a PuTTY key file into its fields and blobs, checking its MAC.
    fn read_ppk(text: &str) -> (String, Vec<u8>, Vec<u8>) {
        let mut lines = text.lines();
        let mut field = |name: &str| {
            let l = lines.next().unwrap();
            l.strip_prefix(&format!("{name}: "))
                .unwrap_or_else(|| panic!("{name}: {l}"))
                .to_owned()
        };
        let algorithm = field("PuTTY-User-Key-File-2");
        assert_eq!(field("Encryption"), "none");
        let comment = field("Comment");
        let blob = |name: &str, lines: &mut std::str::Lines<'_>| {
            let l = lines.next().unwrap();
            let n: usize = l
                .strip_prefix(&format!("{name}: "))
                .unwrap()
                .parse()
                .unwrap();
            let text: String = (0..n).map(|_| lines.next().unwrap()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap()
        };
        let public = blob("Public-Lines", &mut lines);
        let private = blob("Private-Lines", &mut lines);
        let mac = lines
            .next()
            .unwrap()
            .strip_prefix("Private-MAC: ")
            .unwrap()
            .to_owned();
        assert_eq!(lines.next(), None);
        let again = ppk(&algorithm, &comment, &public, &private);
        assert!(again.ends_with(&format!("Private-MAC: {mac}\n")));
        (algorithm, public, private)
    }

    #[test]
    fn ppk_files_carry_the_same_key() {
        for kind in [KeyType::Rsa, KeyType::Ed25519] {
            let g = generate(kind, KeyFormat::Ppk, "laptop key").unwrap();
            let (algorithm, public, private) = read_ppk(&g.private_key);
            let key = PublicKey::from_openssh(&g.public_key).unwrap();
            assert_eq!(algorithm, key.algorithm().as_str());
            assert_eq!(public, key.to_bytes().unwrap());
            if kind == KeyType::Ed25519 {
                assert_eq!(private.len(), 4 + 32);
                assert_eq!(g.fingerprint, ed25519_fingerprint(&public));
            } else {
                // d, p, q, iqmp.
                let mut rest = &private[..];
                let mut parts = Vec::new();
                while !rest.is_empty() {
                    let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    parts.push(BigUint::from_bytes_be(&rest[4..4 + n]));
                    rest = &rest[4 + n..];
                }
                assert_eq!(parts.len(), 4);
                let KeyData::Rsa(r) = key.key_data() else {
                    panic!()
                };
                let n = BigUint::from_bytes_be(r.n.as_positive_bytes().unwrap());
                let e = BigUint::from_bytes_be(r.e.as_positive_bytes().unwrap());
                let private = RsaPrivateKey::from_components(
                    n,
                    e,
                    parts[0].clone(),
                    vec![parts[1].clone(), parts[2].clone()],
                )
                .unwrap();
                assert_eq!(private.crt_coefficient().unwrap(), parts[3]);
                let der = private.to_pkcs8_der().unwrap();
                assert_eq!(g.fingerprint, colon_hex(&Sha1::digest(der.as_bytes())));
            }
        }
    }

    #[test]
    fn imports_take_rsa_and_ed25519_only() {
        assert!(imported("ssh-rsa AAAA").is_err());
        assert!(imported("not a key").is_err());
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPG17m61Ra266Bh6BN6sVRT3jwKtNKCJ4mkGHT5KdQ/R4W82CN1CpmHu4UllG9InRcsu68vaY0SAGbqSaJwp75s= t";
        let e = imported(ecdsa).unwrap_err();
        assert!(e.0.contains("cannot be imported"), "{}", e.0);
    }
}
