//! Protocol parsers and detection rules. Pure: bytes in, facts out, no I/O.
pub mod x509;
