//! The one error type of the module. The core and the store return it; the command layer
//! turns it into a Redis error reply (`ERR ...`, `WRONGTYPE ...`, `LOADING ...`) at the edge.

use std::fmt;

/// The kind of value a key was expected to hold, named in WRONGTYPE replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Set,
    Hash,
    SortedSet,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            KeyKind::Set => "a set",
            KeyKind::Hash => "a hash",
            KeyKind::SortedSet => "a sorted set",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrmError {
    /// The command got too few or too many arguments.
    WrongArity { command: &'static str },
    /// An argument is malformed; the message names it.
    BadArgument(String),
    /// A key the query reads holds another type than the schema says.
    WrongType { key: Vec<u8>, expected: KeyKind },
    /// The calling user may not read or write this key (ACL).
    NoPermission { key: Vec<u8> },
    /// In cluster mode, a derived key is not in the slot the command was routed by.
    CrossSlot(String),
    /// The installation's index is still loading and the query may not wait for it
    /// (inside MULTI/EXEC or a script) or waited past `crm.index-wait-ms`: retry shortly,
    /// as after Redis's own `-LOADING`.
    Loading {
        installation: Vec<u8>,
        progress: String,
    },
    /// A bug caught at the edge (a panic, an impossible state); never caused by input.
    Internal(String),
}

impl fmt::Display for CrmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrmError::WrongArity { command } => {
                write!(f, "ERR wrong number of arguments for '{command}' command")
            }
            CrmError::BadArgument(message) => write!(f, "ERR {message}"),
            CrmError::WrongType { key, expected } => write!(
                f,
                "WRONGTYPE Operation against a key holding the wrong kind of value: '{}' should be {}",
                printable(key),
                expected.name()
            ),
            CrmError::NoPermission { key } => write!(
                f,
                "NOPERM this user has no permissions to access the '{}' key",
                printable(key)
            ),
            CrmError::CrossSlot(message) => write!(f, "CROSSSLOT {message}"),
            CrmError::Loading {
                installation,
                progress,
            } => write!(
                f,
                "LOADING the index of installation '{}' is loading ({progress}); retry shortly",
                printable(installation)
            ),
            CrmError::Internal(message) => write!(f, "ERR internal error: {message}"),
        }
    }
}

impl std::error::Error for CrmError {}

/// The longest argument echoed back in an error message; a 1 MB id is cut, not echoed whole.
const MAX_ECHO: usize = 64;

/// Renders user bytes for an error message: printable ASCII as is, everything else as `\xNN`,
/// cut after [`MAX_ECHO`] bytes, so that a reply stays one short line whatever the input.
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &byte in bytes.iter().take(MAX_ECHO) {
        if byte.is_ascii_graphic() || byte == b' ' {
            if byte == b'\\' || byte == b'\'' {
                out.push('\\');
            }
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    if bytes.len() > MAX_ECHO {
        out.push_str(&format!("...({} bytes)", bytes.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_and_cuts() {
        assert_eq!(printable(b"ab c"), "ab c");
        assert_eq!(printable(b"a\r\n\x00'"), "a\\x0d\\x0a\\x00\\'");
        let long = vec![b'x'; 1000];
        assert_eq!(
            printable(&long),
            format!("{}...(1000 bytes)", "x".repeat(64))
        );
    }

    #[test]
    fn replies_start_with_their_code() {
        let wrong = CrmError::WrongType {
            key: b"meeting:1".to_vec(),
            expected: KeyKind::Hash,
        };
        assert!(wrong.to_string().starts_with("WRONGTYPE "));
        assert!(wrong.to_string().contains("'meeting:1' should be a hash"));
        assert!(CrmError::BadArgument("x".into())
            .to_string()
            .starts_with("ERR "));
    }
}
