//! Placing the sealed bootstrap document in a launch request.
//!
//! The engine never hands a plugin the bootstrap document (it holds the cluster's join
//! secrets): `LaunchRequest::user_data` is a [`SealedDocument`] with the document's size and
//! format only. The plugin writes one of these placeholders in the body of a request it makes
//! during `launch`, and the host replaces it, only in requests bound for the provider's granted
//! hosts. A placeholder in a URL or header, or outside `launch`, is refused by the host.
//!
//! ```
//! # use tgp_provider_sdk::user_data;
//! // A JSON body: serde writes the placeholder as an ordinary string, and the host fills in the
//! // document escaped for a JSON string.
//! let body = serde_json::json!({ "name": "tgp-abc-1", "user_data": user_data::JSON });
//! assert_eq!(body.to_string(), r#"{"name":"tgp-abc-1","user_data":"{{user-data:json}}"}"#);
//! ```

use crate::types::{ProviderError, SealedDocument};

/// The document's bytes, as they are (for a raw or form body).
pub const RAW: &str = "{{user-data}}";
/// The document as the inside of a JSON string: escaped, without the quotes. Use it as the
/// value of a string in a JSON body.
pub const JSON: &str = "{{user-data:json}}";
/// The document in standard base64 with padding (for APIs that take user-data base64-encoded).
pub const BASE64: &str = "{{user-data:base64}}";

/// The size of the document once the host encodes it as base64 (what a vendor's limit on a
/// base64 field counts).
pub fn base64_size(doc: &SealedDocument) -> u64 {
    doc.size.div_ceil(3) * 4
}

/// Refuses a document larger than the vendor accepts, naming the field: check it before any
/// request, so an oversized document never half-launches anything.
pub fn check_size(doc: &SealedDocument, max_bytes: u64, vendor: &str) -> Result<(), ProviderError> {
    if doc.size > max_bytes {
        return Err(ProviderError::invalid(
            "user-data",
            format!(
                "{vendor} accepts at most {max_bytes} bytes of user-data; the document has {}",
                doc.size
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BootstrapDelivery;

    fn doc(size: u64) -> SealedDocument {
        SealedDocument {
            size,
            delivery: BootstrapDelivery::CloudInit,
        }
    }

    #[test]
    fn sizes_and_limits() {
        assert_eq!(base64_size(&doc(0)), 0);
        assert_eq!(base64_size(&doc(1)), 4);
        assert_eq!(base64_size(&doc(3)), 4);
        assert_eq!(base64_size(&doc(4)), 8);
        assert!(check_size(&doc(10), 10, "x").is_ok());
        assert!(matches!(
            check_size(&doc(11), 10, "Lambda"),
            Err(ProviderError::InvalidRequest(f)) if f.field == "user-data" && f.reason.contains("Lambda")
        ));
    }
}
