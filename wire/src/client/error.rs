//! The client's one error type: the node's typed wire errors, mirrored variant for variant, plus
//! what can go wrong on the client's side of the socket.
//!
//! Invariants:
//! - Every wire `ErrorCode` maps to exactly one variant (see [`ClientError::from_wire`]); a code
//!   this client does not know becomes [`ClientError::Internal`] with the code in its message.
//! - Every `Display` is one line: what failed and why, never a multi-line dump.
//! - The error is `Clone` so that a connection failure can be handed to every request waiting on
//!   that connection.

use std::sync::Arc;
use std::time::Duration;

use crate::fb;

/// Why a client operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The Candy (or upload) does not exist.
    #[error("not found{}", detail("not found", .message))]
    NotFound {
        /// The node's explanation.
        message: String,
        /// In a versioned Box: the delete marker that is the key's newest version (S3's
        /// `x-amz-delete-marker`), when that is why it is not found.
        delete_marker: Option<super::types::Hlc>,
    },
    /// The Box does not exist.
    #[error("box not found{}", detail("box not found", .message))]
    BoxNotFound {
        /// The node's explanation.
        message: String,
    },
    /// A Box of that name already exists.
    #[error("box already exists{}", detail("box already exists", .message))]
    BoxExists {
        /// The node's explanation.
        message: String,
    },
    /// The Box still holds Candies (delete it with `force`).
    #[error("box is not empty{}", detail("box is not empty", .message))]
    BoxNotEmpty {
        /// The node's explanation.
        message: String,
    },
    /// The node is overloaded; retry after the hint.
    #[error("node busy, retry after {retry_after_ms} ms{}", colon(.message))]
    Busy {
        /// How long the node asks the client to wait.
        retry_after_ms: u32,
        /// The node's explanation.
        message: String,
    },
    /// A field of the request is invalid.
    #[error("invalid argument `{field}`{}", colon(.message))]
    InvalidArgument {
        /// The offending field.
        field: String,
        /// Why it is invalid.
        message: String,
    },
    /// A value exceeds a configured limit.
    #[error("limit `{limit}` exceeded: {value} > {max}{}", colon(.message))]
    LimitExceeded {
        /// The limit's name.
        limit: String,
        /// The value asked for.
        value: u64,
        /// The limit.
        max: u64,
        /// The node's explanation.
        message: String,
    },
    /// Stored bytes do not match their checksum.
    #[error("checksum mismatch{}", detail("checksum mismatch", .message))]
    ChecksumMismatch {
        /// The node's explanation, with the evidence.
        message: String,
    },
    /// The partition is held by another node.
    #[error("not the owner, the owner is {owner}{}", colon(.message))]
    NotOwner {
        /// The owner's address.
        owner: String,
        /// The node's explanation.
        message: String,
    },
    /// A relayed locator was refused by the destination.
    #[error("forged locator{}", detail("forged locator", .message))]
    ForgedLocator {
        /// Which check failed.
        message: String,
    },
    /// The node does not know this request kind.
    #[error("unknown request{}", detail("unknown request", .message))]
    UnknownRequest {
        /// The node's explanation.
        message: String,
    },
    /// The node cannot serve the request now (coordination lost, partition not open).
    #[error("unavailable{}", detail("unavailable", .message))]
    Unavailable {
        /// The node's explanation.
        message: String,
    },
    /// The node found corrupt data.
    #[error("corrupt data on the node{}", detail("corrupt data on the node", .message))]
    Corrupt {
        /// The node's evidence.
        message: String,
    },
    /// The node is shutting down.
    #[error("node shutting down{}", detail("node shutting down", .message))]
    ShuttingDown {
        /// The node's explanation.
        message: String,
    },
    /// Another request holds what this one needs exclusively (another rename of the source).
    #[error("conflict{}", detail("conflict", .message))]
    Conflict {
        /// The node's explanation.
        message: String,
    },
    /// The node's disk is full: writes are refused until space is freed; reads and deletes work.
    #[error("no space left on the node{}", detail("no space left on the node", .message))]
    NoSpace {
        /// The node's explanation.
        message: String,
    },
    /// A conditional put or delete found its condition unmet: nothing was written.
    #[error("precondition failed{}", detail("precondition failed", .message))]
    PreconditionFailed {
        /// The key's current version (`None`: no live object).
        current: Option<super::types::Hlc>,
        /// The node's explanation.
        message: String,
    },
    /// The version asked for is a delete marker (S3: 405 Method Not Allowed).
    #[error("is a delete marker{}", detail("is a delete marker", .message))]
    IsDeleteMarker {
        /// The marker's version.
        version: Option<super::types::Hlc>,
        /// The node's explanation.
        message: String,
    },
    /// The node failed internally.
    #[error("internal error on the node{}", detail("internal error on the node", .message))]
    Internal {
        /// The node's explanation.
        message: String,
    },
    /// A socket or local source operation failed.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done (`connect to 127.0.0.1:7420`, `read body`).
        context: String,
        /// The operating system's error (part of the message, so not also a `source()`).
        cause: Arc<std::io::Error>,
    },
    /// The node sent something that breaks the protocol; the connection was closed.
    #[error("protocol error from the node: {reason}")]
    Protocol {
        /// What was wrong.
        reason: String,
    },
    /// The connection closed before the request finished.
    #[error("connection closed: {reason}")]
    Closed {
        /// Why it closed.
        reason: String,
    },
    /// The node did not answer in time.
    #[error("timed out after {} ms waiting for {what}", after.as_millis())]
    Timeout {
        /// What was awaited.
        what: String,
        /// The configured timeout.
        after: Duration,
    },
}

