//! What EC2 tells of one instance beyond DescribeInstances: DescribeInstanceAttribute
//! and GetConsoleOutput.

use base64::Engine as _;

use super::actions::{caps, check_shape, refs, require, Memo, INSTANCE_CODES, ROOT_DEVICE};
use super::error::{Ec2Error, Result};
use super::instances::{write_devices, write_groups, Related};
use super::xml::Xml;
use super::Call;
use crate::service::{InstanceRef, Kind};

/// Every attribute DescribeInstanceAttribute takes.
const ATTRIBUTES: &[&str] = &[
    "instanceType",
    "kernel",
    "ramdisk",
    "userData",
    "disableApiTermination",
    "instanceInitiatedShutdownBehavior",
    "rootDeviceName",
    "blockDeviceMapping",
    "productCodes",
    "sourceDestCheck",
    "groupSet",
    "ebsOptimized",
    "sriovNetSupport",
    "enaSupport",
    "enclaveOptions",
    "disableApiStop",
];

/// The instance id of a one-instance action, checked.
fn one_instance<'a>(c: &Call<'a>) -> Result<&'a str> {
    let id = c.p.required("InstanceId")?;
    check_shape(&[id], Kind::Instance, INSTANCE_CODES)?;
    Ok(id)
}

pub(super) async fn describe_instance_attribute(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).instances.get, "describing instances")?;
    let id = one_instance(c)?;
    let attribute = c.p.required("Attribute")?;
    if !ATTRIBUTES.contains(&attribute) {
        return Err(Ec2Error::invalid_value(format!(
            "Value ({attribute}) for parameter attribute is invalid. Unknown attribute (one of {}).",
            ATTRIBUTES.join(", ")
        )));
    }
    let o = c
        .service
        .instance(
            c.tenant,
            c.provider,
            InstanceRef::Public(id),
            cms_core::Operation::GetInstance,
        )
        .await?;
    let vm = &o.instance;
    let action = "DescribeInstanceAttribute";
    let mut x = Xml::response(action, c.request_id, 1024);
    x.leaf("instanceId", id);
    let value = |x: &mut Xml, tag: &str, v: &str| {
        x.open(tag).leaf("value", v).close(tag);
    };
    match attribute {
        "instanceType" => value(
            &mut x,
            "instanceType",
            vm.flavor_id.as_ref().map(|f| f.as_str()).unwrap_or(""),
        ),
        // hvm instances boot without a separate kernel or RAM disk.
        "kernel" | "ramdisk" | "sriovNetSupport" => {
            x.empty(attribute);
        }
        "userData" => match c.service.user_data(&o).await? {
            Some(u) if !u.is_empty() => value(
                &mut x,
                "userData",
                &base64::engine::general_purpose::STANDARD.encode(u.as_bytes()),
            ),
            _ => {
                x.empty("userData");
            }
        },
        "disableApiTermination" | "ebsOptimized" | "disableApiStop" | "enaSupport" => {
            value(&mut x, attribute, "false")
        }
        "sourceDestCheck" => value(&mut x, attribute, "true"),
        "instanceInitiatedShutdownBehavior" => value(&mut x, attribute, "stop"),
        "rootDeviceName" => value(&mut x, attribute, ROOT_DEVICE),
        "blockDeviceMapping" => {
            let launched = vm.created_at.as_ref().map(super::xml::time_text);
            let related = Related::of(c, &[vm]).await?;
            write_devices(&mut x, vm, o.entry(), launched.as_deref(), &related)
        }
        "productCodes" => {
            x.empty("productCodes");
        }
        "groupSet" => {
            let mut memo = Memo::default();
            let r = refs(c, vm, &mut memo).await?;
            let related = Related::of(c, &[vm]).await?;
            write_groups(&mut x, vm, &r, &related);
        }
        _ => {
            x.open("enclaveOptions")
                .bool("enabled", false)
                .close("enclaveOptions");
        }
    }
    Ok(x.finish(action))
}

pub(super) async fn get_console_output(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).instances.console_output, "console output")?;
    let id = one_instance(c)?;
    // `Latest` asks for the latest output (on Nitro instances); cms answers the latest
    // output it has either way.
    c.p.bool("Latest")?;
    let (_, out) = c
        .service
        .console_output(c.tenant, c.provider, InstanceRef::Public(id))
        .await?;
    let action = "GetConsoleOutput";
    let mut x = Xml::response(action, c.request_id, 512 + out.text.len() * 4 / 3);
    x.leaf("instanceId", id);
    let at = out.updated_at.unwrap_or_else(chrono::Utc::now);
    x.time("timestamp", &at);
    if !out.text.is_empty() {
        x.leaf(
            "output",
            &base64::engine::general_purpose::STANDARD.encode(out.text.as_bytes()),
        );
    }
    Ok(x.finish(action))
}
