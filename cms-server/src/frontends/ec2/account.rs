//! The account: DescribeAccountAttributes.

use super::actions::{caps, MAX_LAUNCH};
use super::error::{Ec2Error, Result};
use super::xml::Xml;
use super::Call;
use crate::service::Kind;

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
    let attrs: [(&str, Vec<String>); 6] = [
        ("supported-platforms", vec!["VPC".into()]),
        ("default-vpc", vec![default_vpc]),
        ("max-instances", vec![MAX_LAUNCH.to_string()]),
        ("vpc-max-security-groups-per-interface", vec!["0".into()]),
        ("max-elastic-ips", vec!["0".into()]),
        ("vpc-max-elastic-ips", vec!["0".into()]),
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
