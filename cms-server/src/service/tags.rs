//! A tenant's own tags on objects whose backend keeps none for it: the shared images
//! of a provider (each tenant tags them for itself, as each AWS account tags a public
//! AMI for itself; no tenant sees another's) and key pairs. They live in the store by
//! public id and go with the object.

use std::collections::HashMap;
use std::sync::Arc;

use cms_core::{Error, TagChanges, Tags};

use super::{Provider, Service};
use crate::auth::Tenant;

impl Service {
    /// The tags `tenant` gave each of `public_ids` (those with none are absent).
    pub async fn tenant_tags(
        &self,
        tenant: &Tenant,
        public_ids: &[&str],
    ) -> Result<HashMap<Arc<str>, Tags>, Error> {
        Ok(self.store.tenant_tags(&tenant.name, public_ids).await?)
    }

    /// Every tag `tenant` keeps on objects of `p`, by public id.
    pub async fn tenant_tags_on(
        &self,
        tenant: &Tenant,
        p: &Provider,
    ) -> Result<HashMap<Arc<str>, Tags>, Error> {
        Ok(self.store.tenant_tags_on(&tenant.name, &p.name).await?)
    }

    /// The attribute `name` of each of `public_ids` that has it (see
    /// [`crate::store::details`]).
    pub async fn attributes(
        &self,
        public_ids: &[&str],
        name: &str,
    ) -> Result<HashMap<Arc<str>, String>, Error> {
        Ok(self.store.attributes(public_ids, name).await?)
    }

    /// Changes the tags `tenant` keeps on objects (already checked to be ones it may
    /// tag): every change is checked by the model's tag rules before any is written.
    pub async fn change_tenant_tags(
        &self,
        tenant: &Tenant,
        changes: &[(&str, TagChanges)],
    ) -> Result<(), Error> {
        self.store.change_tenant_tags(&tenant.name, changes).await?
    }
}
