//! Key pairs, named per tenant: as each AWS account has its own key pair names, each
//! tenant has its own, though a backend has one namespace per provider. A tenant's key
//! `web` is `TENANT@web` in the backend (`@` is in no tenant name, and every backend
//! takes it in key names; OpenNebula refuses `/` and `:`); clients only ever see `web`,
//! in answers and in errors, whichever frontend they use.

use cms_core::{Error, ErrorKind, KeyPair, KeyPairSpec, Operation};

use super::{Provider, Service};
use crate::auth::Tenant;
use crate::store::{Entry, Kind, Record, Seen, CREATED};

/// What a frontend keeps with a key pair it creates.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyPairExtra<'a> {
    /// Attributes (see [`Service::attributes`]).
    pub attributes: &'a [(&'a str, &'a str)],
    /// The tenant's tags on it.
    pub tags: Option<&'a cms_core::Tags>,
}

/// The longest key pair name a tenant may give: the backend's name (at most
/// [`cms_core::MAX_NAME`]) is it with the tenant's name (at most 64) and `@` before.
pub const MAX_KEY_NAME: usize = cms_core::MAX_NAME - 65;

/// The longest public key a tenant may import, in characters.
pub const MAX_PUBLIC_KEY: usize = 16 * 1024;

/// The name a tenant's key pair has in the backend.
pub fn backend_key_name(tenant: &str, name: &str) -> String {
    format!("{tenant}@{name}")
}

/// The name the owner sees of a backend key pair name (the name itself when it has no
/// owner's prefix).
pub fn shown_key_name<'a>(owner: Option<&str>, backend: &'a str) -> &'a str {
    owner
        .and_then(|t| backend.strip_prefix(t))
        .and_then(|rest| rest.strip_prefix('@'))
        .unwrap_or(backend)
}

fn check_key_name(name: &str, op: Operation) -> Result<(), Error> {
    if name.chars().count() > MAX_KEY_NAME {
        return Err(Error::invalid_argument(
            "name",
            format!("is longer than {MAX_KEY_NAME} characters"),
        )
        .with_operation(op));
    }
    cms_core::check_name("name", name, true).map_err(|e| e.with_operation(op))
}

impl Service {
    /// The key pairs of `tenant` on `p`, as it names them, with their rows (public ids).
    pub async fn list_key_pairs(
        &self,
        tenant: &Tenant,
        p: &Provider,
    ) -> Result<Vec<(KeyPair, Entry)>, Error> {
        let keys = p.cloud.list_key_pairs().await?;
        let prefix = backend_key_name(&tenant.name, "");
        let mine: Vec<KeyPair> = keys
            .into_iter()
            .filter(|k| k.name.starts_with(&prefix))
            .collect();
        let seen: Vec<Seen<'_>> = mine
            .iter()
            .map(|k| Seen {
                backend_id: &k.name,
                identity: None,
                tenant: Some(&tenant.name),
            })
            .collect();
        let rows = self.store.map(&p.name, Kind::KeyPair, &seen).await?;
        Ok(mine
            .into_iter()
            .zip(rows)
            .map(|(k, e)| {
                let name = shown_key_name(Some(&tenant.name), &k.name).to_owned();
                (KeyPair { name, ..k }, e)
            })
            .collect())
    }

