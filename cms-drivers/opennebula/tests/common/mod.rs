//! Helpers shared by the tests: a fake oned with a driver on it, the reference data.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cms_core::{Cloud, Driver, InstanceId, InstanceState};
use cms_driver_opennebula::fake::{FakeConfig, FakeDelays, FakeOned};
use cms_driver_opennebula::{OpenNebulaConfig, OpenNebulaDriver, Size};

/// A fake whose life-cycle steps take 10 ms.
pub fn quick_config() -> FakeConfig {
    FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(10)),
        ..FakeConfig::default()
    }
}

/// The driver configuration for `oned`, with two sizes.
pub fn config_for(oned: &FakeOned) -> OpenNebulaConfig {
    let mut c = OpenNebulaConfig::new(&oned.endpoint(), oned.username(), "UNUSED_PASSWORD_VAR");
    c.sizes = vec![
        Size {
            name: "small".into(),
            cpu: 0.5,
            vcpu: 1,
            memory_mib: 1024,
        },
        Size {
            name: "large".into(),
            cpu: 2.0,
            vcpu: 4,
            memory_mib: 8192,
        },
    ];
    c.timeout_secs = 10;
    c
}

/// A driver on `oned` with `config`.
pub fn driver_with(oned: &FakeOned, config: OpenNebulaConfig) -> OpenNebulaDriver {
    OpenNebulaDriver::with_session(config, oned.username(), oned.password())
        .expect("a driver on the fake")
}

/// A fake and a driver on it.
pub fn start(config: FakeConfig) -> (FakeOned, OpenNebulaDriver) {
    let oned = FakeOned::start(config);
    let driver = driver_with(&oned, config_for(&oned));
    (oned, driver)
}

/// A cloud handle on the driver, provider `one`.
pub fn cloud(driver: OpenNebulaDriver) -> Cloud {
    Cloud::builder(driver).provider("one").build()
}

/// Polls until the instance is in `state`.
pub async fn wait(driver: &OpenNebulaDriver, id: &InstanceId, state: InstanceState) {
    for _ in 0..500 {
        if driver.get_instance(id).await.map(|i| i.state).ok() == Some(state) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("instance {id} did not become {state}");
}

/// The reference data folder: `$CMS_REFERENCE_DIR`, else `../shared/reference` from the
/// workspace root; `None` (with a note) when absent.
pub fn reference_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("CMS_REFERENCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference"),
    };
    if dir.join("opennebula/xsd/vm.xsd").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: the reference data is not at {} (set CMS_REFERENCE_DIR); \
             the OpenNebula schemas are needed for this test",
            dir.display()
        );
        None
    }
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cms-one-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// Writes `bytes` as a seed of the fuzz target `target` (a folder of `fuzz/seeds`)
/// when `CMS_FUZZ_SEEDS` names the seeds folder, as `scripts/fuzz seeds` does;
/// does nothing otherwise.
pub fn fuzz_seed(target: &str, name: &str, bytes: &[u8]) {
    let Some(root) = std::env::var_os("CMS_FUZZ_SEEDS") else {
        return;
    };
    let dir = PathBuf::from(root).join(target);
    std::fs::create_dir_all(&dir).expect("create the seeds folder");
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}
