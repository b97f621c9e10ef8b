//! Idempotency keys of clients (EC2 `ClientToken`, the native `Idempotency-Key`) in
//! `cms_client_tokens`: the first request with a key claims it with a hash of what it
//! asked for and the reservation its instances belong to; a repeat finds both.

use sqlx::Row;

use super::{err, now_secs, Store, StoreError};

/// What a client token was first used for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaim {
    /// The reservation of the first request with this token.
    pub reservation: String,
    /// Whether this request's hash equals the first one's.
    pub same_request: bool,
}

impl Store {
    /// Claims `token` for a request of `request_hash` whose reservation would be
    /// `reservation`; answers the first claim's reservation, and whether the request
    /// is the same.
    pub async fn claim_token(
        &self,
        tenant: &str,
        provider: &str,
        token: &str,
        request_hash: &str,
        reservation: &str,
    ) -> Result<TokenClaim, StoreError> {
        sqlx::query(
            "INSERT INTO cms_client_tokens (tenant, provider, token, request_hash, reservation, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(provider)
        .bind(token)
        .bind(request_hash)
        .bind(reservation)
        .bind(now_secs())
        .execute(self.pool())
        .await
        .map_err(err("cannot write a client token"))?;
        let row = sqlx::query(
            "SELECT request_hash, reservation FROM cms_client_tokens
             WHERE tenant = $1 AND provider = $2 AND token = $3",
        )
        .bind(tenant)
        .bind(provider)
        .bind(token)
        .fetch_one(self.pool())
        .await
        .map_err(err("cannot read a client token"))?;
        let hash: String = row
            .try_get("request_hash")
            .map_err(err("cannot read a client token"))?;
        let first: String = row
            .try_get("reservation")
            .map_err(err("cannot read a client token"))?;
        Ok(TokenClaim {
            reservation: first,
            same_request: hash == request_hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    #[tokio::test]
    async fn the_first_claim_wins() {
        for db in testing::all("tokens").await {
            let store = Store::open(&db.url).await.unwrap();
            let claim = store
                .claim_token("t1", "p", "tok", "h1", "r-1")
                .await
                .unwrap();
            assert!(claim.same_request);
            drop(store);
            let store = Store::open(&db.url).await.unwrap();
            let claim = store
                .claim_token("t1", "p", "tok", "h2", "r-2")
                .await
                .unwrap();
            assert_eq!(claim.reservation, "r-1");
            assert!(!claim.same_request);
            let other = store
                .claim_token("t2", "p", "tok", "h2", "r-3")
                .await
                .unwrap();
            assert_eq!(
                (other.reservation.as_str(), other.same_request),
                ("r-3", true)
            );
        }
    }
}
