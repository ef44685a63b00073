//! Wall-clock time, from the host: a component has no clock of its own.

/// Milliseconds since the Unix epoch, as the host sees it.
pub fn now_ms() -> u64 {
    crate::host::now_ms()
}
