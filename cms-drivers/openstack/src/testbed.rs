//! Real OpenStack for tests (feature `fake`): Keystone, Placement, Glance, Neutron and
//! Nova with its fake virt driver, installed and started on 127.0.0.1 by the
//! workspace's `scripts/openstack` (see its header for what it installs and how long
//! it takes).
//!
//! The README's test command starts them once per run and hands their `clouds.yaml`
//! to every test process in `CMS_TEST_OPENSTACK`; a test process started without it
//! (`cargo test` alone) starts its own, once, stopped when the process ends.
//!
//! The clouds.yaml holds the cloud `cms-demo` (project and user `demo`, the tests'
//! tenant) and `cms-admin`. The cloud has the flavors `m1.tiny` and `m1.small`, the
//! image `cirros` and the shared network `private` (10.0.0.0/24); Nova, Glance and
//! Neutron answer at most 3 items a page, so that listings really page.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The cloud the tests act as.
pub const CLOUD: &str = "cms-demo";
/// The image, flavor and network the set-up makes.
pub const IMAGE: &str = "cirros";
pub const FLAVOR: &str = "m1.tiny";
pub const NETWORK: &str = "private";

/// The workspace's root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The clouds.yaml of the run's real OpenStack, starting it the first time when the
/// run did not (progress on stderr).
pub fn clouds_yaml() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("CMS_TEST_OPENSTACK").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let dir = std::env::temp_dir().join(format!("cms-openstack-{}", std::process::id()));
        let script = workspace().join("scripts/openstack");
        eprintln!("starting OpenStack for this test process (scripts/openstack)…");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(&dir)
            .arg("--watch")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} start failed ({}); see its output above",
            script.display(),
            out.status
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// The python of the workspace's `.venv` (Libcloud, openstacksdk, boto3…, pinned),
/// after `scripts/python-env` made sure it is installed (it does nothing when it is).
pub fn python() -> PathBuf {
    let script = workspace().join("scripts/python-env");
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}); see its output above",
        script.display(),
        out.status
    );
    let venv = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let venv = if venv.is_empty() {
        workspace().join(".venv")
    } else {
        PathBuf::from(venv)
    };
    venv.join("bin/python")
}

/// The bin folder of `.venv-openstack` (python-openstackclient and openstacksdk,
/// pinned), made by `scripts/openstack`.
pub fn venv_bin() -> PathBuf {
    let _ = clouds_yaml();
    workspace().join(".venv-openstack/bin")
}
