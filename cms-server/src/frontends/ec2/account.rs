//! The account: DescribeAccountAttributes.
//!
//! The limits are what the provider declares: `max-elastic-ips` and
//! `vpc-max-elastic-ips` are 0 where its driver cannot allocate addresses, and AWS's
//! default quota (5) where it can (a backend's own limit may be higher; past it,
//! AllocateAddress answers `AddressLimitExceeded`);
//! `vpc-max-security-groups-per-interface` is 0 where instances cannot be put in
//! groups, else AWS's default (5; cms itself sets no limit).

use super::actions::{caps, MAX_LAUNCH};
use super::error::{Ec2Error, Result};
use super::xml::Xml;
use super::Call;
use crate::service::Kind;

/// AWS's default quota of Elastic IPs per region, and of security groups per network
/// interface.
const AWS_DEFAULT_QUOTA: &str = "5";

pub(super) async fn describe_account_attributes(c: &Call<'_>) -> Result<String> {
    let wanted = c.p.list("AttributeName")?;
    let default_vpc = if caps(c).networks.list {
        let nets = c
            .service
            .collect_networks(c.provider)
            .await
            .map_err(|e| Ec2Error::from_core(&e, "InvalidParameterValue"))?;
        match nets.iter().find(|n| n.is_default) {
            Some(n) => c
                .service
                .public_ids(c.provider, Kind::Vpc, &[n.id.as_str()])
                .await?
                .remove(0)
                .to_string(),
            None => "none".to_owned(),
        }
    } else {
        "none".to_owned()
    };
    let limit = |declared: bool| if declared { AWS_DEFAULT_QUOTA } else { "0" };
    let addresses = limit(caps(c).addresses.allocate);
    let groups = limit(caps(c).instances.security_groups);
    let attrs: [(&str, Vec<String>); 6] = [
        ("supported-platforms", vec!["VPC".into()]),
        ("default-vpc", vec![default_vpc]),
        ("max-instances", vec![MAX_LAUNCH.to_string()]),
        ("vpc-max-security-groups-per-interface", vec![groups.into()]),
        ("max-elastic-ips", vec![addresses.into()]),
        ("vpc-max-elastic-ips", vec![addresses.into()]),
    ];
    for w in &wanted {
        if !attrs.iter().any(|(n, _)| n == w) {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({w}) for parameter AttributeName is invalid"
            )));
        }
    }
    let mut x = Xml::response("DescribeAccountAttributes", c.request_id, 1024);
    x.open("accountAttributeSet");
    for (n, values) in &attrs {
        if !wanted.is_empty() && !wanted.contains(n) {
            continue;
        }
        x.open("item")
            .leaf("attributeName", n)
            .open("attributeValueSet");
        for v in values {
            x.open("item").leaf("attributeValue", v).close("item");
        }
        x.close("attributeValueSet").close("item");
    }
    x.close("accountAttributeSet");
    Ok(x.finish("DescribeAccountAttributes"))
}
