//! Logging into the host's tracing, with `format!`-style macros.
//!
//! A plugin has no stdout the operator reads; everything worth knowing goes through the host's
//! `log.write`, which tags it with the provider's name. Use the macros:
//! `tgp_provider_sdk::info!("launched {id}")`. Never log a secret value (a plugin never has one;
//! placeholders are fine).

pub use crate::__bindings::tgp::provider::log::Level;

/// Writes one message at `level`. The macros call this.
pub fn write(level: Level, message: &str) {
    crate::host::log(level, message);
}

/// The lowercase name of a level, e.g. `"warn"`.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// Installs a panic hook that logs the panic (message and location) at error level, so the
/// operator sees why a call trapped. Idempotent; the export glue calls it before every call.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            write(Level::Error, &format!("provider plugin panicked: {info}"));
        }));
    });
}

/// Logs at trace level: `trace!("raw offer {offer:?}")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Trace, &::std::format!($($arg)+)) };
}

/// Logs at debug level: `debug!("GET {url}")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Debug, &::std::format!($($arg)+)) };
}

/// Logs at info level: `info!("launched {id}")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Info, &::std::format!($($arg)+)) };
}

/// Logs at warn level: `warn!("skipping offer {id}: {err}")`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Warn, &::std::format!($($arg)+)) };
}

/// Logs at error level: `error!("unexpected answer: {body}")`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Error, &::std::format!($($arg)+)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_are_lowercase() {
        assert_eq!(level_name(Level::Trace), "trace");
        assert_eq!(level_name(Level::Error), "error");
    }

    #[test]
    fn macros_format_natively_without_panicking() {
        let id = "i-1";
        crate::info!("launched {id}");
        crate::warn!("{} offers skipped", 2);
    }
}
