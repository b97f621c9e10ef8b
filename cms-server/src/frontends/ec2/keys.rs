//! Key pairs: CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair. Names
//! are the tenant's own (the service keeps them apart from other tenants'). Key
//! material and fingerprints follow AWS's rules ([`super::keymat`]); the fingerprint
//! EC2 shows, the creation time and the tenant's tags are kept with the key pair's
//! row, as the backends keep none of them.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use cms_core::{ErrorKind, KeyPair, KeyPairSpec, Tags};

use super::actions::{caps, check_filters, require, tag_specifications, unsupported};
use super::error::{Ec2Error, Result};
use super::keymat::{self, KeyFormat, KeyType};
use super::params::filters;
use super::xml::Xml;
use super::Call;
use crate::service::keys::KeyPairExtra;
use crate::service::Entry;
use crate::store::{CREATED, FINGERPRINT};

fn duplicate(name: &str) -> Ec2Error {
    Ec2Error::new(
        "InvalidKeyPair.Duplicate",
        400,
        format!("The keypair '{name}' already exists."),
    )
}

fn bad_key(why: impl Into<String>) -> Ec2Error {
    Ec2Error::new("InvalidKey.Format", 400, why)
}

/// A key pair of the tenant as EC2 shows it.
struct Shown {
    key: KeyPair,
    entry: Entry,
    fingerprint: String,
    kind: &'static str,
    created: Option<chrono::DateTime<chrono::Utc>>,
    tags: Tags,
}

/// The tenant's key pairs with what the store keeps of them. The fingerprint is the
/// one kept when the key was made; for key pairs made before (or by another
/// frontend) it is computed from the public key by EC2's import rule, and only when
/// the backend gives no public key is it the backend's own.
async fn owned_key_pairs(c: &Call<'_>) -> Result<Vec<Shown>> {
    require(c, caps(c).key_pairs.list, "listing key pairs")?;
    let owned = c.service.list_key_pairs(c.tenant, c.provider).await?;
    let ids: Vec<&str> = owned.iter().map(|(_, e)| &*e.public_id).collect();
    let mut fingerprints = c.service.attributes(&ids, FINGERPRINT).await?;
    let mut created = c.service.attributes(&ids, CREATED).await?;
    let mut tags: HashMap<Arc<str>, Tags> = c.service.tenant_tags(c.tenant, &ids).await?;
    Ok(owned
        .into_iter()
        .map(|(key, entry)| {
            let public = key.public_key.as_deref();
            let kind = public
                .and_then(KeyType::of_public_key)
                .unwrap_or(KeyType::Ed25519)
                .as_str();
            // The public key is parsed only for a key pair with no fingerprint kept.
            let fingerprint = fingerprints
                .remove(&entry.public_id)
                .or_else(|| {
                    public
                        .and_then(|k| keymat::imported(k).ok())
                        .map(|(_, f)| f)
                })
                .unwrap_or_else(|| key.fingerprint.clone());
            Shown {
                fingerprint,
                kind,
                created: created
                    .remove(&entry.public_id)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc)),
                tags: tags.remove(&entry.public_id).unwrap_or_default(),
                key,
                entry,
            }
        })
        .collect())
}

/// What a CreateKeyPair makes: the key here when the backend imports keys (both
/// types, both formats), else the backend's own (ed25519, PEM only).
enum Made {
    Here(keymat::Generated),
    ByBackend,
}

