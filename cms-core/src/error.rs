//! The one error type of cms.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The result type of every cms operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, independent of the backend.
///
/// Each driver classifies its backend's errors into these kinds once; frontends map
/// them to their protocol (HTTP status, EC2 error code, CIMI status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The resource does not exist (or is not visible to the caller).
    NotFound,
    /// A resource with that name or identity already exists.
    AlreadyExists,
    /// A request parameter is malformed or not acceptable.
    InvalidArgument,
    /// The resource is in a state that does not allow the operation.
    InvalidState,
    /// The credentials are missing or wrong.
    Unauthenticated,
    /// The credentials are valid but do not allow the operation.
    PermissionDenied,
    /// A quota or limit of the account would be exceeded.
    QuotaExceeded,
    /// The backend asks the caller to slow down.
    RateLimited,
    /// The driver does not support the operation.
    Unsupported,
    /// The backend cannot be reached or is temporarily unable to answer.
    Unavailable,
    /// The operation did not finish in time.
    Timeout,
    /// The backend failed in a way that fits no other kind.
    Backend,
}

impl ErrorKind {
    /// A stable snake_case name, used in logs, metrics and problem types.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::InvalidState => "invalid_state",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::QuotaExceeded => "quota_exceeded",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Backend => "backend",
        }
    }

    /// Whether errors of this kind are temporary unless the driver says otherwise.
    pub fn default_temporary(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::Timeout
        )
    }

    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::InvalidArgument,
        ErrorKind::InvalidState,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::QuotaExceeded,
        ErrorKind::RateLimited,
        ErrorKind::Unsupported,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::Backend,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! operations {
    ($($variant:ident => $name:literal,)*) => {
        /// Every operation of the [`Driver`](crate::Driver) trait, named.
        ///
        /// Used in errors ("create instance: …"), in capability checks and as a metrics label.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Operation {
            $($variant,)*
        }

        impl Operation {
            /// Every operation, in declaration order.
            pub const ALL: [Operation; [$(Operation::$variant),*].len()] = [$(Operation::$variant),*];

            /// A stable snake_case name (`create_instance`), used as a metrics label.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Operation::$variant => $name,)*
                }
            }
        }
    };
}

operations! {
    ListInstances => "list_instances",
    GetInstance => "get_instance",
    CreateInstance => "create_instance",
    StartInstance => "start_instance",
    StopInstance => "stop_instance",
    RebootInstance => "reboot_instance",
    DeleteInstance => "delete_instance",
    UpdateInstanceTags => "update_instance_tags",
    GetConsoleOutput => "get_console_output",
    ListImages => "list_images",
    GetImage => "get_image",
    ListFlavors => "list_flavors",
    ListNetworks => "list_networks",
    GetNetwork => "get_network",
    CreateNetwork => "create_network",
    DeleteNetwork => "delete_network",
    ListLocations => "list_locations",
    ListKeyPairs => "list_key_pairs",
    CreateKeyPair => "create_key_pair",
    ImportKeyPair => "import_key_pair",
    DeleteKeyPair => "delete_key_pair",
    ListVolumes => "list_volumes",
    GetVolume => "get_volume",
    CreateVolume => "create_volume",
    DeleteVolume => "delete_volume",
    AttachVolume => "attach_volume",
    DetachVolume => "detach_volume",
    ListSnapshots => "list_snapshots",
    GetSnapshot => "get_snapshot",
    CreateSnapshot => "create_snapshot",
    DeleteSnapshot => "delete_snapshot",
    CreateImage => "create_image",
    DeleteImage => "delete_image",
    ListSecurityGroups => "list_security_groups",
    GetSecurityGroup => "get_security_group",
    CreateSecurityGroup => "create_security_group",
    DeleteSecurityGroup => "delete_security_group",
    AddSecurityRules => "add_security_rules",
    RemoveSecurityRules => "remove_security_rules",
    ListAddresses => "list_addresses",
    GetAddress => "get_address",
    AllocateAddress => "allocate_address",
    ReleaseAddress => "release_address",
    AssociateAddress => "associate_address",
    DisassociateAddress => "disassociate_address",
}

