//! Every wait, interval and grace period the operator uses, in one place, with defaults.
//! Each is a setting (a `tgp run` flag), never a constant buried in the lifecycle.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Identifies this cluster in ownership tags; garbage collection only ever touches
    /// instances carrying it.
    pub cluster_id: String,
    /// Re-verify a ready instance this often.
    pub health_interval: Duration,
    /// Poll a launching instance this often.
    pub verify_interval: Duration,
    /// An instance id that stays not-found this long after launch is a silent launch failure.
    pub not_found_grace: Duration,
    /// An instance that is not running this long after launch is abandoned.
    pub boot_timeout: Duration,
    /// Hours of runway a provider's balance must cover to be launched on (minimum billable
    /// period), in seconds.
    pub min_billable: Duration,
    /// Garbage collection runs this often.
    pub gc_interval: Duration,
    /// An owned instance with no request is terminated only after it was seen orphaned this long.
    pub gc_grace: Duration,
    /// First retry delay after an error; doubles up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Re-check terminating instances this often.
    pub terminate_interval: Duration,
    /// Most launch attempts for one request before it fails.
    pub max_attempts: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster_id: "default".into(),
            health_interval: Duration::from_secs(60),
            verify_interval: Duration::from_secs(5),
            not_found_grace: Duration::from_secs(60),
            boot_timeout: Duration::from_secs(15 * 60),
            min_billable: Duration::from_secs(3600),
            gc_interval: Duration::from_secs(120),
            gc_grace: Duration::from_secs(300),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            terminate_interval: Duration::from_secs(5),
            max_attempts: 8,
        }
    }
}
