//! Elastic IP addresses (VPC): their operations, and the mapping of EC2's `Address`
//! to a cms address.

use aws_sdk_ec2::types as ec2;
use cms_core::{
    check_address_spec, Address, AddressFilter, AddressId, AddressSpec, Error, ErrorKind,
    InstanceId, InstanceState, Operation, Page, PageRequest, Result,
};

use crate::driver::{listing, Ec2Driver, MAX_PAGE};
use crate::model::{self, NameTag, OWNER_TAG};

/// An Elastic IP as a cms address; `None` without an allocation id (an EC2-Classic
/// address, which cms does not model).
pub(crate) fn address(a: &ec2::Address) -> Option<Address> {
    let id = a.allocation_id().filter(|i| !i.is_empty())?;
    let tags = a.tags();
    let instance_id = a
        .instance_id()
        .filter(|i| !i.is_empty())
        .map(InstanceId::new);
    Some(Address {
        id: AddressId::new(id),
        ip: a.public_ip().unwrap_or_default().to_owned(),
        private_ip: a
            .private_ip_address()
            .filter(|p| !p.is_empty() && instance_id.is_some())
            .map(str::to_owned),
        instance_id,
        tags: model::user_tags(tags),
        owner: model::tag_value(tags, OWNER_TAG)
            .filter(|o| !o.is_empty())
            .map(str::to_owned),
    })
}

impl Ec2Driver {
    /// DescribeAddresses has no pages on EC2: the whole answer is fetched (filters
    /// pushed down) and cut into cms pages.
    pub(crate) async fn addresses_page(
        &self,
        filter: &AddressFilter,
        page: &PageRequest,
    ) -> Result<Page<Address>> {
        let op = Operation::ListAddresses;
        let scope = format!("addresses|{filter:?}");
        let Some(filters) = model::resource_filters(filter, "allocation-id") else {
            model::Cursor::decode(page.token.as_ref(), &scope, op)?;
            return Ok(Page::last(Vec::new()));
        };
        let exact = model::pushed_down(filter);
        listing(
            &self.pages().addresses,
            &scope,
            page,
            MAX_PAGE,
            op,
            |_token, _limit| async move {
                let out = self
                    .ec2()
                    .describe_addresses()
                    .set_filters((!filters.is_empty()).then_some(filters))
                    .send()
                    .await
                    .map_err(self.fail(op, None))?;
                let mut items: Vec<Address> = out
                    .addresses()
                    .iter()
                    .filter_map(address)
                    .filter(|a| exact || filter.matches(&a.id, a.owner.as_deref(), &a.tags))
                    .collect();
                // A stable order across calls: EC2 gives none.
                items.sort_by(|a, b| a.id.cmp(&b.id));
                Ok((items, None))
            },
        )
        .await
    }

