//! Raw syscalls that neither `std` nor `rustix` offer. The only place in the
//! crate where `unsafe` is allowed; each block says why it is sound.

pub(crate) mod attempt;
pub(crate) mod exec;
pub(crate) mod fscrypt;
pub(crate) mod landlock;
pub(crate) mod loopdev;
pub(crate) mod probe;
pub(crate) mod process;
