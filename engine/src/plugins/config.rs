//! Host-wide configuration: where compiled components are cached, how often the deadline clock
//! ticks, and whether instances come from wasmtime's pooling allocator.

use std::path::PathBuf;
use std::time::Duration;

/// Whether the engine uses wasmtime's pooling instance allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PoolingMode {
    /// Try the pooling allocator; fall back to on-demand allocation when its virtual memory
    /// reservation fails (constrained containers, `ulimit -v`).
    #[default]
    Auto,
    /// Require the pooling allocator; creating the host fails if it cannot be reserved.
    On,
    /// Allocate every instance on demand.
    Off,
}

/// Configuration of a [`crate::plugins::PluginHost`].
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Directory of the compile cache; `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Period of the epoch ticker that drives call deadlines and cooperative yields.
    pub epoch_tick: Duration,
    /// Instance allocation strategy.
    pub pooling: PoolingMode,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            epoch_tick: Duration::from_millis(10),
            pooling: PoolingMode::Auto,
        }
    }
}
