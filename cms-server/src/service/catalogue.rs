//! What every tenant of a provider shares: flavors, networks and locations, and the
//! public ids of shared objects (images are in [`super::resources`]: tenants capture
//! their own).

use std::sync::Arc;

use cms_core::{Error, Instance, InstanceFilter};
use cms_core::{Flavor, Location, Network, NetworkId, NetworkSpec, Page, PageRequest};

use super::{Provider, Service};
use crate::auth::Tenant;
use crate::store::Kind;

/// How long flavors read from a backend are used before they are read again.
const FLAVORS_KEPT: std::time::Duration = std::time::Duration::from_secs(60);

impl Service {
    /// One page of flavors.
    pub async fn list_flavors(
        &self,
        p: &Provider,
        page: &PageRequest,
    ) -> Result<Page<Flavor>, Error> {
        p.cloud.list_flavors(page).await
    }

    /// Every flavor. They are read from the backend at most once a minute: a
    /// backend's sizes change rarely, and the frontends need them on hot paths (every
    /// CIMI machine shows its CPUs and memory, every EC2 launch checks its type).
    pub async fn collect_flavors(&self, p: &Provider) -> Result<Vec<Flavor>, Error> {
        if let Some((at, flavors)) = &*p.flavors.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < FLAVORS_KEPT {
                return Ok(flavors.to_vec());
            }
        }
        let flavors = p.cloud.collect_flavors().await?;
        *p.flavors.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), flavors.as_slice().into()));
        Ok(flavors)
    }

    /// One page of networks.
    pub async fn list_networks(
        &self,
        p: &Provider,
        page: &PageRequest,
    ) -> Result<Page<Network>, Error> {
        p.cloud.list_networks(page).await
    }

    /// Every network.
    pub async fn collect_networks(&self, p: &Provider) -> Result<Vec<Network>, Error> {
        p.cloud.collect_networks().await
    }

    /// One network.
    pub async fn get_network(&self, p: &Provider, id: &NetworkId) -> Result<Network, Error> {
        p.cloud.get_network(id).await
    }

    /// Creates a network.
    pub async fn create_network(&self, p: &Provider, spec: &NetworkSpec) -> Result<Network, Error> {
        cms_core::check_network_spec(spec).map_err(|e| e.with_provider(p.name.to_string()))?;
        p.cloud.create_network(spec).await
    }

    /// Deletes a network.
    pub async fn delete_network(&self, p: &Provider, id: &NetworkId) -> Result<(), Error> {
        p.cloud.delete_network(id).await
    }

    /// Every location.
    pub async fn list_locations(&self, p: &Provider) -> Result<Vec<Location>, Error> {
        p.cloud.list_locations().await
    }

    /// The public ids of shared objects (images, networks as subnets or VPCs), in order.
    pub async fn public_ids(
        &self,
        p: &Provider,
        kind: Kind,
        backend_ids: &[&str],
    ) -> Result<Vec<Arc<str>>, Error> {
        Ok(self.store.catalogue_ids(&p.name, kind, backend_ids).await?)
    }

    /// The backend ids of shared objects by their public ids, in order; the public ids
    /// naming nothing of `kind` on `p` are the error.
    pub async fn resolve_public(
        &self,
        p: &Provider,
        kind: Kind,
        public_ids: &[&str],
    ) -> Result<Result<Vec<Arc<str>>, Vec<String>>, Error> {
        let mut out = Vec::with_capacity(public_ids.len());
        let mut missing = Vec::new();
        for id in public_ids {
            match self.store.resolve(id).await? {
                Some(r) if r.kind == kind && *r.provider == *p.name => out.push(r.backend_id),
                _ => missing.push((*id).to_owned()),
            }
        }
        Ok(if missing.is_empty() {
            Ok(out)
        } else {
            Err(missing)
        })
    }

    /// Every instance `tenant` may see on each of its providers matching `filter`, the
    /// providers asked at once; a provider that fails or takes longer than `limit` is
    /// in the second list, with its error.
    pub async fn instances_everywhere<'a>(
        &'a self,
        tenant: &'a Tenant,
        filter: &InstanceFilter,
        limit: std::time::Duration,
    ) -> (Vec<(&'a Provider, Instance)>, Vec<(&'a Provider, Error)>) {
        let calls = self.providers_of(tenant).map(|p| async move {
            let r =
                tokio::time::timeout(limit, self.collect_instances(tenant, p, filter, false)).await;
            (p, r)
        });
        let mut items = Vec::new();
        let mut errors = Vec::new();
        for (p, r) in futures::future::join_all(calls).await {
            match r {
                Ok(Ok(list)) => items.extend(
                    list.into_iter()
                        .map(|o| (p, Arc::unwrap_or_clone(o.instance))),
                ),
                Ok(Err(e)) => errors.push((p, e)),
                Err(_) => errors.push((
                    p,
                    Error::new(
                        cms_core::ErrorKind::Timeout,
                        format!("no answer within {limit:?}"),
                    )
                    .with_operation(cms_core::Operation::ListInstances)
                    .with_provider(p.name.to_string()),
                )),
            }
        }
        (items, errors)
    }
}