    /// Creates (generates or imports) a key pair of `tenant`: `AlreadyExists` when the
    /// tenant has one of that name. What `extra` holds is kept with its row: a
    /// frontend's attributes (the time it was made is always kept, as
    /// [`CREATED`](crate::store::CREATED)) and the tenant's tags on it (checked here by
    /// the model's rules before anything is made).
    pub async fn create_key_pair(
        &self,
        tenant: &Tenant,
        p: &Provider,
        spec: &KeyPairSpec,
        extra: &KeyPairExtra<'_>,
    ) -> Result<(KeyPair, Entry), Error> {
        let op = match spec.public_key {
            Some(_) => Operation::ImportKeyPair,
            None => Operation::CreateKeyPair,
        };
        check_key_name(&spec.name, op)?;
        if let Some(k) = &spec.public_key {
            let n = k.chars().count();
            if n == 0 || n > MAX_PUBLIC_KEY {
                return Err(Error::invalid_argument(
                    "public_key",
                    format!("must be 1 to {MAX_PUBLIC_KEY} characters, not {n}"),
                )
                .with_operation(op)
                .with_provider(p.name.to_string()));
            }
        }
        if let Some(tags) = extra.tags {
            cms_core::check_tags(tags).map_err(|e| e.with_operation(op))?;
        }
        let backend = backend_key_name(&tenant.name, &spec.name);
        let made = p
            .cloud
            .create_key_pair(&KeyPairSpec {
                name: backend.clone(),
                public_key: spec.public_key.clone(),
            })
            .await
            .map_err(|e| e.renamed(&backend, &spec.name))?;
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut attributes: Vec<(&str, &str)> = vec![(CREATED, &created)];
        attributes.extend(extra.attributes.iter().copied());
        let tags: Vec<(&str, &str)> = extra
            .tags
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let entry = self
            .store
            .record(
                &p.name,
                Kind::KeyPair,
                &made.name,
                &Record {
                    tenant: Some(&tenant.name),
                    attributes: &attributes,
                    tenant_tags: &tags,
                    ..Record::default()
                },
            )
            .await?;
        Ok((
            KeyPair {
                name: spec.name.clone(),
                ..made
            },
            entry,
        ))
    }

    /// Deletes a key pair of `tenant` by the name it gave: `NotFound` when it has none.
    pub async fn delete_key_pair(
        &self,
        tenant: &Tenant,
        p: &Provider,
        name: &str,
    ) -> Result<(), Error> {
        let backend = backend_key_name(&tenant.name, name);
        p.cloud
            .delete_key_pair(&backend)
            .await
            .map_err(|e| e.renamed(&backend, name))?;
        self.store.forget(&p.name, Kind::KeyPair, &backend).await?;
        Ok(())
    }

    /// The name of the key pair of `tenant` whose public id is `public_id`.
    pub async fn key_pair_name(
        &self,
        tenant: &Tenant,
        p: &Provider,
        public_id: &str,
    ) -> Result<Option<String>, Error> {
        Ok(self.store.resolve(public_id).await?.and_then(|r| {
            (r.kind == Kind::KeyPair
                && *r.provider == *p.name
                && r.entry.tenant.as_deref() == Some(&*tenant.name))
            .then(|| shown_key_name(Some(&tenant.name), &r.backend_id).to_owned())
        }))
    }

    /// The backend name of the key pair a create names, after checking the tenant has
    /// it: `NotFound` naming the key otherwise.
    pub(super) async fn key_for_create(
        &self,
        tenant: &Tenant,
        p: &Provider,
        name: &str,
    ) -> Result<String, Error> {
        let backend = backend_key_name(&tenant.name, name);
        let keys = p.cloud.list_key_pairs().await?;
        if keys.iter().any(|k| k.name == backend) {
            Ok(backend)
        } else {
            Err(
                Error::new(ErrorKind::NotFound, format!("key pair `{name}` not found"))
                    .with_resource(format!("key pair {name}"))
                    .with_operation(Operation::CreateInstance)
                    .with_provider(p.name.to_string()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_per_tenant() {
        assert_eq!(backend_key_name("team-a", "web"), "team-a@web");
        assert_eq!(shown_key_name(Some("team-a"), "team-a@web"), "web");
        assert_eq!(shown_key_name(Some("team-a"), "team-b@web"), "team-b@web");
        assert_eq!(shown_key_name(Some("team"), "team-a@web"), "team-a@web");
        assert_eq!(shown_key_name(None, "web"), "web");
        assert!(check_key_name("", Operation::CreateKeyPair).is_err());
        assert!(check_key_name("a\u{1}b", Operation::CreateKeyPair).is_err());
        assert!(check_key_name(&"k".repeat(MAX_KEY_NAME + 1), Operation::CreateKeyPair).is_err());
        assert!(check_key_name(&"k".repeat(MAX_KEY_NAME), Operation::CreateKeyPair).is_ok());
        assert!(check_key_name("web key", Operation::CreateKeyPair).is_ok());
    }
}