pub(super) async fn create_key_pair(c: &Call<'_>, import: bool) -> Result<String> {
    let kc = &caps(c).key_pairs;
    let name = c.p.required("KeyName")?;
    let max = crate::service::keys::MAX_KEY_NAME;
    if name.is_empty() || name.chars().count() > max || !name.is_ascii() {
        return Err(Ec2Error::invalid_value(format!(
            "KeyName must be 1 to {max} ASCII characters"
        )));
    }
    let tags = tag_specifications(&c.p, "key-pair")?;
    let (public_key, made, fingerprint) = if import {
        require(c, kc.create && kc.import, "importing key pairs")?;
        let text = material_text(c.p.required("PublicKeyMaterial")?);
        let (_, fingerprint) = keymat::imported(&text).map_err(|e| bad_key(e.0))?;
        (Some(text), None, Some(fingerprint))
    } else {
        let kind = match c.p.get("KeyType") {
            None => KeyType::Rsa,
            Some(t) => KeyType::parse(t).ok_or_else(|| {
                Ec2Error::invalid_value(format!(
                    "Value ({t}) for parameter KeyType is invalid. Valid values: rsa, ed25519"
                ))
            })?,
        };
        let format = match c.p.get("KeyFormat") {
            None => KeyFormat::Pem,
            Some(f) => KeyFormat::parse(f).ok_or_else(|| {
                Ec2Error::invalid_value(format!(
                    "Value ({f}) for parameter KeyFormat is invalid. Valid values: pem, ppk"
                ))
            })?,
        };
        if kc.create && kc.import {
            let comment = name.to_owned();
            let g = tokio::task::spawn_blocking(move || keymat::generate(kind, format, &comment))
                .await
                .map_err(|e| Ec2Error::internal(format!("key generation stopped: {e}")))?
                .map_err(|e| Ec2Error::internal(e.0))?;
            let fingerprint = g.fingerprint.clone();
            (
                Some(g.public_key.clone()),
                Some(Made::Here(g)),
                Some(fingerprint),
            )
        } else if kc.create && kind == KeyType::Ed25519 && format == KeyFormat::Pem {
            (None, Some(Made::ByBackend), None)
        } else {
            return Err(unsupported(
                c,
                &format!("creating {} key pairs in {format:?} format", kind.as_str()),
            ));
        }
    };
    let attributes: Vec<(&str, &str)> = fingerprint
        .as_deref()
        .map(|f| (FINGERPRINT, f))
        .into_iter()
        .collect();
    let spec = KeyPairSpec {
        name: name.to_owned(),
        public_key,
    };
    let extra = KeyPairExtra {
        attributes: &attributes,
        tags: Some(&tags),
    };
    let (key, entry) = c
        .service
        .create_key_pair(c.tenant, c.provider, &spec, &extra)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => duplicate(name),
            ErrorKind::InvalidArgument if import => bad_key(e.to_string()),
            _ => e.into(),
        })?;
    let action = if import {
        "ImportKeyPair"
    } else {
        "CreateKeyPair"
    };
    let mut x = Xml::response(action, c.request_id, 4096);
    x.leaf("keyName", name)
        .leaf(
            "keyFingerprint",
            fingerprint.as_deref().unwrap_or(&key.fingerprint),
        )
        .leaf("keyPairId", &entry.public_id);
    match &made {
        Some(Made::Here(g)) => {
            x.leaf("keyMaterial", &g.private_key);
        }
        Some(Made::ByBackend) => {
            x.leaf("keyMaterial", key.private_key.as_deref().unwrap_or(""));
        }
        None => {}
    }
    x.tags("tagSet", tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Ok(x.finish(action))
}

pub(super) async fn describe_key_pairs(c: &Call<'_>) -> Result<String> {
    let fs = filters(&c.p)?;
    check_filters(
        &fs,
        &[
            "key-name",
            "fingerprint",
            "key-pair-id",
            "key-type",
            "tag-key",
        ],
        &["tag:"],
    )?;
    let names = c.p.list("KeyName")?;
    let ids = c.p.list("KeyPairId")?;
    let include_public = c.p.bool("IncludePublicKey")?.unwrap_or(false);
    let owned = owned_key_pairs(c).await?;
    for n in &names {
        if !owned.iter().any(|k| k.key.name == *n) {
            return Err(Ec2Error::not_found(
                "InvalidKeyPair.NotFound",
                "key pair",
                n,
            ));
        }
    }
    for i in &ids {
        if !owned.iter().any(|k| &*k.entry.public_id == *i) {
            return Err(Ec2Error::not_found(
                "InvalidKeyPair.NotFound",
                "key pair ID",
                i,
            ));
        }
    }
    let mut rows: Vec<Shown> = owned
        .into_iter()
        .filter(|k| {
            (names.is_empty() || names.contains(&k.key.name.as_str()))
                && (ids.is_empty() || ids.contains(&&*k.entry.public_id))
                && fs.iter().all(|f| match f.name.as_str() {
                    "key-name" => f.matches([k.key.name.as_str()]),
                    "fingerprint" => f.matches([k.fingerprint.as_str()]),
                    "key-pair-id" => f.matches([&*k.entry.public_id]),
                    "key-type" => f.matches([k.kind]),
                    // `tag-key` and `tag:KEY`, the rest checked above.
                    _ => f.on_tags(&k.tags).unwrap_or(false),
                })
        })
        .collect();
    rows.sort_by(|a, b| a.key.name.cmp(&b.key.name));
    let mut x = Xml::response("DescribeKeyPairs", c.request_id, 256 + rows.len() * 400);
    x.open("keySet");
    for k in &rows {
        x.open("item")
            .leaf("keyPairId", &k.entry.public_id)
            .leaf("keyName", &k.key.name)
            .leaf("keyFingerprint", &k.fingerprint)
            .leaf("keyType", k.kind);
        x.tags(
            "tagSet",
            k.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        if include_public {
            x.leaf_opt("publicKey", k.key.public_key.as_deref());
        }
        if let Some(t) = &k.created {
            x.time("createTime", t);
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

/// The OpenSSH text of `PublicKeyMaterial`: clients send the key base64-encoded (as
/// the API says); some send the text.
pub(super) fn material_text(material: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(material.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| material.to_owned())
        .trim()
        .to_owned()
}
