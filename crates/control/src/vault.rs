//! Target credentials at rest: each organisation's passwords are sealed with its own data key,
//! which is stored wrapped by the master key from configuration. Only the control plane holds
//! the master key; it opens a credential when it dispatches a session and sends it to the worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rdp_proxy_core::OrgId;
use rdp_proxy_secrets::{DataKey, MasterKey, WrappedKey};
use rdp_proxy_store::{CredentialSecret, OrgKey, OrgTx, Store, StoreError};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("credential storage: {0}")]
    Secrets(#[from] rdp_proxy_secrets::SecretsError),
    #[error("stored password is not UTF-8")]
    NotText,
}

/// Seals and opens credentials; caches unwrapped data keys per organisation.
#[derive(Clone)]
pub struct Vault {
    master: Arc<MasterKey>,
    keys: Arc<Mutex<HashMap<OrgId, DataKey>>>,
}

impl Vault {
    pub fn new(master: MasterKey) -> Self {
        Self {
            master: Arc::new(master),
            keys: Arc::default(),
        }
    }

    /// Seals a cluster secret (such as the CA's private key) under a fresh data key wrapped by
    /// the master key. Returns the master key id, the wrapped data key and the sealed bytes.
    pub(crate) fn seal_cluster_secret(&self, plaintext: &[u8]) -> (String, Vec<u8>, Vec<u8>) {
        let key = DataKey::generate();
        let wrapped = self.master.wrap(uuid::Uuid::nil(), &key);
        let sealed = key.seal(uuid::Uuid::nil(), uuid::Uuid::nil(), plaintext);
        (wrapped.master_key_id, wrapped.bytes, sealed)
    }

    /// Opens what [`Vault::seal_cluster_secret`] sealed.
    pub(crate) fn open_cluster_secret(
        &self,
        master_key_id: &str,
        wrapped: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let key = self.master.unwrap(
            uuid::Uuid::nil(),
            &WrappedKey {
                master_key_id: master_key_id.to_owned(),
                bytes: wrapped.to_vec(),
            },
        )?;
        Ok(key.open(uuid::Uuid::nil(), uuid::Uuid::nil(), sealed)?)
    }

    /// Returns the organisation's data key, creating and storing it on first use.
    async fn data_key(&self, tx: &mut OrgTx) -> Result<DataKey, VaultError> {
        let org = tx.org();
        if let Some(key) = self.keys.lock().unwrap_or_else(|poison| poison.into_inner()).get(&org) {
            return Ok(key.clone());
        }
        let (stored, committed) = match tx.org_key().await? {
            Some(stored) => (stored, true),
            None => {
                let fresh = self.master.wrap(org.0, &DataKey::generate());
                let stored = tx
                    .insert_org_key(&OrgKey {
                        master_key_id: fresh.master_key_id,
                        wrapped: fresh.bytes,
                    })
                    .await?;
                (stored, false)
            }
        };
        let key = self.master.unwrap(
            org.0,
            &WrappedKey {
                master_key_id: stored.master_key_id,
                bytes: stored.wrapped,
            },
        )?;
        // A key this transaction created is cached only once it is read back committed: if the
        // transaction rolls back, the next call creates and stores another one.
        if committed {
            self.keys
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .insert(org, key.clone());
        }
        Ok(key)
    }

    /// Encrypts `password` for credential `id` of the transaction's organisation.
    pub async fn seal(&self, tx: &mut OrgTx, id: uuid::Uuid, password: &str) -> Result<Vec<u8>, VaultError> {
        let key = self.data_key(tx).await?;
        Ok(key.seal(tx.org().0, id, password.as_bytes()))
    }

    /// Decrypts the password of a credential.
    pub async fn open(&self, tx: &mut OrgTx, secret: &CredentialSecret) -> Result<Zeroizing<String>, VaultError> {
        if let Some(legacy) = &secret.legacy_password {
            return Ok(Zeroizing::new(legacy.clone()));
        }
        let sealed = secret.sealed.as_deref().unwrap_or_default();
        let key = self.data_key(tx).await?;
        let plain = key.open(tx.org().0, secret.id, sealed)?;
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::NotText)?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    /// Seals every password stored in clear by the first schema version, in every organisation.
    /// Returns how many were sealed.
    pub async fn seal_legacy(&self, store: &Store) -> Result<usize, VaultError> {
        let mut sealed = 0;
        for org in store.org_ids().await? {
            let mut tx = store.org_tx(org).await?;
            for secret in tx.legacy_credentials().await? {
                let Some(password) = &secret.legacy_password else {
                    continue;
                };
                let blob = self.seal(&mut tx, secret.id, password).await?;
                tx.update_credential(secret.id, None, None, None, Some(&blob)).await?;
                sealed += 1;
            }
            tx.commit().await?;
        }
        Ok(sealed)
    }
}
