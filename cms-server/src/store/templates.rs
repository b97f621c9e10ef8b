//! Machine templates in `cms_templates`: what a tenant keeps to create machines from
//! on one provider (a frontend's document, opaque here).

use sqlx::Row;

use super::{err, now_ms, random_id, Store, StoreError};

/// One template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRow {
    /// `tpl-` and 17 hex digits.
    pub id: String,
    pub tenant: String,
    pub provider: String,
    pub name: String,
    /// What it holds (JSON, the frontend's).
    pub body: String,
    /// When it was made (ms since the epoch).
    pub created_at: i64,
}

/// The most templates one tenant keeps per provider.
pub const MAX_TEMPLATES: i64 = 1000;

const COLUMNS: &str = "id, tenant, provider, name, body, created_at";

fn row_to_template(r: &sqlx::any::AnyRow) -> Result<TemplateRow, sqlx::Error> {
    Ok(TemplateRow {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        provider: r.try_get(2)?,
        name: r.try_get(3)?,
        body: r.try_get(4)?,
        created_at: r.try_get(5)?,
    })
}

impl Store {
    /// Keeps a new template of `tenant` on `provider`; `None` when the tenant has
    /// [`MAX_TEMPLATES`] there already.
    pub async fn add_template(
        &self,
        tenant: &str,
        provider: &str,
        name: &str,
        body: &str,
    ) -> Result<Option<TemplateRow>, StoreError> {
        let row = TemplateRow {
            id: random_id("tpl-"),
            tenant: tenant.to_owned(),
            provider: provider.to_owned(),
            name: name.to_owned(),
            body: body.to_owned(),
            created_at: now_ms(),
        };
        // One statement: the count and the insert cannot be split by another writer.
        let done = sqlx::query(
            "INSERT INTO cms_templates (id, tenant, provider, name, body, created_at)
             SELECT $1, $2, $3, $4, $5, $6
             WHERE (SELECT COUNT(*) FROM cms_templates WHERE tenant = $2 AND provider = $3) < $7",
        )
        .bind(&row.id)
        .bind(&row.tenant)
        .bind(&row.provider)
        .bind(&row.name)
        .bind(&row.body)
        .bind(row.created_at)
        .bind(MAX_TEMPLATES)
        .execute(self.pool())
        .await
        .map_err(err("cannot keep a template"))?;
        Ok((done.rows_affected() == 1).then_some(row))
    }

    /// The template `id` of `tenant` on `provider`.
    pub async fn template(
        &self,
        tenant: &str,
        provider: &str,
        id: &str,
    ) -> Result<Option<TemplateRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM cms_templates WHERE id = $1 AND tenant = $2 AND provider = $3"
        ))
        .bind(id)
        .bind(tenant)
        .bind(provider)
        .fetch_optional(self.pool())
        .await
        .map_err(err("cannot read a template"))?;
        row.as_ref()
            .map(row_to_template)
            .transpose()
            .map_err(err("cannot read a template"))
    }

    /// Every template of `tenant` on `provider`, oldest first.
    pub async fn templates(
        &self,
        tenant: &str,
        provider: &str,
    ) -> Result<Vec<TemplateRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM cms_templates WHERE tenant = $1 AND provider = $2
             ORDER BY created_at, id"
        ))
        .bind(tenant)
        .bind(provider)
        .fetch_all(self.pool())
        .await
        .map_err(err("cannot read templates"))?;
        rows.iter()
            .map(row_to_template)
            .collect::<Result<_, _>>()
            .map_err(err("cannot read templates"))
    }

    /// Forgets the template `id` of `tenant` on `provider`; whether there was one.
    pub async fn delete_template(
        &self,
        tenant: &str,
        provider: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM cms_templates WHERE id = $1 AND tenant = $2 AND provider = $3",
        )
        .bind(id)
        .bind(tenant)
        .bind(provider)
        .execute(self.pool())
        .await
        .map_err(err("cannot delete a template"))?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    #[tokio::test]
    async fn templates_are_kept_per_tenant_and_provider() {
        for db in testing::all("templates").await {
            let s = Store::open(&db.url).await.unwrap();
            let what = crate::store::redact(&db.url);
            let t = s
                .add_template("alice", "local", "small", "{}")
                .await
                .unwrap()
                .unwrap();
            assert!(t.id.starts_with("tpl-"), "{what}");
            assert_eq!(
                s.template("alice", "local", &t.id).await.unwrap(),
                Some(t.clone())
            );
            assert_eq!(
                s.template("bob", "local", &t.id).await.unwrap(),
                None,
                "{what}"
            );
            assert_eq!(
                s.template("alice", "other", &t.id).await.unwrap(),
                None,
                "{what}"
            );
            assert_eq!(
                s.templates("alice", "local").await.unwrap(),
                vec![t.clone()]
            );
            assert!(s.templates("bob", "local").await.unwrap().is_empty());
            assert!(!s.delete_template("bob", "local", &t.id).await.unwrap());
            assert!(s.delete_template("alice", "local", &t.id).await.unwrap());
            assert_eq!(s.template("alice", "local", &t.id).await.unwrap(), None);
            assert!(!s.delete_template("alice", "local", &t.id).await.unwrap());
        }
    }
}
