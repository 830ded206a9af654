//! Rust errors as Python exceptions: an error caused by an I/O error becomes `OSError`
//! (`FileNotFoundError` for a missing file), every other error `ValueError`; the message is the
//! Rust message, which names the file, field or entry.

use std::error::Error;

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

use crate::convert::io_error;

/// Converts any library error into the matching Python exception.
pub fn to_py_err(error: &(dyn Error + 'static)) -> PyErr {
    let message = error.to_string();
    let mut cause: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io_error(io.kind(), message);
        }
        cause = e.source();
    }
    PyValueError::new_err(message)
}

/// `?`-friendly conversion for the library crates' results.
pub trait OrPyErr<T> {
    fn or_py_err(self) -> Result<T, PyErr>;
}

impl<T, E: Error + 'static> OrPyErr<T> for Result<T, E> {
    fn or_py_err(self) -> Result<T, PyErr> {
        self.map_err(|e| to_py_err(&e))
    }
}
