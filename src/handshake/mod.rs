//! The HTTP/1.1 upgrade, both sides, without I/O.
