//! What the frontends keep beside an object, by its public id:
//!
//! - attributes (`cms_attributes`): facts a backend does not give back, written with
//!   the object's row ([`Record::attributes`](super::Record::attributes)): an
//!   instance's user data, a key pair's EC2 fingerprint and creation time;
//! - a tenant's own tags (`cms_tags`) on objects whose backend keeps none for it:
//!   shared images (each tenant tags them for itself, as each AWS account tags a
//!   public AMI for itself) and key pairs.
//!
//! Both go with the object when the store forgets it.

use std::collections::HashMap;
use std::sync::Arc;

use cms_core::{TagChanges, Tags};
use sqlx::{AnyConnection, Row};

use super::{err, placeholders, Store, StoreError, BATCH};

/// The attribute of an instance holding its user data, as text.
pub const USER_DATA: &str = "user_data";
/// The attribute of a key pair holding the fingerprint EC2 shows for it.
pub const FINGERPRINT: &str = "fingerprint";
/// The attribute of a key pair holding when it was made (RFC 3339).
pub const CREATED: &str = "created";

/// Sets an attribute (on a connection, inside the transaction that writes the row).
pub(crate) async fn set_attribute_on(
    conn: &mut AnyConnection,
    public_id: &str,
    name: &str,
    value: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cms_attributes (public_id, name, value) VALUES ($1, $2, $3)
         ON CONFLICT (public_id, name) DO UPDATE SET value = excluded.value",
    )
    .bind(public_id)
    .bind(name)
    .bind(value)
    .execute(&mut *conn)
    .await
    .map_err(err("cannot write an attribute"))?;
    Ok(())
}

/// Sets a tag of a tenant's own (on a connection, inside the transaction that writes
/// the row).
pub(crate) async fn set_tenant_tag_on(
    conn: &mut AnyConnection,
    tenant: &str,
    public_id: &str,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cms_tags (tenant, public_id, tag_key, tag_value) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant, public_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
    )
    .bind(tenant)
    .bind(public_id)
    .bind(key)
    .bind(value)
    .execute(&mut *conn)
    .await
    .map_err(err("cannot write tags"))?;
    Ok(())
}

impl Store {
    /// The attribute `name` of each of `public_ids` that has it.
    pub async fn attributes(
        &self,
        public_ids: &[&str],
        name: &str,
    ) -> Result<HashMap<Arc<str>, String>, StoreError> {
        let mut out = HashMap::new();
        for chunk in public_ids.chunks(BATCH) {
            let sql = format!(
                "SELECT public_id, value FROM cms_attributes
                 WHERE name = $1 AND public_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(name);
            for id in chunk {
                q = q.bind(*id);
            }
            let rows = q
                .fetch_all(self.pool())
                .await
                .map_err(err("cannot read attributes"))?;
            for row in rows {
                let id: String = row.try_get(0).map_err(err("cannot read attributes"))?;
                let value: String = row.try_get(1).map_err(err("cannot read attributes"))?;
                out.insert(Arc::from(id), value);
            }
        }
        Ok(out)
    }

    /// One attribute of one object.
    pub async fn attribute(
        &self,
        public_id: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self.attributes(&[public_id], name).await?.remove(public_id))
    }

