//! Turning a failed call into a typed [`CallError`].
//!
//! A trap carries little information by itself (`unreachable`, `interrupt`), so the host records
//! what it knows while the call runs: the deadline callback marks a timeout, the limiter marks a
//! refused growth, the HTTP import marks a capability denial, and the guest's stderr holds the
//! panic message. The classification reads those facts in that order.

use super::error::CallError;
use super::http::CapabilityDenied;

/// Facts recorded during one call.
pub struct CallFacts<'a> {
    pub timed_out: bool,
    pub call_timeout: std::time::Duration,
    pub memory_denied: bool,
    pub memory_limit: u64,
    pub capability_denied: Option<String>,
    pub stderr: &'a [u8],
}

/// Classifies the error of a call that did not return normally.
pub fn classify(err: &wasmtime::Error, facts: &CallFacts<'_>) -> CallError {
    if facts.timed_out {
        return CallError::Timeout {
            after: facts.call_timeout,
        };
    }
    if let Some(denied) = err.downcast_ref::<CapabilityDenied>() {
        return CallError::CapabilityDenied {
            what: denied.what.clone(),
        };
    }
    if let Some(what) = &facts.capability_denied {
        return CallError::CapabilityDenied { what: what.clone() };
    }
    if facts.memory_denied {
        return CallError::OutOfMemory {
            limit_bytes: facts.memory_limit,
        };
    }
    let stderr = String::from_utf8_lossy(facts.stderr);
    if let Some(message) = panic_message(&stderr) {
        return CallError::GuestPanic { message };
    }
    let message = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("{trap}"),
        None => format!("{err:#}"),
    };
    let tail = stderr.trim();
    if tail.is_empty() {
        CallError::Trap { message }
    } else {
        let tail: String = tail
            .chars()
            .rev()
            .take(500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        CallError::Trap {
            message: format!("{message}; guest stderr: {tail}"),
        }
    }
}

/// Extracts the message of a Rust panic from the guest's stderr: the text after the
/// `panicked at <location>:` line, up to the `note:` line std adds.
pub fn panic_message(stderr: &str) -> Option<String> {
    let idx = stderr.find("panicked at")?;
    let after = &stderr[idx..];
    let mut lines = after.lines();
    let first = lines.next().unwrap_or_default();
    // Older formats put the message on the same line: `panicked at 'msg', src/lib.rs:1:2`.
    let body: Vec<&str> = lines.take_while(|l| !l.starts_with("note:")).collect();
    let message = body.join("\n").trim().to_owned();
    if message.is_empty() {
        Some(first.trim_start_matches("panicked at").trim().to_owned())
    } else {
        let location = first
            .trim_start_matches("panicked at")
            .trim()
            .trim_end_matches(':');
        Some(format!("{message} (at {location})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rust_panic_output() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:88:24:\nboom went the plugin\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("boom went the plugin (at src/lib.rs:88:24)")
        );
        assert_eq!(panic_message("nothing here"), None);
    }
}
