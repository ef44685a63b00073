//! Per-instance resource limiter: caps linear memory, tables and instances, and remembers that
//! it refused a growth so a trap that follows can be reported as out-of-memory rather than as an
//! anonymous `unreachable`.

use wasmtime::ResourceLimiter;

/// Table elements an instance may hold (function tables of real plugins are a few thousand).
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Core instances, tables and memories a component may create (a wasip2 component has a few).
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;

/// The limiter stored in each instance's store data.
#[derive(Debug)]
pub struct Limiter {
    memory_bytes: u64,
    denied: bool,
}

impl Limiter {
    pub fn new(memory_bytes: u64) -> Self {
        Self {
            memory_bytes,
            denied: false,
        }
    }

    /// Whether a growth was refused since the last reset.
    pub fn denied(&self) -> bool {
        self.denied
    }

    pub fn limit_bytes(&self) -> u64 {
        self.memory_bytes
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let over_cap = desired as u64 > self.memory_bytes;
        let over_max = maximum.is_some_and(|m| desired > m);
        if over_cap || over_max {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS || maximum.is_some_and(|m| desired > m) {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
