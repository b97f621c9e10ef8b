//! The driver reads every answer sample of the OpenStack API reference it has a reader
//! for: every Nova server, flavor, key pair and availability-zone sample of every
//! microversion, Glance images and Neutron networks and subnets (the samples sit in
//! `../shared/reference/openstack/` beside the checkout).

use std::path::{Path, PathBuf};

use cms_driver_openstack::model::{
    self, Flavors, GlanceImage, GlanceImages, KeyPairEntry, KeyPairs, NeutronNetworks, NovaFlavor,
    OneNetwork, OneServer, Servers, Subnets, Zones,
};
use serde_json::Value;

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/openstack")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

#[derive(Default, Debug)]
struct Counts {
    servers: usize,
    server: usize,
    flavors: usize,
    keypairs: usize,
    zones: usize,
    images: usize,
    networks: usize,
    subnets: usize,
}

#[test]
fn every_answer_sample_parses() {
    let root = reference();
    assert!(
        root.is_dir(),
        "the API reference samples are expected at {}",
        root.display()
    );
    let mut all = Vec::new();
    files(&root, &mut all);
    all.sort();
    let mut n = Counts::default();
    let mut failures = Vec::new();
    for path in &all {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.contains("-req") || name.ends_with("req.json") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let Ok(doc) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let has = |k: &str| doc.get(k).is_some();
        let result: Result<(), String> = (|| {
            let e = |e: serde_json::Error| e.to_string();
            if has("servers")
                && doc["servers"]
                    .get(0)
                    .is_some_and(|s| s.get("status").is_some())
            {
                let s: Servers = serde_json::from_value(doc.clone()).map_err(e)?;
                for server in &s.servers {
                    assert!(!server.id.is_empty());
                    let state = model::map_state(&server.status, server.task_state.as_deref());
                    // Only a server Nova itself cannot tell about (a down cell, 2.69) is
                    // unknown.
                    assert!(
                        state != cms_core::InstanceState::Unknown || server.status == "UNKNOWN",
                        "{}: status {}",
                        path.display(),
                        server.status
                    );
                }
                n.servers += 1;
            } else if has("server") && doc["server"].get("status").is_some() {
                let s: OneServer = serde_json::from_value(doc.clone()).map_err(e)?;
                assert!(!s.server.id.is_empty());
                // A server names its image (or "" when booted from a volume) and its
                // flavor by id (before 2.47) or by its copy's original_name.
                assert!(
                    s.server.flavor.id.is_some() || s.server.flavor.original_name.is_some(),
                    "{}: no flavor",
                    path.display()
                );
                n.server += 1;
            } else if has("flavors")
                && doc["flavors"]
                    .get(0)
                    .is_some_and(|f| f.get("vcpus").is_some())
            {
                let f: Flavors = serde_json::from_value(doc.clone()).map_err(e)?;
                assert!(f.flavors.iter().all(|f| f.vcpus > 0 && f.ram > 0));
                n.flavors += 1;
            } else if has("flavor") && doc["flavor"].get("vcpus").is_some() {
                let _: NovaFlavor = serde_json::from_value(doc["flavor"].clone()).map_err(e)?;
                n.flavors += 1;
            } else if has("keypairs") {
                let _: KeyPairs = serde_json::from_value(doc.clone()).map_err(e)?;
                n.keypairs += 1;
            } else if has("keypair") && doc["keypair"].get("fingerprint").is_some() {
                let _: KeyPairEntry = serde_json::from_value(doc.clone()).map_err(e)?;
                n.keypairs += 1;
            } else if has("availabilityZoneInfo") {
                let z: Zones = serde_json::from_value(doc.clone()).map_err(e)?;
                assert!(!z.zones.is_empty());
                n.zones += 1;
            } else if has("images")
                && doc["images"]
                    .get(0)
                    .is_some_and(|i| i.get("visibility").is_some())
            {
                let i: GlanceImages = serde_json::from_value(doc.clone()).map_err(e)?;
                assert!(i.images.iter().all(|i| !i.id.is_empty()));
                n.images += 1;
            } else if doc.get("visibility").is_some() && has("id") {
                let _: GlanceImage = serde_json::from_value(doc.clone()).map_err(e)?;
                n.images += 1;
            } else if has("networks") {
                let _: NeutronNetworks = serde_json::from_value(doc.clone()).map_err(e)?;
                n.networks += 1;
            } else if has("network") && doc["network"].get("id").is_some() {
                let _: OneNetwork = serde_json::from_value(doc.clone()).map_err(e)?;
                n.networks += 1;
            } else if has("subnets") {
                let _: Subnets = serde_json::from_value(doc.clone()).map_err(e)?;
                n.subnets += 1;
            }
            Ok(())
        })();
        if let Err(why) = result {
            failures.push(format!("{}: {why}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "samples the driver cannot read:\n{}",
        failures.join("\n")
    );
    println!("{n:?}");
    assert!(n.servers >= 5 && n.server >= 20, "{n:?}");
    assert!(n.flavors >= 4 && n.keypairs >= 2 && n.zones >= 1, "{n:?}");
    assert!(n.images >= 1 && n.networks >= 1 && n.subnets >= 1, "{n:?}");
}
