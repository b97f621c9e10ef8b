//! Captured images: CreateImage and DeregisterImage (DescribeImages, which lists them
//! beside the shared catalogue, is in [`super::catalogue`]).
//!
//! An image a tenant captures is its own: private (`isPublic` false), owned by its
//! account id, `pending` until the backend's copy is done. The catalogue's images are
//! every tenant's to launch and no member's to deregister.

use cms_core::{ErrorKind, ImageSpec, ImageState, InstanceId, Operation};

use super::actions::{caps, check_shape, require, tag_specifications, IMAGE_CODES, INSTANCE_CODES};
use super::error::{mapped, Ec2Error, Result};
use super::xml::Xml;
use super::Call;
use crate::service::{InstanceRef, Kind, ObjectRef};

/// EC2's `imageState` of a cms image state.
pub(super) fn ec2_image_state(s: ImageState) -> &'static str {
    match s {
        ImageState::Pending | ImageState::Unknown => "pending",
        ImageState::Available => "available",
        ImageState::Error => "failed",
        ImageState::Deleted => "deregistered",
    }
}

/// Checks an AMI name by EC2's rule: 3 to 128 characters of letters, digits,
/// `( ) [ ] space . / - ' @ _`.
fn check_ami_name(name: &str) -> Result<()> {
    let ok = (3..=128).contains(&name.chars().count())
        && name.chars().all(|ch| {
            ch.is_ascii_alphanumeric()
                || matches!(
                    ch,
                    '(' | ')' | '[' | ']' | ' ' | '.' | '/' | '-' | '\'' | '@' | '_'
                )
        });
    if ok {
        Ok(())
    } else {
        Err(Ec2Error::new(
            "InvalidAMIName.Malformed",
            400,
            format!(
                "AMI name '{name}' is not valid: 3 to 128 characters of letters, digits and ( ) [ ] . / - ' @ _ or spaces"
            ),
        ))
    }
}

pub(super) async fn create_image(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).images.create, "capturing images")?;
    let instance = c.p.required("InstanceId")?;
    check_shape(&[instance], Kind::Instance, INSTANCE_CODES)?;
    let name = c.p.required("Name")?;
    check_ami_name(name)?;
    // EC2 reboots the instance for a consistent copy unless `NoReboot`; cms captures
    // as its backend does (the memory cloud copies without a reboot).
    c.p.bool("NoReboot")?;
    let tags = tag_specifications(&c.p, "image")?;
    let spec = ImageSpec {
        instance_id: InstanceId::new(""),
        name: name.to_owned(),
        description: c
            .p
            .get("Description")
            .filter(|d| !d.is_empty())
            .map(str::to_owned),
        tags,
        owner: None,
    };
    let made = c
        .service
        .create_image(c.tenant, c.provider, InstanceRef::Public(instance), &spec)
        .await
        .map_err(|e| {
            mapped(
                e,
                &[
                    (ErrorKind::AlreadyExists, "InvalidAMIName.Duplicate"),
                    (ErrorKind::InvalidState, "IncorrectInstanceState"),
                    (ErrorKind::QuotaExceeded, "ResourceLimitExceeded"),
                ],
            )
        })?;
    let mut x = Xml::response("CreateImage", c.request_id, 256);
    x.leaf("imageId", &made.entry().public_id);
    Ok(x.finish("CreateImage"))
}

pub(super) async fn deregister_image(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).images.delete, "deregistering images")?;
    let id = c.p.required("ImageId")?;
    check_shape(&[id], Kind::Image, IMAGE_CODES)?;
    // cms images keep no snapshots apart from themselves: there are none to delete.
    c.p.bool("DeleteAssociatedSnapshots")?;
    let image = c
        .service
        .image(
            c.tenant,
            c.provider,
            ObjectRef::Public(id),
            Operation::DeleteImage,
        )
        .await?;
    if image.item.shared && !c.tenant.is_admin() {
        return Err(Ec2Error::new(
            "UnauthorizedOperation",
            403,
            format!(
                "You are not authorized to deregister {id}: it is the provider's, shared by every tenant"
            ),
        ));
    }
    c.service
        .delete_image(c.tenant, c.provider, ObjectRef::Public(id))
        .await
        .map_err(|e| mapped(e, &[(ErrorKind::InvalidState, "InvalidAMIID.Unavailable")]))?;
    let mut x = Xml::response("DeregisterImage", c.request_id, 256);
    x.bool("return", true);
    Ok(x.finish("DeregisterImage"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ami_names_follow_ec2s_rule() {
        assert!(check_ami_name("web (v1) [prod]/2026-01-01 @x_y").is_ok());
        assert!(check_ami_name("ab").is_err());
        assert!(check_ami_name(&"a".repeat(129)).is_err());
        assert_eq!(
            check_ami_name("tab\there").unwrap_err().code,
            "InvalidAMIName.Malformed"
        );
    }
}
