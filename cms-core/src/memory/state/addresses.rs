//! Public addresses, as EC2's Elastic IPs in a VPC: allocated from 203.0.113.0/24
//! (TEST-NET-3), associated with one private address of a running or stopped
//! instance, moved from instance to instance, released when not associated.
//!
//! One private address leads from at most one public address: associating another
//! with it takes the place of the first, which is then not associated (as EC2 does).
//! Deleting an instance disassociates its addresses at once.

use std::net::Ipv4Addr;

use tokio::time::Instant;

use super::family::Owned;
use super::{parse_instance_id, State};
use crate::model::*;
use crate::{Error, ErrorKind, Operation, Result};

#[derive(Debug)]
pub(super) struct AddressRecord {
    /// The address as shown; association included.
    pub(super) address: Address,
    ip: u32,
}

impl Owned for AddressRecord {
    fn owner(&self) -> Option<&str> {
        self.address.owner.as_deref()
    }
}

impl State {
    pub(in crate::memory) fn get_address(&self, id: &AddressId) -> Result<Address> {
        self.addresses
            .get(id)
            .map(|r| r.address.clone())
            .ok_or_else(|| Error::not_found("address", id).with_operation(Operation::GetAddress))
    }

    pub(in crate::memory) fn list_addresses(
        &self,
        filter: &AddressFilter,
        page: &PageRequest,
        limit: usize,
    ) -> Result<Page<Address>> {
        self.addresses.page(
            &filter.ids,
            filter.owner.as_deref(),
            page,
            limit,
            Operation::ListAddresses,
            |id, r| {
                filter
                    .matches(id, r.owner(), &r.address.tags)
                    .then(|| r.address.clone())
            },
        )
    }

    /// Allocates an address: `QuotaExceeded` when the cloud holds `max_addresses`, or
    /// its range is used up.
    pub(in crate::memory) fn allocate_address(&mut self, spec: &AddressSpec) -> Result<Address> {
        let op = Operation::AllocateAddress;
        let limit = self.config.max_addresses;
        let quota = |why: String| {
            Error::new(ErrorKind::QuotaExceeded, why)
                .with_operation(op)
                .with_context("reason", "address_limit_exceeded")
        };
        if self.addresses.len() >= limit as usize {
            return Err(quota(format!(
                "the cloud holds {limit} addresses, all it may; release one first"
            )));
        }
        let ip = self.public_pool.take().ok_or_else(|| {
            quota("every public address of 203.0.113.0/24 is allocated; release one first".into())
        })?;
        let id = self.addresses.next_id();
        let address = Address {
            id: id.clone(),
            ip: Ipv4Addr::from(ip).to_string(),
            instance_id: None,
            private_ip: None,
            tags: spec.tags.clone(),
            owner: spec.owner.clone(),
        };
        self.addresses.insert(
            id,
            AddressRecord {
                address: address.clone(),
                ip,
            },
        );
        Ok(address)
    }