    async fn describe_address(&self, id: &AddressId, op: Operation) -> Result<ec2::Address> {
        let out = self
            .ec2()
            .describe_addresses()
            .allocation_ids(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(format!("address {id}"))))?;
        out.addresses()
            .iter()
            .find(|a| a.allocation_id() == Some(id.as_str()))
            .cloned()
            .ok_or_else(|| Error::not_found("address", id).with_operation(op))
    }

    pub(crate) async fn address_by_id(&self, id: &AddressId, op: Operation) -> Result<Address> {
        let a = self.describe_address(id, op).await?;
        address(&a).ok_or_else(|| Error::not_found("address", id).with_operation(op))
    }

    /// AllocateAddress in the VPC domain, tagged at once.
    pub(crate) async fn allocate(&self, spec: &AddressSpec) -> Result<Address> {
        let op = Operation::AllocateAddress;
        check_address_spec(spec)?;
        model::check_create_tags(&spec.tags, NameTag::Refused, op)?;
        let tags = model::create_tags(&spec.tags, None, spec.owner.as_deref(), &[]);
        let out = self
            .ec2()
            .allocate_address()
            .domain(ec2::DomainType::Vpc)
            .set_tag_specifications(model::tag_spec(ec2::ResourceType::ElasticIp, tags))
            .send()
            .await
            .map_err(self.fail(op, None))?;
        let id = out
            .allocation_id()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Backend,
                    "AllocateAddress answered no allocation id",
                )
                .with_operation(op)
            })?;
        Ok(Address {
            id: AddressId::new(id),
            ip: out.public_ip().unwrap_or_default().to_owned(),
            instance_id: None,
            private_ip: None,
            tags: spec.tags.clone(),
            owner: spec.owner.clone(),
        })
    }

    /// ReleaseAddress of an address not associated (EC2 refuses an associated one in a
    /// VPC; moto releases it anyway, so the driver looks first).
    pub(crate) async fn release(&self, id: &AddressId) -> Result<()> {
        let op = Operation::ReleaseAddress;
        let resource = format!("address {id}");
        let a = self.address_by_id(id, op).await?;
        if let Some(i) = &a.instance_id {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "address `{id}` ({}) is associated with instance `{i}`; disassociate it first",
                    a.ip
                ),
            )
            .with_operation(op)
            .with_resource(resource));
        }
        self.ec2()
            .release_address()
            .allocation_id(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(resource)))?;
        Ok(())
    }

    /// AssociateAddress with an instance that is running or stopped, at `private_ip`
    /// (one of the instance's) or its first private address, moving it from where it
    /// was (`AllowReassociation`). Already there: answered as it is.
    pub(crate) async fn associate(
        &self,
        id: &AddressId,
        instance: &InstanceId,
        private_ip: Option<&str>,
    ) -> Result<Address> {
        let op = Operation::AssociateAddress;
        let resource = format!("address {id}");
        let a = self.address_by_id(id, op).await?;
        let vm = self.describe_instance(instance, op).await?;
        if !matches!(vm.state, InstanceState::Running | InstanceState::Stopped) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "instance `{instance}` is {} (EC2 state `{}`); addresses are associated \
                     with running or stopped instances",
                    vm.state, vm.raw_state
                ),
            )
            .with_operation(op)
            .with_resource(format!("instance {instance}"))
            .with_context("state", vm.raw_state.clone()));
        }
        if let Some(ip) = private_ip {
            if !vm.private_ips.iter().any(|p| p == ip) {
                return Err(Error::invalid_argument(
                    "private_ip",
                    format!(
                        "`{ip}` is not a private address of instance `{instance}` ({})",
                        vm.private_ips.join(", ")
                    ),
                )
                .with_operation(op));
            }
        }
        let target = private_ip.or(vm.private_ips.first().map(String::as_str));
        if a.instance_id.as_ref() == Some(instance)
            && (target.is_none() || a.private_ip.as_deref() == target)
        {
            return Ok(a);
        }
        self.ec2()
            .associate_address()
            .allocation_id(id.as_str())
            .instance_id(instance.as_str())
            .set_private_ip_address(private_ip.map(str::to_owned))
            .allow_reassociation(true)
            .send()
            .await
            .map_err(self.fail(op, Some(resource)))?;
        self.address_by_id(id, op).await
    }

    /// DisassociateAddress; an address not associated answers as it is.
    pub(crate) async fn disassociate(&self, id: &AddressId) -> Result<Address> {
        let op = Operation::DisassociateAddress;
        let resource = format!("address {id}");
        let raw = self.describe_address(id, op).await?;
        let Some(a) = address(&raw) else {
            return Err(Error::not_found("address", id).with_operation(op));
        };
        if a.instance_id.is_none() && raw.association_id().is_none_or(str::is_empty) {
            return Ok(a);
        }
        let request = self.ec2().disassociate_address();
        let request = match raw.association_id().filter(|x| !x.is_empty()) {
            Some(assoc) => request.association_id(assoc),
            None => request.public_ip(a.ip.clone()),
        };
        request
            .send()
            .await
            .map_err(self.fail(op, Some(resource)))?;
        self.address_by_id(id, op).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_association_and_owner() {
        let a = ec2::Address::builder()
            .allocation_id("eipalloc-1")
            .public_ip("203.0.113.25")
            .instance_id("")
            .private_ip_address("10.0.0.5")
            .tags(model::tag(OWNER_TAG, "alice"))
            .build();
        let got = address(&a).unwrap();
        assert_eq!(got.instance_id, None);
        assert_eq!(got.private_ip, None);
        assert_eq!(got.owner.as_deref(), Some("alice"));
        assert!(got.tags.is_empty());
        let on = ec2::Address::builder()
            .allocation_id("eipalloc-1")
            .instance_id("i-1")
            .private_ip_address("10.0.0.5")
            .build();
        let got = address(&on).unwrap();
        assert_eq!(got.instance_id, Some(InstanceId::new("i-1")));
        assert_eq!(got.private_ip.as_deref(), Some("10.0.0.5"));
        assert!(address(&ec2::Address::builder().public_ip("1.2.3.4").build()).is_none());
    }
}
