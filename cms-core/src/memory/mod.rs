//! The in-memory cloud: a complete cloud in the process, the embedded default.
//!
//! (Work in progress: the contract below is fixed; the implementation follows.)

use std::time::Duration;

use serde::Deserialize;

/// How the memory cloud behaves. Durations are given in milliseconds in
/// configuration files (`boot_delay_ms = 500`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Pending -> Running.
    #[serde(rename = "boot_delay_ms", with = "millis")]
    pub boot_delay: Duration,
    /// Stopping -> Stopped.
    #[serde(rename = "stop_delay_ms", with = "millis")]
    pub stop_delay: Duration,
    /// Pending (after start) -> Running.
    #[serde(rename = "start_delay_ms", with = "millis")]
    pub start_delay: Duration,
    /// Rebooting -> Running.
    #[serde(rename = "reboot_delay_ms", with = "millis")]
    pub reboot_delay: Duration,
    /// Terminating -> Terminated.
    #[serde(rename = "terminate_delay_ms", with = "millis")]
    pub terminate_delay: Duration,
    /// How long a terminated instance stays visible (EC2 keeps them about an hour).
    #[serde(rename = "terminated_retention_ms", with = "millis")]
    pub terminated_retention: Duration,
    /// Page size when the caller gives none.
    pub default_page_size: u32,
    /// The largest page; larger requests are cut to it.
    pub max_page_size: u32,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            boot_delay: Duration::from_millis(500),
            stop_delay: Duration::from_millis(300),
            start_delay: Duration::from_millis(300),
            reboot_delay: Duration::from_millis(300),
            terminate_delay: Duration::from_millis(300),
            terminated_retention: Duration::from_secs(600),
            default_page_size: 100,
            max_page_size: 1000,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
