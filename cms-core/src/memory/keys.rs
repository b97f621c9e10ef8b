//! SSH key pairs: generated (Ed25519) or imported from an OpenSSH public key.

use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};

use crate::model::KeyPair;
use crate::{Error, ErrorKind, Operation, Result};

/// A new Ed25519 key pair named `name`; the answer carries the private key.
pub(super) fn generate(name: &str) -> Result<KeyPair> {
    let op = Operation::CreateKeyPair;
    let failed = |what: &str, e: ssh_key::Error| {
        Error::new(
            ErrorKind::Backend,
            format!("{what} for key pair `{name}` failed: {e}"),
        )
        .with_operation(op)
        .with_resource(format!("key pair {name}"))
        .with_source(e)
    };
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .map_err(|e| failed("generating an Ed25519 key", e))?;
    key.set_comment(name);
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| failed("encoding the private key", e))?;
    let public = key.public_key();
    Ok(KeyPair {
        name: name.to_owned(),
        fingerprint: public.fingerprint(HashAlg::Sha256).to_string(),
        public_key: Some(
            public
                .to_openssh()
                .map_err(|e| failed("encoding the public key", e))?,
        ),
        private_key: Some(private.as_str().to_owned()),
    })
}

/// A key pair named `name` from an OpenSSH public key (`ssh-ed25519 AAAA… comment`);
/// `InvalidArgument` naming `public_key` when it is not one.
pub(super) fn import(name: &str, public_key: &str) -> Result<KeyPair> {
    let op = Operation::ImportKeyPair;
    let invalid = |why: String| {
        Error::invalid_argument("public_key", why)
            .with_operation(op)
            .with_resource(format!("key pair {name}"))
    };
    let key = PublicKey::from_openssh(public_key.trim()).map_err(|e| {
        invalid(format!(
            "not a valid OpenSSH public key for key pair `{name}` \
             (expected a line such as `ssh-ed25519 AAAA… comment`): {e}"
        ))
        .with_source(e)
    })?;
    let normalized = key.to_openssh().map_err(|e| {
        invalid(format!(
            "cannot re-encode the public key of key pair `{name}`: {e}"
        ))
        .with_source(e)
    })?;
    Ok(KeyPair {
        name: name.to_owned(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        public_key: Some(normalized),
        private_key: None,
    })
}
