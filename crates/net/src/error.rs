use std::path::PathBuf;

/// Errors name what failed and where: the network, address, port, file or command.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    Invalid(String),
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network with name {0} already exists")]
    Exists(String),
    /// An id prefix that matches several networks (docker's text).
    #[error("network {prefix} is ambiguous ({count} matches found based on ID prefix)")]
    Ambiguous { prefix: String, count: usize },
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A stored row that does not parse (edited by hand, or written by a newer berth).
    #[error("network database {path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A kernel tool (ip, nft, sysctl) failed: the command and its own message.
    #[error("{command}: {message}")]
    Command { command: String, message: String },
}
