//! Transactions bound to one organisation.

use rdp_proxy_core::OrgId;
use sqlx::{Postgres, Transaction};

use crate::{Store, StoreError};

/// The database role whose members the services log in as.
pub const SERVICE_ROLE: &str = "rdp_proxy_service";

/// A transaction that told PostgreSQL which organisation it works in. Row-level security shows
/// it that organisation's rows only, and refuses rows it writes for any other. Dropping it
/// without [`OrgTx::commit`] rolls back.
pub struct OrgTx {
    pub(crate) tx: Transaction<'static, Postgres>,
    pub(crate) org: OrgId,
}

impl OrgTx {
    pub fn org(&self) -> OrgId {
        self.org
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Returns the connection inside the transaction, for queries in this crate.
    pub(crate) fn conn(&mut self) -> &mut sqlx::PgConnection {
        &mut self.tx
    }
}

impl Store {
    /// Starts a transaction in `org`.
    pub async fn org_tx(&self, org: OrgId) -> Result<OrgTx, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT set_config('rdp_proxy.org_id', $1, true)")
            .bind(org.0.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(OrgTx { tx, org })
    }
}
