//! The WebSocket protocol core: bytes <-> frames <-> messages, without I/O.
