//! The only module that calls the host's imports (`http.send`, `log.write`, `config.*`,
//! `clock.now-ms`).
//!
//! Keeping every import call here gives the rest of the SDK plain Rust signatures, and lets the
//! SDK swap in inert stand-ins on non-wasm targets: wit-bindgen's native stubs would panic with
//! `unreachable!`, which would make a provider's logic impossible to unit-test with `cargo test`.
//! Natively: logs go to stderr, configuration is empty, HTTP is denied, time is the system clock.

use crate::http::{HttpError, Request, Response};
use crate::log::Level;

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use crate::__bindings::tgp::provider::{clock, config, http, log};

    pub fn send(req: Request) -> Result<Response, HttpError> {
        let req = http::Request {
            method: req.method,
            url: req.url,
            headers: req
                .headers
                .into_iter()
                .map(|(name, value)| http::Header { name, value })
                .collect(),
            body: req.body,
            timeout_ms: req.timeout_ms,
        };
        http::send(&req).map(|resp| Response {
            status: resp.status,
            headers: resp
                .headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            body: resp.body,
        })
    }

    pub fn log(level: Level, message: &str) {
        log::write(level, message);
    }

    /// The configuration, read from the host once per instance: the host fixes a plugin's
    /// configuration when it loads the plugin (a change loads it again, in new instances), so
    /// every later call reads this copy instead of crossing into the host and back.
    fn config() -> &'static [(String, String)] {
        static CONFIG: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
        CONFIG.get_or_init(config::all)
    }

    pub fn config_get(key: &str) -> Option<String> {
        config()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    pub fn config_all() -> Vec<(String, String)> {
        config().to_vec()
    }

    pub fn now_ms() -> u64 {
        clock::now_ms()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;

    pub fn send(req: Request) -> Result<Response, HttpError> {
        Err(HttpError::Denied(format!(
            "{} {}: HTTP goes through the tgp host, which only exists inside a wasm component",
            req.method, req.url
        )))
    }

    pub fn log(level: Level, message: &str) {
        eprintln!("[{}] {message}", crate::log::level_name(level));
    }

    pub fn config_get(_key: &str) -> Option<String> {
        None
    }

    pub fn config_all() -> Vec<(String, String)> {
        Vec::new()
    }

    pub fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

pub(crate) use imp::*;
