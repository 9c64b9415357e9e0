//! File I/O: the `.part` file a download writes, the file an upload reads, the threads that
//! do both off the arbiters, and the rules for target names.

pub(crate) mod blocking;
pub(crate) mod path;
pub(crate) mod policy;
pub(crate) mod sink;
pub(crate) mod source;
