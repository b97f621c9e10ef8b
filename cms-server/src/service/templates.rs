//! Machine templates a tenant keeps per provider: a frontend's document (what to
//! create a machine from), kept in the store and seen by its tenant only.

use cms_core::{Error, ErrorKind};

use super::{Provider, Service};
use crate::auth::Tenant;
use crate::store::templates::MAX_TEMPLATES;
use crate::store::TemplateRow;

impl Service {
    /// Keeps a template of `tenant` on `p`.
    pub async fn add_template(
        &self,
        tenant: &Tenant,
        p: &Provider,
        name: &str,
        body: &str,
    ) -> Result<TemplateRow, Error> {
        self.store
            .add_template(&tenant.name, &p.name, name, body)
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::QuotaExceeded,
                    format!(
                        "tenant {} keeps {MAX_TEMPLATES} templates on provider {} already; delete one first",
                        tenant.name, p.name
                    ),
                )
            })
    }

    /// The template `id` of `tenant` on `p`; another tenant's is "not found".
    pub async fn template(
        &self,
        tenant: &Tenant,
        p: &Provider,
        id: &str,
    ) -> Result<TemplateRow, Error> {
        self.store
            .template(&tenant.name, &p.name, id)
            .await?
            .ok_or_else(|| Error::not_found("machine template", id))
    }

    /// Every template of `tenant` on `p`, oldest first.
    pub async fn templates(
        &self,
        tenant: &Tenant,
        p: &Provider,
    ) -> Result<Vec<TemplateRow>, Error> {
        Ok(self.store.templates(&tenant.name, &p.name).await?)
    }

    /// Forgets the template `id` of `tenant` on `p`.
    pub async fn delete_template(
        &self,
        tenant: &Tenant,
        p: &Provider,
        id: &str,
    ) -> Result<(), Error> {
        if self
            .store
            .delete_template(&tenant.name, &p.name, id)
            .await?
        {
            Ok(())
        } else {
            Err(Error::not_found("machine template", id))
        }
    }
}
