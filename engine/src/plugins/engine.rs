//! The one wasmtime `Engine` of the host and the epoch ticker thread that drives deadlines.
//!
//! Deadlines use epoch interruption: a dedicated OS thread (not a tokio task, so a starved
//! runtime cannot stop the clock) bumps the engine's epoch every tick, and each store's deadline
//! callback decides to yield or to stop the guest. The ticker lives as long as anything holding
//! a [`Ticker`] handle (the host and its plugins) and stops when the last one is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::config::{HostConfig, PoolingMode};
use super::error::HostError;

/// Builds the engine; returns it with whether the pooling allocator is in use.
pub fn build(cfg: &HostConfig) -> Result<(Engine, bool), HostError> {
    let mut config = base_config();
    match cfg.pooling {
        PoolingMode::Off => engine(&config).map(|e| (e, false)),
        PoolingMode::On => {
            config.allocation_strategy(pooling_strategy());
            engine(&config).map(|e| (e, true))
        }
        PoolingMode::Auto => {
            let mut pooled = base_config();
            pooled.allocation_strategy(pooling_strategy());
            match engine(&pooled) {
                Ok(e) => Ok((e, true)),
                Err(err) => {
                    tracing::warn!(error = %err, "pooling allocator unavailable, falling back to on-demand allocation");
                    engine(&config).map(|e| (e, false))
                }
            }
        }
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.parallel_compilation(true);
    config
}

fn pooling_strategy() -> InstanceAllocationStrategy {
    let mut pool = PoolingAllocationConfig::new();
    // Upper bounds across every plugin of the host; a wasip2 component holds a handful of core
    // instances (the program, the WASI adapter, shims).
    pool.total_component_instances(1000);
    pool.total_core_instances(5000);
    pool.total_memories(1000);
    pool.total_tables(2000);
    pool.total_stacks(1000);
    // Per-plugin caps are enforced by the store's limiter; this is the ceiling of a slot.
    pool.max_memory_size(1 << 30);
    InstanceAllocationStrategy::Pooling(pool)
}

fn engine(config: &Config) -> Result<Engine, HostError> {
    Engine::new(config).map_err(|e| HostError::Engine {
        message: format!("{e:#}"),
    })
}

/// Handle keeping the epoch ticker thread alive; the thread stops when the last handle drops.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts a thread that increments `engine`'s epoch every `tick`, skipping missed ticks.
    pub fn start(engine: Engine, tick: Duration) -> Result<Arc<Self>, HostError> {
        let tick = tick.max(Duration::from_millis(1));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tgp-epoch-ticker".into())
            .spawn(move || {
                let mut next = Instant::now() + tick;
                while !flag.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if now < next {
                        std::thread::park_timeout(next - now);
                        continue;
                    }
                    engine.increment_epoch();
                    next += tick;
                    if next <= now {
                        // We fell behind (suspended, overloaded): skip the missed ticks.
                        next = now + tick;
                    }
                }
            })
            .map_err(HostError::Ticker)?;
        Ok(Arc::new(Self {
            stop,
            thread: Some(thread),
        }))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