impl ClientError {
    /// Converts a wire `Error` table into its variant.
    pub fn from_wire(e: &fb::Error<'_>) -> ClientError {
        let message = e.message().unwrap_or_default().to_owned();
        match e.code() {
            fb::ErrorCode::NotFound => ClientError::NotFound {
                message,
                delete_marker: e.current_version().map(|h| super::types::Hlc {
                    physical_ms: h.physical_ms(),
                    logical: h.logical(),
                    node: h.node(),
                }),
            },
            fb::ErrorCode::BoxNotFound => ClientError::BoxNotFound { message },
            fb::ErrorCode::BoxExists => ClientError::BoxExists { message },
            fb::ErrorCode::BoxNotEmpty => ClientError::BoxNotEmpty { message },
            fb::ErrorCode::Busy => ClientError::Busy { retry_after_ms: e.retry_after_ms(), message },
            fb::ErrorCode::InvalidArgument => {
                ClientError::InvalidArgument { field: e.field().unwrap_or_default().to_owned(), message }
            }
            fb::ErrorCode::LimitExceeded => ClientError::LimitExceeded {
                limit: e.limit_name().unwrap_or_default().to_owned(),
                value: e.limit_value(),
                max: e.limit_max(),
                message,
            },
            fb::ErrorCode::ChecksumMismatch => ClientError::ChecksumMismatch { message },
            fb::ErrorCode::NotOwner => {
                ClientError::NotOwner { owner: e.owner().unwrap_or_default().to_owned(), message }
            }
            fb::ErrorCode::ForgedLocator => ClientError::ForgedLocator { message },
            fb::ErrorCode::UnknownRequest => ClientError::UnknownRequest { message },
            fb::ErrorCode::Unavailable => ClientError::Unavailable { message },
            fb::ErrorCode::Corrupt => ClientError::Corrupt { message },
            fb::ErrorCode::ShuttingDown => ClientError::ShuttingDown { message },
            fb::ErrorCode::Internal => ClientError::Internal { message },
            fb::ErrorCode::Conflict => ClientError::Conflict { message },
            fb::ErrorCode::NoSpace => ClientError::NoSpace { message },
            fb::ErrorCode::PreconditionFailed => ClientError::PreconditionFailed {
                current: e.current_version().map(|h| super::types::Hlc {
                    physical_ms: h.physical_ms(),
                    logical: h.logical(),
                    node: h.node(),
                }),
                message,
            },
            fb::ErrorCode::IsDeleteMarker => ClientError::IsDeleteMarker {
                version: e.current_version().map(|h| super::types::Hlc {
                    physical_ms: h.physical_ms(),
                    logical: h.logical(),
                    node: h.node(),
                }),
                message,
            },
            other => ClientError::Internal { message: format!("unknown error code {}: {message}", other.0) },
        }
    }

