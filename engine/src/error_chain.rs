//! An error and its causes as one line of text.
//!
//! reqwest, hyper and rustls each wrap the cause of a failed request in another error, and the
//! useful part ("connection refused", "invalid peer certificate: UnknownIssuer") is usually the
//! innermost one. Both the module fetcher and the plugins' HTTP import report the whole chain,
//! outermost first, so that a condition or a plugin's error says what actually went wrong.

use std::error::Error;

/// The messages of `e` and of every error below it, outermost first.
pub fn messages(e: &(dyn Error + 'static)) -> Vec<String> {
    std::iter::successors(Some(e), |&e| e.source())
        .map(ToString::to_string)
        .collect()
}

/// [`messages`], joined with `": "`.
pub fn text(e: &(dyn Error + 'static)) -> String {
    messages(e).join(": ")
}

/// A chain of errors built from messages, for tests of code that reads error chains.
#[cfg(test)]
pub(crate) mod testing {
    use std::error::Error;

    /// One error of a test chain: its message and the error below it.
    #[derive(Debug)]
    pub(crate) struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    /// An error whose chain reads `messages`, outermost first (at least one).
    pub(crate) fn chain(messages: &[&'static str]) -> Layer {
        messages
            .iter()
            .rev()
            .fold(None, |below, m| Some(Layer(m, below.map(Box::new))))
            .expect("at least one message")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::chain;
    use super::*;

    #[test]
    fn every_cause_is_named_outermost_first() {
        let e = chain(&["error sending request", "connection refused"]);
        assert_eq!(
            messages(&e),
            ["error sending request", "connection refused"]
        );
        assert_eq!(text(&e), "error sending request: connection refused");
        assert_eq!(text(&chain(&["alone"])), "alone");
    }
}
