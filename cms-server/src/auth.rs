//! Tenants, their roles and limits, and their credentials: API keys (native API) and
//! access key pairs (EC2 API). Frontends find the caller here; what a tenant may see
//! and do is the [service](crate::service)'s business.
//!
//! Keys are kept only as SHA-256 digests. A request's key is hashed, looked up by
//! digest, and the digest compared in constant time, so neither the lookup nor the
//! comparison tells an attacker how much of a guess was right.

use std::collections::HashMap;
use std::sync::Arc;

use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// What a tenant may see and do on its providers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Its own instances (those made for it), and nothing of other tenants.
    #[default]
    Member,
    /// Every instance of its providers, other tenants' and those made outside cms.
    Admin,
}

/// A tenant: who is calling, which providers (by index) it may use, its role and its
/// limits.
#[derive(Debug)]
pub struct Tenant {
    /// The tenant's name.
    pub name: Arc<str>,
    /// `allowed[i]`: whether it may use provider `i`.
    pub allowed: Vec<bool>,
    /// Its role.
    pub role: Role,
    /// At most this many instances on all providers.
    pub max_instances: Option<u32>,
    /// `max_instances_on[i]`: at most this many instances on provider `i`.
    pub max_instances_on: Vec<Option<u32>>,
    /// Its request rate limits.
    pub rate_limits: crate::limits::RateLimits,
}

impl Tenant {
    /// A member tenant that may use the first `providers` providers, without limits.
    pub fn member(name: &str, providers: usize) -> Tenant {
        Tenant {
            name: name.into(),
            allowed: vec![true; providers],
            role: Role::Member,
            max_instances: None,
            max_instances_on: vec![None; providers],
            rate_limits: crate::limits::RateLimits::default(),
        }
    }

    /// Whether it may use the provider with index `i`.
    pub fn may_use(&self, i: usize) -> bool {
        self.allowed.get(i).copied().unwrap_or(false)
    }

    /// Whether it sees every instance of its providers.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

type KeyDigest = [u8; 32];

fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// The tenants, found by API key (native API) or access key id (EC2 API).
#[derive(Debug, Default)]
pub struct Tenants {
    by_digest: HashMap<KeyDigest, usize>,
    by_access_key: HashMap<String, (Secret, usize)>,
    tenants: Vec<(KeyDigest, Tenant)>,
}

impl Tenants {
    /// Adds a tenant with an API key; fails when another tenant has the same key.
    pub fn add(&mut self, key: &Secret, tenant: Tenant) -> Result<(), String> {
        self.add_with(Some(key), None, tenant)
    }

    /// Adds a tenant with its API key and its EC2 access key pair (either may be
    /// absent); fails when another tenant has the same key or access key id.
    pub fn add_with(
        &mut self,
        key: Option<&Secret>,
        access: Option<(String, Secret)>,
        tenant: Tenant,
    ) -> Result<(), String> {
        // A tenant with no API key gets a digest nobody can present.
        let d = match key {
            Some(k) => digest(k.expose()),
            None => digest(&format!("\0no-api-key\0{}", self.tenants.len())),
        };
        if let Some(&i) = self.by_digest.get(&d) {
            return Err(format!(
                "tenants `{}` and `{}` have the same API key",
                self.tenants[i].1.name, tenant.name
            ));
        }
        if let Some((id, secret)) = access {
            if let Some((_, i)) = self.by_access_key.get(&id) {
                return Err(format!(
                    "tenants `{}` and `{}` have the same access key id",
                    self.tenants[*i].1.name, tenant.name
                ));
            }
            self.by_access_key.insert(id, (secret, self.tenants.len()));
        }
        if key.is_some() {
            self.by_digest.insert(d, self.tenants.len());
        }
        self.tenants.push((d, tenant));
        Ok(())
    }

    /// The secret access key and tenant of an access key id.
    pub fn by_access_key(&self, access_key_id: &str) -> Option<(&Secret, &Tenant)> {
        let (secret, i) = self.by_access_key.get(access_key_id)?;
        Some((secret, &self.tenants[*i].1))
    }

    /// The tenants.
    pub fn iter(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.iter().map(|(_, t)| t)
    }

    /// The tenant whose API key is `key`.
    pub fn by_api_key(&self, key: &str) -> Option<&Tenant> {
        let d = digest(key);
        match self.by_digest.get(&d) {
            Some(&i) if bool::from(self.tenants[i].0.ct_eq(&d)) => Some(&self.tenants[i].1),
            _ => None,
        }
    }
}

/// A fresh random development key (`cms-dev-` and 40 alphanumerics).
pub fn generate_key() -> Secret {
    let s: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    Secret::new(format!("cms-dev-{s}"))
}

/// A fresh random EC2 access key pair: an access key id (`AKCMS` and 15 upper-case
/// alphanumerics, 20 in all, as AWS's) and a 40-character secret.
pub fn generate_access_key() -> (String, Secret) {
    let mut rng = rand::thread_rng();
    let id: String = (0..15)
        .map(|_| {
            let c = rng.sample(Alphanumeric);
            char::from(c).to_ascii_uppercase()
        })
        .collect();
    let secret: String = (0..40)
        .map(|_| char::from(rng.sample(Alphanumeric)))
        .collect();
    (format!("AKCMS{id}"), Secret::new(secret))
}

/// The client token of an `Idempotency-Key`: a hash of the tenant and the key, so that
/// two tenants' keys never collide (37 characters).
pub fn client_token(tenant: &str, idempotency_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0u8]);
    h.update(idempotency_key.as_bytes());
    let d = h.finalize();
    let mut out = String::with_capacity(37);
    out.push_str("idem-");
    for b in &d[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticates_by_key() {
        let mut t = Tenants::default();
        let tenant = |n: &str| Tenant::member(n, 1);
        t.add(&Secret::new("k1"), tenant("a")).unwrap();
        t.add(&Secret::new("k2"), tenant("b")).unwrap();
        assert!(t.add(&Secret::new("k2"), tenant("c")).is_err());
        assert_eq!(&*t.by_api_key("k2").unwrap().name, "b");
        assert_eq!(&*t.by_api_key("k1").unwrap().name, "a");
        assert!(t.by_api_key("k3").is_none());
    }

    #[test]
    fn client_tokens_differ_by_tenant() {
        let a = client_token("a", "key");
        assert_eq!(a.len(), 37);
        assert_eq!(a, client_token("a", "key"));
        assert_ne!(a, client_token("b", "key"));
        assert!(generate_key().expose().len() >= 32);
    }
}