    /// The tags `tenant` gave each of `public_ids` (those without any are absent).
    pub async fn tenant_tags(
        &self,
        tenant: &str,
        public_ids: &[&str],
    ) -> Result<HashMap<Arc<str>, Tags>, StoreError> {
        let mut out: HashMap<Arc<str>, Tags> = HashMap::new();
        for chunk in public_ids.chunks(BATCH) {
            let sql = format!(
                "SELECT public_id, tag_key, tag_value FROM cms_tags
                 WHERE tenant = $1 AND public_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(tenant);
            for id in chunk {
                q = q.bind(*id);
            }
            let rows = q
                .fetch_all(self.pool())
                .await
                .map_err(err("cannot read tags"))?;
            read_tags(rows, &mut out)?;
        }
        Ok(out)
    }

    /// Every tag `tenant` keeps on objects of `provider`, by public id (one query).
    pub async fn tenant_tags_on(
        &self,
        tenant: &str,
        provider: &str,
    ) -> Result<HashMap<Arc<str>, Tags>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.public_id, t.tag_key, t.tag_value FROM cms_tags t
             JOIN cms_objects o ON o.public_id = t.public_id
             WHERE t.tenant = $1 AND o.provider = $2",
        )
        .bind(tenant)
        .bind(provider)
        .fetch_all(self.pool())
        .await
        .map_err(err("cannot read tags"))?;
        let mut out = HashMap::new();
        read_tags(rows, &mut out)?;
        Ok(out)
    }

    /// Applies `changes` to the tags `tenant` gave each of `public_ids`, in one
    /// transaction: the model's tag rules ([`TagChanges::apply`]) are checked for
    /// every object before anything is written, so a refused change writes nothing.
    pub async fn change_tenant_tags(
        &self,
        tenant: &str,
        changes: &[(&str, TagChanges)],
    ) -> Result<Result<(), cms_core::Error>, StoreError> {
        let ids: Vec<&str> = changes.iter().map(|(id, _)| *id).collect();
        let current = self.tenant_tags(tenant, &ids).await?;
        let mut plans = Vec::with_capacity(changes.len());
        for (id, change) in changes {
            let before = current.get(*id).cloned().unwrap_or_default();
            match change.apply(&before) {
                Ok(after) => plans.push((*id, before, after)),
                Err(e) => return Ok(Err(e)),
            }
        }
        let mut conn = self
            .begin_tx(self.dialect().begin_write(), "write tags")
            .await?;
        let r: Result<(), StoreError> = async {
            for (id, before, after) in &plans {
                for key in before.keys().filter(|k| !after.contains_key(*k)) {
                    sqlx::query(
                        "DELETE FROM cms_tags WHERE tenant = $1 AND public_id = $2 AND tag_key = $3",
                    )
                    .bind(tenant)
                    .bind(*id)
                    .bind(key.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(err("cannot write tags"))?;
                }
                for (key, value) in after.iter().filter(|(k, v)| before.get(*k) != Some(*v)) {
                    set_tenant_tag_on(&mut conn, tenant, id, key, value).await?;
                }
            }
            Ok(())
        }
        .await;
        let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = conn.end(end).await;
        r?;
        ended.map_err(err("cannot commit tags"))?;
        Ok(Ok(()))
    }

    /// Removes the attributes and every tenant's tags of an object that is gone.
    pub async fn forget_details(&self, public_id: &str) -> Result<(), StoreError> {
        for sql in [
            "DELETE FROM cms_attributes WHERE public_id = $1",
            "DELETE FROM cms_tags WHERE public_id = $1",
        ] {
            sqlx::query(sql)
                .bind(public_id)
                .execute(self.pool())
                .await
                .map_err(err("cannot forget an object's details"))?;
        }
        Ok(())
    }
}

fn read_tags(
    rows: Vec<sqlx::any::AnyRow>,
    out: &mut HashMap<Arc<str>, Tags>,
) -> Result<(), StoreError> {
    for row in rows {
        let get = |i: usize| -> Result<String, StoreError> {
            row.try_get::<String, _>(i).map_err(err("cannot read tags"))
        };
        let (id, key, value) = (get(0)?, get(1)?, get(2)?);
        out.entry(Arc::from(id)).or_default().insert(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::super::{Kind, Record, Store};

    #[tokio::test]
    async fn attributes_and_tenant_tags_live_and_go_with_their_object() {
        for db in testing::all("details").await {
            let store = Store::open(&db.url).await.unwrap();
            let s = &store;
            let attrs = [("user_data", "#cloud-config\n"), ("other", "1")];
            let e = s
                .record(
                    "p",
                    Kind::KeyPair,
                    "team-a@web",
                    &Record {
                        tenant: Some("team-a"),
                        attributes: &attrs,
                        ..Record::default()
                    },
                )
                .await
                .unwrap();
            let id = &*e.public_id;
            assert_eq!(
                s.attribute(id, "user_data").await.unwrap().as_deref(),
                Some("#cloud-config\n"),
                "{}",
                db.url
            );
            assert_eq!(s.attribute(id, "nope").await.unwrap(), None);

            let set = cms_core::TagChanges::new()
                .set_tag("env", "prod")
                .set_tag("a", "1");
            s.change_tenant_tags("team-a", &[(id, set)])
                .await
                .unwrap()
                .unwrap();
            let again = cms_core::TagChanges::new()
                .set_tag("env", "dev")
                .remove_tag("a");
            s.change_tenant_tags("team-a", &[(id, again)])
                .await
                .unwrap()
                .unwrap();
            let mine = s.tenant_tags("team-a", &[id]).await.unwrap();
            assert_eq!(mine[id].len(), 1);
            assert_eq!(mine[id]["env"], "dev");
            assert!(s.tenant_tags("team-b", &[id]).await.unwrap().is_empty());
            // A refused change writes nothing.
            let bad = cms_core::TagChanges::new().set_tag("", "x");
            assert!(s
                .change_tenant_tags("team-a", &[(id, bad)])
                .await
                .unwrap()
                .is_err());
            assert_eq!(s.tenant_tags_on("team-a", "p").await.unwrap()[id].len(), 1);
            assert!(s.tenant_tags_on("team-a", "q").await.unwrap().is_empty());

            s.forget("p", Kind::KeyPair, "team-a@web").await.unwrap();
            assert_eq!(s.attribute(id, "user_data").await.unwrap(), None);
            assert!(s.tenant_tags_on("team-a", "p").await.unwrap().is_empty());
        }
    }
}
