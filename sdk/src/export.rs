//! Runtime support for the code [`crate::export_provider!`] generates.

/// Runs at the start of every exported call: makes sure panics are logged through the host.
pub fn enter() {
    crate::log::install_panic_hook();
}
