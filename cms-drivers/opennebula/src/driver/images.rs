//! Images captured from instances, and deleting images.
//!
//! A capture is `one.vm.disksaveas` of the VM's first disk (DISK_ID 0, its root) into
//! a new OS image of the given name, in the datastore of the image the disk came from;
//! OpenNebula wants the VM RUNNING, POWEROFF or SUSPENDED (others: `InvalidState`) and
//! image names unique per user (a taken name: `AlreadyExists`). The new image is
//! LOCKED (`pending`) while the disk is copied, then READY (`available`).
//! `one.vm.disksaveas` takes no template, so the owner (`CMS_OWNER`), tags
//! (`CMS_TAGS`) and description are written into the new image's template right after
//! (`one.image.update`, merge mode); when that fails the image is deleted again, and a
//! crash between the two calls leaves an image without owner.
//!
//! `shared` is whether the image (or VM template) belongs to another OpenNebula user
//! than the driver's (the catalogue oneadmin publishes, a colleague's image): those
//! cannot be deleted through this account (`PermissionDenied`, without asking oned),
//! and show no owner. The user's own images are not shared; their owner is the
//! `CMS_OWNER` of their template (`None` for images made outside cms), and the instance
//! they were captured from is OpenNebula's `SAVED_VM_ID`.
//!
//! Deleting is `one.image.delete` (an image VMs use: `InvalidState`), or
//! `one.template.delete` for a VM template of the user's (its disk images stay).

use super::*;

use cms_core::ImageSpec;

impl OpenNebulaDriver {
    pub(crate) async fn capture(&self, spec: &ImageSpec) -> Result<Image> {
        cms_core::check_image_spec(spec)?;
        check_name("name", &spec.name, true)?;
        let vid = parse_oid(spec.instance_id.as_str())
            .ok_or_else(|| Error::not_found("instance", &spec.instance_id))?;
        let vm = self.vm_info(vid).await.map_err(|e| e.not_executed(true))?;
        let savable = (vm.state == ACTIVE && vm.lcm_state == 3) || matches!(vm.state, 5 | 8);
        if !savable {
            let state = map_state(vm.state, vm.lcm_state, vm.last_history().map(|h| h.action));
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "cannot capture an image of instance `{}`: it is {state} ({}); OpenNebula \
                     saves disks of RUNNING, POWEROFF or SUSPENDED VMs",
                    spec.instance_id,
                    raw_state(vm.state, vm.lcm_state)
                ),
            )
            .with_resource(format!("instance {}", spec.instance_id))
            .with_context("state", state.as_str())
            .temporary(state.is_transitional())
            .not_executed(true));
        }
        let root = vm
            .disks()
            .find(|d| d.parse::<i64>("DISK_ID") == Some(0))
            .filter(|d| d.non_empty("IMAGE_ID").is_some());
        if root.is_none() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "cannot capture an image of instance `{}`: its first disk is not made from \
                     an image, and OpenNebula saves only such disks",
                    spec.instance_id
                ),
            )
            .with_resource(format!("instance {}", spec.instance_id))
            .not_executed(true));
        }
        let id = self
            .call_id(
                "one.vm.disksaveas",
                &[
                    Value::Int(vid),
                    Value::Int(0),
                    Value::Str(spec.name.clone()),
                    Value::Str("OS".into()),
                    Value::Int(-1),
                ],
                &Target::vm(vid),
            )
            .await?;
        let mut attrs = Vec::new();
        if let Some(d) = spec.description.as_ref().filter(|d| !d.is_empty()) {
            attrs.push(Element::leaf("DESCRIPTION", d.clone()));
        }
        if let Some(o) = &spec.owner {
            attrs.push(Element::leaf(ATTR_OWNER, o.clone()));
        }
        if !spec.tags.is_empty() {
            attrs.push(Element::leaf(
                ATTR_TAGS,
                serde_json::to_string(&spec.tags).unwrap_or_default(),
            ));
        }
        if !attrs.is_empty() {
            let written = self
                .call(
                    "one.image.update",
                    &[
                        Value::Int(id),
                        Value::Str(template_xml(attrs)),
                        Value::Int(1),
                    ],
                    &Target::image(format!("image:{id}")),
                )
                .await;
            if let Err(e) = written {
                if let Err(d) = self
                    .call(
                        "one.image.delete",
                        &[Value::Int(id), Value::Bool(false)],
                        &Target::image(format!("image:{id}")),
                    )
                    .await
                {
                    tracing::warn!(image = id, error = %d, "cannot delete a capture left without its owner");
                }
                return Err(e);
            }
        }
        let img = self.image_info(id, &format!("image:{id}")).await?;
        Ok(self.image_of_disk(&img))
    }

    pub(crate) async fn delete_image_(&self, id: &ImageId) -> Result<()> {
        let me = self.inner.client.username().to_owned();
        let denied = |whose: &str| {
            Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "cannot delete image `{id}`: it is shared with this account (it belongs to \
                     OpenNebula user `{whose}`)"
                ),
            )
            .with_resource(format!("image {id}"))
        };
        match ImageRef::parse(id.as_str()) {
            None => Err(Error::not_found("image", id)),
            Some(ImageRef::Disk(i)) => {
                let img = self.image_info(i, id.as_str()).await?;
                if img.image_type != 0 {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "image `{id}` not found: it is a {} image, not a bootable OS image",
                            image_type_name(img.image_type)
                        ),
                    )
                    .with_resource(format!("image {id}")));
                }
                if img.uname != me {
                    return Err(denied(&img.uname));
                }
                self.call(
                    "one.image.delete",
                    &[Value::Int(i), Value::Bool(false)],
                    &Target::image(id),
                )
                .await?;
                Ok(())
            }
            Some(ImageRef::Template(t)) => {
                let tmpl = self.template_info(t, id.as_str()).await?;
                if tmpl.uname != me {
                    return Err(denied(&tmpl.uname));
                }
                self.call(
                    "one.template.delete",
                    &[Value::Int(t), Value::Bool(false)],
                    &Target::template(id),
                )
                .await?;
                Ok(())
            }
        }
    }
}
