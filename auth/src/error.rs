//! The one error type for password and ACL files: where (file and line) and what, on one line.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A password or ACL file that cannot be used.
///
/// Its message is one line: `{path}:{line}: {what}` for a bad line of a file, `line {line}:
/// {what}` for text that was not read from a file, `{path}: {io error}` for a file that could not
/// be read. It never quotes a password hash, so it is safe to log.
#[derive(Debug, thiserror::Error)]
#[error("{place}: {problem}")]
pub struct AuthFileError {
    place: Place,
    problem: Problem,
}

/// Where the problem is. Kept apart from the message so callers can ask for the line.
#[derive(Debug)]
struct Place {
    path: Option<PathBuf>,
    line: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error("{0}")]
    Syntax(String),
    // Not `#[source]`: the message already carries it, and an error chain printed with `{:#}`
    // would say it twice.
    #[error("{0}")]
    Io(io::Error),
}

impl AuthFileError {
    /// A line (counted from 1) that is not in the file's format.
    pub(crate) fn line(line: usize, what: impl Into<String>) -> AuthFileError {
        AuthFileError {
            place: Place { path: None, line: Some(line) },
            problem: Problem::Syntax(what.into()),
        }
    }

    pub(crate) fn read(path: &Path, error: io::Error) -> AuthFileError {
        AuthFileError {
            place: Place { path: Some(path.to_owned()), line: None },
            problem: Problem::Io(error),
        }
    }

    /// Names the file the text came from.
    pub(crate) fn in_file(mut self, path: &Path) -> AuthFileError {
        self.place.path = Some(path.to_owned());
        self
    }

    /// The file, when the text was read from one.
    pub fn path(&self) -> Option<&Path> {
        self.place.path.as_deref()
    }

    /// The line (counted from 1), when the problem is a line rather than reading the file.
    pub fn line_number(&self) -> Option<usize> {
        self.place.line
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(path), Some(line)) => write!(f, "{}:{line}", path.display()),
            (Some(path), None) => write!(f, "{}", path.display()),
            (None, Some(line)) => write!(f, "line {line}"),
            (None, None) => write!(f, "<input>"),
        }
    }
}
