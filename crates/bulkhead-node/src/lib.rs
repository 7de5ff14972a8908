//! bulkhead-node: Linux enforcement for bulkhead.
//!
//! [`mountinfo`] parses `/proc/<pid>/mountinfo`. Raw syscalls live only in the
//! private `sys` module, the one place `unsafe` is allowed.

pub mod mountinfo;
#[allow(unsafe_code)]
mod sys;
