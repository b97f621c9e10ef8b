//! Key pairs: CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair. Names
//! are the tenant's own (the service keeps them apart from other tenants').

use base64::Engine as _;
use cms_core::{ErrorKind, KeyPair, KeyPairSpec};

use super::actions::{caps, check_filters, require};
use super::error::{Ec2Error, Result};
use super::params::filters;
use super::xml::Xml;
use super::Call;
use crate::service::Entry;

fn key_type(k: &KeyPair) -> &'static str {
    match k.public_key.as_deref() {
        Some(p) if p.starts_with("ssh-rsa") => "rsa",
        _ => "ed25519",
    }
}

fn duplicate(name: &str) -> Ec2Error {
    Ec2Error::new(
        "InvalidKeyPair.Duplicate",
        400,
        format!("The keypair '{name}' already exists."),
    )
}

async fn owned_key_pairs(c: &Call<'_>) -> Result<Vec<(KeyPair, Entry)>> {
    require(c, caps(c).key_pairs.list, "listing key pairs")?;
    Ok(c.service.list_key_pairs(c.tenant, c.provider).await?)
}

pub(super) async fn create_key_pair(c: &Call<'_>, import: bool) -> Result<String> {
    let kc = &caps(c).key_pairs;
    require(
        c,
        kc.create && (!import || kc.import),
        if import {
            "importing key pairs"
        } else {
            "creating key pairs"
        },
    )?;
    let name = c.p.required("KeyName")?;
    let max = crate::service::keys::MAX_KEY_NAME;
    if name.len() > max || !name.is_ascii() {
        return Err(Ec2Error::invalid_value(format!(
            "KeyName must be at most {max} ASCII characters"
        )));
    }
    let public_key = if import {
        let material = c.p.required("PublicKeyMaterial")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(material.trim())
            .map_err(|_| Ec2Error::invalid_value("PublicKeyMaterial is not valid base64"))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Ec2Error::new(
                "InvalidKey.Format",
                400,
                "Key is not in valid OpenSSH public key format",
            )
        })?;
        Some(text.trim().to_owned())
    } else {
        if let Some(t) = c.p.get("KeyType").filter(|t| *t != "ed25519") {
            return Err(Ec2Error::invalid_value(format!(
                "KeyType `{t}`: cms generates ed25519 key pairs; import an RSA key with ImportKeyPair"
            )));
        }
        None
    };
    let spec = KeyPairSpec {
        name: name.to_owned(),
        public_key,
    };
    let (key, entry) = c
        .service
        .create_key_pair(c.tenant, c.provider, &spec)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => duplicate(name),
            ErrorKind::InvalidArgument if import => {
                Ec2Error::new("InvalidKey.Format", 400, e.to_string())
            }
            _ => e.into(),
        })?;
    let action = if import {
        "ImportKeyPair"
    } else {
        "CreateKeyPair"
    };
    let mut x = Xml::response(action, c.request_id, 1024);
    x.leaf("keyName", name)
        .leaf("keyFingerprint", &key.fingerprint)
        .leaf("keyPairId", &entry.public_id);
    if !import {
        x.leaf("keyMaterial", key.private_key.as_deref().unwrap_or(""));
    }
    Ok(x.finish(action))
}

pub(super) async fn describe_key_pairs(c: &Call<'_>) -> Result<String> {
    let fs = filters(&c.p)?;
    check_filters(
        &fs,
        &["key-name", "fingerprint", "key-pair-id", "key-type"],
        &[],
    )?;
    let names = c.p.list("KeyName")?;
    let ids = c.p.list("KeyPairId")?;
    let include_public = c.p.bool("IncludePublicKey")?.unwrap_or(false);
    let owned = owned_key_pairs(c).await?;
    for n in &names {
        if !owned.iter().any(|(k, _)| k.name == *n) {
            return Err(Ec2Error::not_found(
                "InvalidKeyPair.NotFound",
                "key pair",
                n,
            ));
        }
    }
    for i in &ids {
        if !owned.iter().any(|(_, e)| &*e.public_id == *i) {
            return Err(Ec2Error::not_found(
                "InvalidKeyPair.NotFound",
                "key pair ID",
                i,
            ));
        }
    }
    let mut rows: Vec<(KeyPair, Entry)> = owned
        .into_iter()
        .filter(|(k, e)| {
            (names.is_empty() || names.contains(&k.name.as_str()))
                && (ids.is_empty() || ids.contains(&&*e.public_id))
                && fs.iter().all(|f| match f.name.as_str() {
                    "key-name" => f.matches([k.name.as_str()]),
                    "fingerprint" => f.matches([k.fingerprint.as_str()]),
                    "key-pair-id" => f.matches([&*e.public_id]),
                    _ => f.matches([key_type(k)]),
                })
        })
        .collect();
    rows.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut x = Xml::response("DescribeKeyPairs", c.request_id, 256 + rows.len() * 300);
    x.open("keySet");
    for (k, e) in &rows {
        x.open("item")
            .leaf("keyPairId", &e.public_id)
            .leaf("keyName", &k.name)
            .leaf("keyFingerprint", &k.fingerprint)
            .leaf("keyType", key_type(k));
        if include_public {
            x.leaf_opt("publicKey", k.public_key.as_deref());
        }
        x.close("item");
    }
    x.close("keySet");
    Ok(x.finish("DescribeKeyPairs"))
}

pub(super) async fn delete_key_pair(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).key_pairs.delete, "deleting key pairs")?;
    let s = c.service;
    let name: Option<String> = match (c.p.get("KeyName"), c.p.get("KeyPairId")) {
        (Some(n), _) if !n.is_empty() => Some(n.to_owned()),
        (_, Some(id)) if !id.is_empty() => match s.key_pair_name(c.tenant, c.provider, id).await? {
            Some(n) => Some(n),
            None => {
                return Err(Ec2Error::not_found(
                    "InvalidKeyPair.NotFound",
                    "key pair ID",
                    id,
                ))
            }
        },
        _ => return Err(Ec2Error::missing("KeyName")),
    };
    // As EC2 does, deleting a key pair that is not there succeeds; another tenant's
    // key pair is "not there" and left alone.
    if let Some(name) = name {
        match s.delete_key_pair(c.tenant, c.provider, &name).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut x = Xml::response("DeleteKeyPair", c.request_id, 256);
    x.bool("return", true);
    Ok(x.finish("DeleteKeyPair"))
}
