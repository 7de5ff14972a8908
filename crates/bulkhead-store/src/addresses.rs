//! Tenant addresses: one IPv4 address per tenant inside the platform's tenant range,
//! allocated here so that it is unique and stable across restarts. The caller picks the
//! address (the lowest free one, `bulkhead_node::net::allocate`); the table's UNIQUE
//! constraint is what makes two tenants never share one.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use rusqlite::{OptionalExtension, params};

use crate::Store;
use crate::time::now_rfc3339;

/// Why an address operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// The database failed (including: the address is already taken).
    #[error("tenant addresses ({tenant:?})")]
    Database {
        /// The tenant.
        tenant: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored value is not an IPv4 address.
    #[error("stored address {value:?} of tenant {tenant:?} is not an IPv4 address")]
    Corrupt {
        /// The tenant.
        tenant: String,
        /// The stored text.
        value: String,
    },
}

impl Store {
    /// Every tenant's address.
    pub fn tenant_addresses(&self) -> Result<BTreeMap<String, Ipv4Addr>, AddressError> {
        let db = |source| AddressError::Database {
            tenant: String::new(),
            source,
        };
        let mut statement = self
            .conn
            .prepare("SELECT tenant, address FROM tenant_addresses ORDER BY tenant")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(db)?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (tenant, value) = row.map_err(db)?;
            let address = value.parse().map_err(|_| AddressError::Corrupt {
                tenant: tenant.clone(),
                value: value.clone(),
            })?;
            out.insert(tenant, address);
        }
        Ok(out)
    }

    /// One tenant's address, if allocated.
    pub fn tenant_address(&self, tenant: &str) -> Result<Option<Ipv4Addr>, AddressError> {
        let value: Option<String> = self
            .conn
            .query_row(
                "SELECT address FROM tenant_addresses WHERE tenant = ?1",
                params![tenant],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| AddressError::Database {
                tenant: tenant.to_owned(),
                source,
            })?;
        value
            .map(|v| {
                v.parse().map_err(|_| AddressError::Corrupt {
                    tenant: tenant.to_owned(),
                    value: v.clone(),
                })
            })
            .transpose()
    }

    /// Records `address` for `tenant`. Idempotent for the same pair; fails if another
    /// tenant holds the address.
    pub fn assign_tenant_address(
        &mut self,
        tenant: &str,
        address: Ipv4Addr,
    ) -> Result<(), AddressError> {
        match self.tenant_address(tenant)? {
            Some(held) if held == address => return Ok(()),
            // An address is stable for the tenant's life: never a second one.
            Some(held) => {
                return Err(AddressError::Corrupt {
                    tenant: tenant.to_owned(),
                    value: format!("already holds {held}, asked to take {address}"),
                });
            }
            None => {}
        }
        self.conn
            .execute(
                "INSERT INTO tenant_addresses (tenant, address, created_at) VALUES (?1, ?2, ?3)",
                params![tenant, address.to_string(), now_rfc3339()],
            )
            .map(drop)
            .map_err(|source| AddressError::Database {
                tenant: tenant.to_owned(),
                source,
            })
    }

    /// Frees a tenant's address (offboarding). Returns whether it had one.
    pub fn release_tenant_address(&mut self, tenant: &str) -> Result<bool, AddressError> {
        self.conn
            .execute(
                "DELETE FROM tenant_addresses WHERE tenant = ?1",
                params![tenant],
            )
            .map(|n| n > 0)
            .map_err(|source| AddressError::Database {
                tenant: tenant.to_owned(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_stable_and_released() {
        let mut store = Store::open_in_memory().unwrap();
        let a = Ipv4Addr::new(10, 240, 0, 2);
        store.assign_tenant_address("web", a).unwrap();
        store.assign_tenant_address("web", a).unwrap();
        assert!(
            store.assign_tenant_address("db", a).is_err(),
            "an address has one tenant"
        );
        assert_eq!(store.tenant_address("web").unwrap(), Some(a));
        assert_eq!(store.tenant_addresses().unwrap().len(), 1);
        assert!(store.release_tenant_address("web").unwrap());
        assert_eq!(store.tenant_address("web").unwrap(), None);
        store.assign_tenant_address("db", a).unwrap();
    }
}