impl Operation {
    /// Whether repeating the operation after an unknown outcome is harmless.
    ///
    /// Creates are not: a create whose answer was lost may have happened. A create with
    /// a client token is made idempotent by the caller (see the retry layer). Nor are
    /// deletes of networks, key pairs, volumes, snapshots, images and security groups,
    /// nor releasing an address: repeating one whose answer was lost answers
    /// `NotFound`. Deleting an instance is: a terminated instance answers as it is.
    /// So are updating tags (setting a tag again, or removing one already gone,
    /// changes nothing), attaching and detaching a volume, associating and
    /// disassociating an address (repeating one under way or done answers the
    /// resource as it is), and adding and removing rules (a group holds a rule once).
    pub fn is_idempotent(self) -> bool {
        !matches!(
            self,
            Operation::CreateInstance
                | Operation::CreateNetwork
                | Operation::DeleteNetwork
                | Operation::CreateKeyPair
                | Operation::ImportKeyPair
                | Operation::DeleteKeyPair
                | Operation::CreateVolume
                | Operation::DeleteVolume
                | Operation::CreateSnapshot
                | Operation::DeleteSnapshot
                | Operation::CreateImage
                | Operation::DeleteImage
                | Operation::CreateSecurityGroup
                | Operation::DeleteSecurityGroup
                | Operation::AllocateAddress
                | Operation::ReleaseAddress
        )
    }

    /// The position of the operation in [`Operation::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The operation whose [`as_str`](Self::as_str) name is `name`.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

impl fmt::Display for Operation {
    /// Human words: `create instance`, `list key pairs`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().replace('_', " "))
    }
}