    /// The wire code of an error the node sent; `None` for client-side errors.
    pub fn code(&self) -> Option<fb::ErrorCode> {
        Some(match self {
            ClientError::NotFound { .. } => fb::ErrorCode::NotFound,
            ClientError::BoxNotFound { .. } => fb::ErrorCode::BoxNotFound,
            ClientError::BoxExists { .. } => fb::ErrorCode::BoxExists,
            ClientError::BoxNotEmpty { .. } => fb::ErrorCode::BoxNotEmpty,
            ClientError::Busy { .. } => fb::ErrorCode::Busy,
            ClientError::InvalidArgument { .. } => fb::ErrorCode::InvalidArgument,
            ClientError::LimitExceeded { .. } => fb::ErrorCode::LimitExceeded,
            ClientError::ChecksumMismatch { .. } => fb::ErrorCode::ChecksumMismatch,
            ClientError::NotOwner { .. } => fb::ErrorCode::NotOwner,
            ClientError::ForgedLocator { .. } => fb::ErrorCode::ForgedLocator,
            ClientError::UnknownRequest { .. } => fb::ErrorCode::UnknownRequest,
            ClientError::Unavailable { .. } => fb::ErrorCode::Unavailable,
            ClientError::Corrupt { .. } => fb::ErrorCode::Corrupt,
            ClientError::ShuttingDown { .. } => fb::ErrorCode::ShuttingDown,
            ClientError::Internal { .. } => fb::ErrorCode::Internal,
            ClientError::Conflict { .. } => fb::ErrorCode::Conflict,
            ClientError::NoSpace { .. } => fb::ErrorCode::NoSpace,
            ClientError::PreconditionFailed { .. } => fb::ErrorCode::PreconditionFailed,
            ClientError::IsDeleteMarker { .. } => fb::ErrorCode::IsDeleteMarker,
            ClientError::Io { .. } | ClientError::Protocol { .. } | ClientError::Closed { .. } => return None,
            ClientError::Timeout { .. } => return None,
        })
    }

    /// True for the errors that say "the thing is not there" (Candy, upload or Box).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::NotFound { .. } | ClientError::BoxNotFound { .. })
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::Io { context: context.into(), cause: Arc::new(source) }
    }

    /// A protocol violation by the node.
    pub fn protocol(reason: impl Into<String>) -> ClientError {
        ClientError::Protocol { reason: reason.into() }
    }

    /// A request the client refuses to send because it breaks a limit it knows.
    pub(crate) fn local_limit(limit: &str, value: u64, max: u64, what: &str) -> ClientError {
        ClientError::LimitExceeded { limit: limit.to_owned(), value, max, message: what.to_owned() }
    }

    /// A request argument the client refuses before sending.
    pub(crate) fn local_argument(field: &str, message: impl Into<String>) -> ClientError {
        ClientError::InvalidArgument { field: field.to_owned(), message: message.into() }
    }
}

/// `": message"`, without what the message only repeats of `what`: nothing for the node's
/// `not found` after our `not found`, `": photos"` for its `box already exists: photos`.
fn detail(what: &str, message: &str) -> String {
    let m = message.trim();
    let repeated =
        m.len() >= what.len() && m.is_char_boundary(what.len()) && m[..what.len()].eq_ignore_ascii_case(what);
    if repeated {
        colon(m[what.len()..].trim_start_matches([':', ' ']))
    } else {
        colon(m)
    }
}

/// `": message"`, or nothing when the node gave no message.
fn colon(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl From<crate::FrameError> for ClientError {
    fn from(e: crate::FrameError) -> ClientError {
        ClientError::Protocol { reason: e.to_string() }
    }
}
