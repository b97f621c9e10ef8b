//! EC2 errors: a code, a message and the HTTP status AWS answers with, rendered as
//! `<Response><Errors><Error>…</Error></Errors><RequestID>…</RequestID></Response>`.

use std::borrow::Cow;

use cms_core::ErrorKind;

use super::xml::escape_into;

/// One EC2 error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ec2Error {
    /// The EC2 error code (`InvalidInstanceID.NotFound`).
    pub code: Cow<'static, str>,
    /// What went wrong, for a person.
    pub message: String,
    /// The HTTP status.
    pub status: u16,
}

/// Shorthand for a result whose error is an [`Ec2Error`].
pub type Result<T, E = Ec2Error> = std::result::Result<T, E>;

impl Ec2Error {
    /// An error with `code`, `status` and `message`.
    pub fn new(
        code: impl Into<Cow<'static, str>>,
        status: u16,
        message: impl Into<String>,
    ) -> Self {
        Ec2Error {
            code: code.into(),
            message: message.into(),
            status,
        }
    }

    /// `InvalidParameterValue` (400).
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Ec2Error::new("InvalidParameterValue", 400, message)
    }

    /// `MissingParameter` (400) naming the parameter.
    pub fn missing(name: &str) -> Self {
        Ec2Error::new(
            "MissingParameter",
            400,
            format!("The request must contain the parameter {name}"),
        )
    }

    /// `InvalidParameterCombination` (400).
    pub fn combination(message: impl Into<String>) -> Self {
        Ec2Error::new("InvalidParameterCombination", 400, message)
    }

    /// `UnsupportedOperation` (400).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Ec2Error::new("UnsupportedOperation", 400, message)
    }

    /// `InternalError` (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Ec2Error::new("InternalError", 500, message)
    }

    /// The `NotFound` error of an id of the given kind (`InvalidInstanceID.NotFound`).
    pub fn not_found(code: &'static str, what: &str, id: &str) -> Self {
        Ec2Error::new(code, 400, format!("The {what} '{id}' does not exist"))
    }

    /// The `Malformed` error of an id.
    pub fn malformed(code: &'static str, what: &str, id: &str) -> Self {
        Ec2Error::new(code, 400, format!("Invalid id: \"{id}\" ({what})"))
    }

    /// The EC2 form of a driver error. `not_found` is the code used for
    /// [`ErrorKind::NotFound`] (the caller knows what was looked up).
    pub fn from_core(e: &cms_core::Error, not_found: &'static str) -> Self {
        let message = e.to_string();
        match e.kind() {
            ErrorKind::NotFound => Ec2Error::new(not_found, 400, message),
            ErrorKind::AlreadyExists => Ec2Error::new("InvalidParameterValue", 400, message),
            ErrorKind::InvalidArgument => {
                if e.context_value("reason") == Some("idempotent_parameter_mismatch") {
                    Ec2Error::new("IdempotentParameterMismatch", 400, message)
                } else {
                    Ec2Error::invalid_value(message)
                }
            }
            ErrorKind::InvalidState => Ec2Error::new("IncorrectInstanceState", 400, message),
            ErrorKind::QuotaExceeded => match e.context_value("reason") {
                Some("insufficient_free_addresses") => {
                    Ec2Error::new("InsufficientFreeAddressesInSubnet", 400, message)
                }
                _ => Ec2Error::new("InstanceLimitExceeded", 400, message),
            },
            ErrorKind::RateLimited => Ec2Error::new("RequestLimitExceeded", 503, message),
            ErrorKind::Unsupported => Ec2Error::unsupported(message),
            ErrorKind::Unavailable | ErrorKind::Timeout => {
                Ec2Error::new("Unavailable", 503, message)
            }
            // The backend refused the server's own credentials: the caller can do
            // nothing about it, and must not think its own keys are wrong.
            ErrorKind::Unauthenticated | ErrorKind::PermissionDenied | ErrorKind::Backend => {
                Ec2Error::internal(message)
            }
        }
    }

    /// The error document.
    pub fn to_xml(&self, request_id: &str) -> String {
        let mut out = String::with_capacity(200 + self.message.len());
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>");
        escape_into(&mut out, &self.code);
        out.push_str("</Code><Message>");
        escape_into(&mut out, &self.message);
        out.push_str("</Message></Error></Errors><RequestID>");
        escape_into(&mut out, request_id);
        out.push_str("</RequestID></Response>");
        out
    }
}

