//! The EC2 frontend's parsing of a request's parameters, without a service: what
//! [`crate::fuzz::ec2_query`] drives.

use super::actions::{self, COMMON};
use super::error::Result;
use super::params::{self, Params};
use super::{keymat, keys, security_groups, Action};

/// Parses `form` as the parameters of an EC2 request and reads them as the actions
/// do (action, unknown parameters, filters, lists, structures, numbers, flags, page
/// token, tag specifications, security rules, imported key material); whether every
/// read succeeded.
pub(crate) fn parse(form: &str) -> bool {
    match read(form) {
        Ok(()) => true,
        Err(e) => {
            // The error document carries the client's text: it must render.
            let _ = e.to_xml("fuzz");
            false
        }
    }
}

fn read(form: &str) -> Result<()> {
    let mut params = Params::default();
    params.add_form(form)?;
    let p = params.view();
    let action = p.get("Action").and_then(Action::from_name);
    if let Some(action) = action {
        let _ = params.unknown(&[COMMON, actions::parameters(action)]);
    }
    let fs = params::filters(&p)?;
    for f in &fs {
        let _ = f.matches(["running", "i-0123456789abcdef0"]);
        let _ = f.on_tags(&cms_core::Tags::from([("env".into(), "prod".into())]));
        for v in &f.values {
            let _ = params::wildcard(v, "web-1");
        }
    }
    p.list("InstanceId")?;
    p.int("MaxResults", 5..=1000)?;
    p.int("MinCount", 1..=actions::MAX_LAUNCH)?;
    p.bool("DryRun")?;
    actions::page_token(&p)?;
    // Tags for what the action makes.
    let made = match action {
        Some(Action::CreateVolume) => "volume",
        Some(Action::CreateSnapshot) => "snapshot",
        Some(Action::CreateImage) => "image",
        Some(Action::CreateSecurityGroup) => "security-group",
        Some(Action::AllocateAddress) => "elastic-ip",
        Some(Action::CreateKeyPair | Action::ImportKeyPair) => "key-pair",
        _ => "instance",
    };
    actions::tag_specifications(&p, made)?;
    for spec in p.structs("BlockDeviceMapping")? {
        spec.nested("Ebs").int("VolumeSize", 1..=16384)?;
    }
    // Security rules, in both forms (group names are resolved later, by the service).
    let _ = security_groups::parse_rules(&p);
    if let Some(material) = p.get("PublicKeyMaterial") {
        let _ = keymat::imported(&keys::material_text(material));
    }
    Ok(())
}
