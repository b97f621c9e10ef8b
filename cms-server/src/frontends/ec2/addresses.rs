//! Elastic IP addresses: DescribeAddresses. cms allocates no addresses yet (its
//! account attributes say `max-elastic-ips` 0), so the answer is the empty set, and
//! an address or allocation asked for by name does not exist. Clients that look the
//! addresses of their instances up (Libcloud's `list_nodes` does, on every call) get
//! that answer rather than an error.

use super::actions::check_filters;
use super::error::{Ec2Error, Result};
use super::params::filters;
use super::xml::Xml;
use super::Call;

/// The filters of DescribeAddresses (all served: no address matches any).
const FILTERS: &[&str] = &[
    "allocation-id",
    "association-id",
    "domain",
    "instance-id",
    "network-border-group",
    "network-interface-id",
    "network-interface-owner-id",
    "private-ip-address",
    "public-ip",
    "tag-key",
];

pub(super) async fn describe_addresses(c: &Call<'_>) -> Result<String> {
    let fs = filters(&c.p)?;
    check_filters(&fs, FILTERS, &["tag:"])?;
    if let Some(ip) = c.p.list("PublicIp")?.first() {
        return Err(Ec2Error::new(
            "InvalidAddress.NotFound",
            400,
            format!("Address '{ip}' not found."),
        ));
    }
    if let Some(id) = c.p.list("AllocationId")?.first() {
        return Err(Ec2Error::new(
            "InvalidAllocationID.NotFound",
            400,
            format!("The allocation ID '{id}' does not exist"),
        ));
    }
    let mut x = Xml::response("DescribeAddresses", c.request_id, 256);
    x.empty("addressesSet");
    Ok(x.finish("DescribeAddresses"))
}
