//! Test hooks: a log of every request and injectable failures.
//!
//! Exists so tests can assert on the traffic the operator produced (method, path,
//! status) and exercise its error handling deterministically ("fail the next 2
//! writes to gpurequests/status with 500") without timing tricks.

use std::sync::Mutex;

use axum::http::Method;

use crate::error::ApiError;

/// One handled request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    /// Resource plural, when the path addressed a resource.
    pub resource: Option<String>,
    pub subresource: Option<String>,
    pub content_type: Option<String>,
    /// When the request was handled (its effect took place): orders it against other systems.
    pub handled_at: std::time::Instant,
}

/// Which requests a [`Fault`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerbMatch {
    Any,
    /// POST, PUT, PATCH, DELETE.
    Write,
    Method(&'static str),
}

/// An injected failure: the next `times` matching requests are answered with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub verb: VerbMatch,
    pub resource: Option<String>,
    /// `Some("")` matches only the main resource; `Some("status")` only `/status`.
    pub subresource: Option<String>,
    pub name: Option<String>,
    pub code: u16,
    pub message: String,
    pub times: usize,
}

impl Fault {
    /// A fault on requests of this verb kind, answering 500 once.
    pub fn on(verb: VerbMatch) -> Self {
        Fault {
            verb,
            resource: None,
            subresource: None,
            name: None,
            code: 500,
            message: "injected failure".into(),
            times: 1,
        }
    }
    /// Restrict to a resource plural.
    pub fn resource(mut self, plural: &str) -> Self {
        self.resource = Some(plural.into());
        self
    }
    /// Restrict to a subresource (`""` = main resource only).
    pub fn subresource(mut self, sub: &str) -> Self {
        self.subresource = Some(sub.into());
        self
    }
    /// Restrict to an object name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }
    /// HTTP code to answer (reason derived from it, e.g. 409 -> Conflict).
    pub fn code(mut self, code: u16) -> Self {
        self.code = code;
        self
    }
    /// How many matching requests fail.
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }
    /// Message of the Status body.
    pub fn message(mut self, m: &str) -> Self {
        self.message = m.into();
        self
    }

    fn matches(
        &self,
        method: &Method,
        resource: Option<&str>,
        sub: Option<&str>,
        name: Option<&str>,
    ) -> bool {
        let verb_ok = match self.verb {
            VerbMatch::Any => true,
            VerbMatch::Write => matches!(
                *method,
                Method::POST | Method::PUT | Method::PATCH | Method::DELETE
            ),
            VerbMatch::Method(m) => method.as_str().eq_ignore_ascii_case(m),
        };
        verb_ok
            && self.resource.as_deref().is_none_or(|r| Some(r) == resource)
            && self
                .subresource
                .as_deref()
                .is_none_or(|s| s == sub.unwrap_or(""))
            && self.name.as_deref().is_none_or(|n| Some(n) == name)
    }
}

/// Request log and pending faults.
#[derive(Debug, Default)]
pub struct Hooks {
    log: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<Vec<Fault>>,
}

impl Hooks {
    /// Add a fault.
    pub fn inject(&self, f: Fault) {
        if f.times > 0 {
            self.faults
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(f);
        }
    }

    /// Remove all pending faults.
    pub fn clear_faults(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Consume one matching fault, if any.
    pub fn take_fault(
        &self,
        method: &Method,
        resource: Option<&str>,
        sub: Option<&str>,
        name: Option<&str>,
    ) -> Option<ApiError> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let idx = faults
            .iter()
            .position(|f| f.matches(method, resource, sub, name))?;
        let f = &mut faults[idx];
        f.times -= 1;
        let err = ApiError::Injected {
            code: f.code,
            message: f.message.clone(),
        };
        if f.times == 0 {
            faults.remove(idx);
        }
        Some(err)
    }

    /// Append to the log.
    pub fn record(&self, r: RecordedRequest) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }

    /// A copy of the log.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Empty the log.
    pub fn clear_requests(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_count_down_and_match() {
        let h = Hooks::default();
        h.inject(
            Fault::on(VerbMatch::Write)
                .resource("gpurequests")
                .subresource("status")
                .times(2),
        );
        assert!(
            h.take_fault(&Method::GET, Some("gpurequests"), Some("status"), None)
                .is_none()
        );
        assert!(
            h.take_fault(&Method::PUT, Some("gpurequests"), None, None)
                .is_none()
        );
        assert_eq!(
            h.take_fault(&Method::PATCH, Some("gpurequests"), Some("status"), None)
                .unwrap()
                .code(),
            500
        );
        assert!(
            h.take_fault(&Method::PUT, Some("gpurequests"), Some("status"), None)
                .is_some()
        );
        assert!(
            h.take_fault(&Method::PUT, Some("gpurequests"), Some("status"), None)
                .is_none()
        );
    }
}