    /// Releases an address not associated with any instance.
    pub(in crate::memory) fn release_address(&mut self, id: &AddressId) -> Result<()> {
        let op = Operation::ReleaseAddress;
        let r = self
            .addresses
            .get(id)
            .ok_or_else(|| Error::not_found("address", id).with_operation(op))?;
        if let Some(i) = &r.address.instance_id {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "cannot release address `{id}` ({}): it is associated with instance \
                     `{i}`; disassociate it first",
                    r.address.ip
                ),
            )
            .with_operation(op)
            .with_resource(format!("address {id}")));
        }
        if let Some(r) = self.addresses.remove(id) {
            self.public_pool.give_back(r.ip);
        }
        Ok(())
    }

    /// Associates an address with a private address of a running or stopped
    /// instance (its first when `private_ip` is absent), moving it from wherever it
    /// was; the same place again answers it as it is.
    pub(in crate::memory) fn associate_address(
        &mut self,
        id: &AddressId,
        instance: &InstanceId,
        private_ip: Option<&str>,
        now: Instant,
    ) -> Result<Address> {
        let op = Operation::AssociateAddress;
        self.purge(now);
        let current = self
            .addresses
            .get(id)
            .ok_or_else(|| Error::not_found("address", id).with_operation(op))?
            .address
            .clone();
        let key = self
            .visible_instance(instance, now)
            .ok_or_else(|| Error::not_found("instance", instance).with_operation(op))?;
        let s = self
            .instances
            .get(&key)
            .ok_or_else(|| Error::not_found("instance", instance).with_operation(op))?;
        let state = s.phase.state(now);
        if !matches!(
            state,
            InstanceState::Running | InstanceState::Rebooting | InstanceState::Stopped
        ) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "cannot associate address `{id}` with instance `{instance}`: it is \
                     {state}; associate addresses with running or stopped instances"
                ),
            )
            .with_operation(op)
            .with_resource(format!("instance {instance}"))
            .with_context("state", state.as_str()));
        }
        let private = match private_ip {
            Some(p) => s
                .private_ips
                .iter()
                .find(|x| x.as_str() == p)
                .cloned()
                .ok_or_else(|| {
                    Error::invalid_argument(
                        "private_ip",
                        format!(
                            "`{p}` is not a private address of instance `{instance}` ({})",
                            s.private_ips.join(", ")
                        ),
                    )
                    .with_operation(op)
                })?,
            None => s.private_ips.first().cloned().ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidState,
                    format!("instance `{instance}` has no private address to lead to"),
                )
                .with_operation(op)
                .with_resource(format!("instance {instance}"))
            })?,
        };
        if current.instance_id.as_ref() == Some(instance)
            && current.private_ip.as_deref() == Some(private.as_str())
        {
            return Ok(current);
        }
        // Away from where it was, and whatever led to that private address goes.
        self.disassociate(id);
        let displaced: Vec<AddressId> = self
            .instances
            .get(&key)
            .and_then(|s| s.extras.as_deref())
            .map(|x| {
                x.addresses
                    .iter()
                    .filter(|a| {
                        self.addresses
                            .get(a)
                            .is_some_and(|r| r.address.private_ip.as_deref() == Some(&private))
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for a in &displaced {
            self.disassociate(a);
        }
        if let Some(x) = self.extras_mut(key) {
            x.addresses.push(id.clone());
        }
        let r = self
            .addresses
            .get_mut(id)
            .ok_or_else(|| Error::not_found("address", id).with_operation(op))?;
        r.address.instance_id = Some(instance.clone());
        r.address.private_ip = Some(private);
        Ok(r.address.clone())
    }

    /// Disassociates an address from its instance; one not associated answers as it is.
    pub(in crate::memory) fn disassociate_address(&mut self, id: &AddressId) -> Result<Address> {
        self.disassociate(id);
        self.addresses
            .get(id)
            .map(|r| r.address.clone())
            .ok_or_else(|| {
                Error::not_found("address", id).with_operation(Operation::DisassociateAddress)
            })
    }

    /// Takes an address from its instance, if it has one.
    fn disassociate(&mut self, id: &AddressId) {
        let Some(r) = self.addresses.get_mut(id) else {
            return;
        };
        r.address.private_ip = None;
        let Some(instance) = r.address.instance_id.take() else {
            return;
        };
        if let Some(x) = parse_instance_id(instance.as_str()).and_then(|k| {
            self.instances
                .get_mut(&k)
                .and_then(|s| s.extras.as_deref_mut())
        }) {
            x.addresses.retain(|a| a != id);
        }
    }

    /// Disassociates the addresses of an instance being deleted (its list of them
    /// already taken).
    pub(super) fn release_addresses(&mut self, addresses: &[AddressId]) {
        for id in addresses {
            if let Some(r) = self.addresses.get_mut(id) {
                r.address.instance_id = None;
                r.address.private_ip = None;
            }
        }
    }
}