/// The error of every cms operation.
///
/// It says what was being done ([`operation`](Error::operation)), to what
/// ([`resource`](Error::resource)), on which provider, what went wrong
/// ([`kind`](Error::kind) and message), and whether trying again may help
/// ([`is_temporary`](Error::is_temporary)). The backend's own error is kept as the
/// [`source`](std::error::Error::source). Messages never carry credentials.
///
/// ```
/// use cms_core::{Error, ErrorKind, Operation};
/// let e = Error::new(ErrorKind::NotFound, "image `42` not found (OpenNebula error 0x400)")
///     .with_operation(Operation::CreateInstance)
///     .with_provider("onprem");
/// assert_eq!(
///     e.to_string(),
///     "create instance on provider `onprem`: image `42` not found (OpenNebula error 0x400)"
/// );
/// assert!(!e.is_temporary());
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    message: String,
    operation: Option<Operation>,
    resource: Option<String>,
    provider: Option<String>,
    context: Vec<(&'static str, String)>,
    temporary: bool,
    not_executed: bool,
    retry_after: Option<Duration>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A new error of `kind`; temporary if the kind usually is.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                operation: None,
                resource: None,
                provider: None,
                context: Vec::new(),
                temporary: kind.default_temporary(),
                not_executed: kind == ErrorKind::RateLimited,
                retry_after: None,
                source: None,
            }),
        }
    }

    /// `NotFound` for a resource: "instance `i-1` not found".
    pub fn not_found(resource_type: &str, id: impl fmt::Display) -> Self {
        Error::new(
            ErrorKind::NotFound,
            format!("{resource_type} `{id}` not found"),
        )
        .with_resource(format!("{resource_type} {id}"))
    }

    /// `InvalidArgument` naming the argument.
    pub fn invalid_argument(argument: &str, why: impl fmt::Display) -> Self {
        Error::new(ErrorKind::InvalidArgument, format!("`{argument}`: {why}"))
            .with_context("argument", argument)
    }

    /// `Unsupported` naming the operation and the driver.
    pub fn unsupported(operation: Operation, driver: &str) -> Self {
        Error::new(
            ErrorKind::Unsupported,
            format!("the {driver} driver does not support {operation}"),
        )
        .with_operation(operation)
        .with_context("driver", driver)
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The message, without operation and provider.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The operation that failed, when known.
    pub fn operation(&self) -> Option<Operation> {
        self.inner.operation
    }

    /// The resource the operation was about ("instance i-1"), when known.
    pub fn resource(&self) -> Option<&str> {
        self.inner.resource.as_deref()
    }

    /// The provider the operation ran on, when known.
    pub fn provider(&self) -> Option<&str> {
        self.inner.provider.as_deref()
    }

    /// Extra facts: backend error codes, argument names, the driver.
    pub fn context(&self) -> &[(&'static str, String)] {
        &self.inner.context
    }

    /// The value of a context key.
    pub fn context_value(&self, key: &str) -> Option<&str> {
        self.inner
            .context
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The same error with every mention of `from` (a backend's name for something)
    /// in its message, resource and context replaced by `to` (the caller's name for
    /// it): what a facade does before showing a driver's error to its client.
    ///
    /// A mention is `from` standing alone: not inside a longer id or number (a
    /// backend whose ids are small numbers, as OpenNebula's are, names VM `1` in a
    /// message that also says "error 0x1000" and "state 12").
    ///
    /// ```
    /// use cms_core::Error;
    /// let e = Error::not_found("instance", "vm-42").renamed("vm-42", "i-0123456789abcdef0");
    /// assert_eq!(e.message(), "instance `i-0123456789abcdef0` not found");
    /// assert_eq!(e.resource(), Some("instance i-0123456789abcdef0"));
    /// let e = Error::new(cms_core::ErrorKind::InvalidState, "VM 1 is in state 12 (error 0x1000)")
    ///     .renamed("1", "i-0123456789abcdef0");
    /// assert_eq!(e.message(), "VM i-0123456789abcdef0 is in state 12 (error 0x1000)");
    /// let e = Error::new(cms_core::ErrorKind::NotFound, "no VM 7. VM 7-b and 7.2 are others")
    ///     .renamed("7", "i-7");
    /// assert_eq!(e.message(), "no VM i-7. VM 7-b and 7.2 are others");
    /// ```
    pub fn renamed(mut self, from: &str, to: &str) -> Self {
        if from.is_empty() || from == to {
            return self;
        }
        let i = &mut *self.inner;
        if let Some(m) = replace_mentions(&i.message, from, to) {
            i.message = m;
        }
        if let Some(r) = &mut i.resource {
            if let Some(n) = replace_mentions(r, from, to) {
                *r = n;
            }
        }
        for (_, v) in &mut i.context {
            if let Some(n) = replace_mentions(v, from, to) {
                *v = n;
            }
        }
        self
    }

    /// Whether the same request may succeed if tried again later.
    pub fn is_temporary(&self) -> bool {
        self.inner.temporary
    }

    /// Whether the request certainly was not carried out (refused connection, rate
    /// limit), so that repeating it is safe even for a create without client token.
    /// True by default for `RateLimited`; drivers set it where they know.
    pub fn is_not_executed(&self) -> bool {
        self.inner.not_executed
    }

    /// How long the backend asked the caller to wait (RateLimited).
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// Sets the operation, unless one is already set.
    pub fn with_operation(mut self, operation: Operation) -> Self {
        self.inner.operation.get_or_insert(operation);
        self
    }

    /// Sets the resource, unless one is already set.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        if self.inner.resource.is_none() {
            self.inner.resource = Some(resource.into());
        }
        self
    }

    /// Sets the provider name, unless one is already set.
    pub fn with_provider(mut self, provider: impl Into<String>) -> Self {
        if self.inner.provider.is_none() {
            self.inner.provider = Some(provider.into());
        }
        self
    }

    /// Adds a context pair. Never put a credential here.
    pub fn with_context(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.inner.context.push((key, value.into()));
        self
    }

    /// Marks the error temporary (or not), overriding the kind's default.
    pub fn temporary(mut self, temporary: bool) -> Self {
        self.inner.temporary = temporary;
        self
    }

    /// Marks that the request certainly was not carried out (see
    /// [`is_not_executed`](Error::is_not_executed)).
    pub fn not_executed(mut self, not_executed: bool) -> Self {
        self.inner.not_executed = not_executed;
        self
    }

    /// Sets how long to wait before trying again.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.inner.retry_after = Some(after);
        self
    }

    /// Keeps the backend's own error as the source.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Arc::new(source));
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        match (&i.operation, &i.provider) {
            (Some(op), Some(p)) => write!(f, "{op} on provider `{p}`: ")?,
            (Some(op), None) => write!(f, "{op}: ")?,
            (None, Some(p)) => write!(f, "provider `{p}`: ")?,
            (None, None) => {}
        }
        f.write_str(&i.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        let mut d = f.debug_struct("Error");
        d.field("kind", &i.kind)
            .field("message", &i.message)
            .field("operation", &i.operation)
            .field("resource", &i.resource)
            .field("provider", &i.provider)
            .field("temporary", &i.temporary)
            .field("not_executed", &i.not_executed);
        if !i.context.is_empty() {
            d.field("context", &i.context);
        }
        if let Some(r) = i.retry_after {
            d.field("retry_after", &r);
        }
        if let Some(s) = &i.source {
            d.field("source", &s.to_string());
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

/// `text` with each mention of `from` standing alone (not next to a letter, a digit,
/// or `-`, `_`, `.` within an id) replaced by `to`; `None` when there is none.
fn replace_mentions(text: &str, from: &str, to: &str) -> Option<String> {
    let part_of_id = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    let mut out = String::new();
    let mut changed = false;
    let mut start = 0;
    while let Some(found) = text[start..].find(from) {
        let at = start + found;
        let end = at + from.len();
        let before = text[..at].chars().next_back();
        // A `.` or `-` after it is punctuation unless an id goes on after it.
        let mut next = text[end..].chars();
        let after = match next.next() {
            Some(c) if c.is_alphanumeric() || c == '_' => true,
            Some('.' | '-') => next.next().is_some_and(|c| c.is_alphanumeric()),
            _ => false,
        };
        out.push_str(&text[start..at]);
        if before.is_some_and(part_of_id) || after {
            out.push_str(from);
        } else {
            out.push_str(to);
            changed = true;
        }
        start = end;
    }
    out.push_str(&text[start..]);
    changed.then_some(out)
}