/// The EC2 form of a service error, the kinds in `codes` with the code given (an
/// action's own words: `VolumeInUse` for an `InvalidState` of a volume, …); a
/// `NotFound` is always worded by what is missing, as [`From`] words it.
pub fn mapped(e: cms_core::Error, codes: &[(ErrorKind, &'static str)]) -> Ec2Error {
    if e.kind() == ErrorKind::NotFound {
        return e.into();
    }
    match codes.iter().find(|(k, _)| *k == e.kind()) {
        Some((_, code)) => {
            let status = if *code == "UnauthorizedOperation" {
                403
            } else {
                400
            };
            Ec2Error::new(*code, status, e.to_string())
        }
        None => e.into(),
    }
}

/// The EC2 code and words of a resource that is not found, by what the error says is
/// missing (its resource: `instance i-…`, `image ami-…`, `key pair web`, …).
fn not_found_of(resource: &str) -> Option<(&'static str, &'static str, &str)> {
    const KINDS: &[(&str, &str, &str)] = &[
        ("instance ", "InvalidInstanceID.NotFound", "instance ID"),
        ("image ", "InvalidAMIID.NotFound", "image id"),
        ("key pair ", "InvalidKeyPair.NotFound", "key pair"),
        ("network ", "InvalidSubnetID.NotFound", "subnet ID"),
        ("flavor ", "InvalidInstanceType", "instance type"),
        ("location ", "InvalidParameterValue", "availability zone"),
        ("volume ", "InvalidVolume.NotFound", "volume"),
        ("snapshot ", "InvalidSnapshot.NotFound", "snapshot"),
        ("security group ", "InvalidGroup.NotFound", "security group"),
        ("address ", "InvalidAllocationID.NotFound", "allocation ID"),
    ];
    KINDS
        .iter()
        .find_map(|(prefix, code, what)| resource.strip_prefix(prefix).map(|id| (*code, *what, id)))
}

impl From<cms_core::Error> for Ec2Error {
    /// The EC2 form of a service error; a `NotFound` is worded as EC2 words it, with
    /// the code of what is missing.
    fn from(e: cms_core::Error) -> Self {
        if e.kind() == ErrorKind::NotFound {
            if let Some((code, what, id)) = e.resource().and_then(not_found_of) {
                return Ec2Error::not_found(code, what, id);
            }
        }
        Ec2Error::from_core(&e, "InvalidParameterValue")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_aws_error_document() {
        let e = Ec2Error::not_found("InvalidInstanceID.NotFound", "instance ID", "i-1<2>");
        assert_eq!(
            e.to_xml("req-1"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
             <Code>InvalidInstanceID.NotFound</Code>\
             <Message>The instance ID 'i-1&lt;2&gt;' does not exist</Message>\
             </Error></Errors><RequestID>req-1</RequestID></Response>"
        );
    }

    #[test]
    fn not_found_names_what_is_missing() {
        let e: Ec2Error = cms_core::Error::not_found("instance", "i-0123456789abcdef0").into();
        assert_eq!(e.code, "InvalidInstanceID.NotFound");
        assert_eq!(
            e.message,
            "The instance ID 'i-0123456789abcdef0' does not exist"
        );
        let e: Ec2Error = cms_core::Error::not_found("key pair", "web").into();
        assert_eq!(e.code, "InvalidKeyPair.NotFound");
        assert!(e.message.contains("'web'"), "{}", e.message);
    }

    #[test]
    fn maps_core_kinds() {
        let e = cms_core::Error::new(ErrorKind::InvalidArgument, "token reused")
            .with_context("reason", "idempotent_parameter_mismatch");
        assert_eq!(
            Ec2Error::from_core(&e, "x").code,
            "IdempotentParameterMismatch"
        );
        let e = cms_core::Error::new(ErrorKind::RateLimited, "slow down");
        let e = Ec2Error::from_core(&e, "x");
        assert_eq!((&*e.code, e.status), ("RequestLimitExceeded", 503));
        let e = cms_core::Error::new(ErrorKind::NotFound, "gone");
        assert_eq!(
            Ec2Error::from_core(&e, "InvalidAMIID.NotFound").code,
            "InvalidAMIID.NotFound"
        );
    }
}
